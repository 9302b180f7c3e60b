"""The names and cities of a MongoDB profile as filters compare them, kept in the document.

A case-insensitive `$regex` is served by no index: a list filtered on a name or a city read every
live profile (100,000 documents for a few answers). Each profile document holds its first name, last
name and cities folded (`folded`, as the embedded store's rows hold them) under FIELD, indexed, so a
name prefix is an index range and a city an index point, and both stores compare the same text.

Every write of a profile document goes through `with_folds` (a whole document) or `fold_updates` (the
`$set` of a ProfileChange); documents written before are given theirs once at start (`fill_missing`).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from pymongo import UpdateOne

from app.domain.profile_query import ProfileFilter, folded, folded_cities, folded_value

FIELD = "folded"
FIRST_NAME, LAST_NAME, CITIES = f"{FIELD}.firstName", f"{FIELD}.lastName", f"{FIELD}.cities"
INDEXED = (FIRST_NAME, LAST_NAME, CITIES)
_SOURCES = {"firstName": "firstName", "lastName": "lastName", "addresses": "cities"}
_FILL_CHUNK = 1_000
_LAST_CHARACTER, _SURROGATES = "\U0010ffff", (0xD800, 0xDFFF)


def _cities(addresses: Any) -> list[str]:
    return sorted(folded_cities(addresses))


def folds(document: Mapping[str, Any]) -> dict[str, Any]:
    """FIELD's value for a whole profile document."""
    return {
        "firstName": folded_value(document.get("firstName")),
        "lastName": folded_value(document.get("lastName")),
        "cities": _cities(document.get("addresses")),
    }


def with_folds(document: dict[str, Any]) -> dict[str, Any]:
    """The document to write, its folds made from its own values."""
    return document | {FIELD: folds(document)}


def fold_updates(sets: Mapping[str, Any]) -> dict[str, Any]:
    """The `$set` entries that keep FIELD true to a change setting `sets` (names and addresses are set
    whole by every change that writes them)."""
    updates: dict[str, Any] = {}
    for source, target in _SOURCES.items():
        if source in sets:
            value = sets[source]
            updates[f"{FIELD}.{target}"] = _cities(value) if source == "addresses" else folded_value(value)
    return updates


def _prefix_range(prefix: str) -> dict[str, str]:
    """Every string that starts with `prefix`, as an index range: MongoDB compares strings by their
    UTF-8 bytes, which orders them as their code points. The bound above is the prefix with its last
    character moved up one (past its trailing U+10FFFF, the last character there is)."""
    stem = prefix.rstrip(_LAST_CHARACTER)
    if not stem:  # only U+10FFFF: nothing sorts after it but what starts with it
        return {"$gte": prefix}
    following = ord(stem[-1]) + 1
    if _SURROGATES[0] <= following <= _SURROGATES[1]:  # no characters of UTF-8: the next one after them
        following = _SURROGATES[1] + 1
    return {"$gte": prefix, "$lt": stem[:-1] + chr(following)}


def filter_clauses(query: ProfileFilter) -> list[dict[str, Any]]:
    """The clauses of `query`'s name prefix and city, on the folds."""
    clauses: list[dict[str, Any]] = []
    if query.name_prefix:
        bounds = _prefix_range(folded(query.name_prefix))
        clauses.append({"$or": [{FIRST_NAME: bounds}, {LAST_NAME: bounds}]})
    if query.city:
        clauses.append({CITIES: folded(query.city)})
    return clauses


async def fill_missing(profiles: Any) -> int:
    """Give FIELD to the live profiles written before it (once, at the first start of this version;
    seconds for 100,000 profiles). A profile written meanwhile by this version holds FIELD already and
    is left as it is. Returns how many were given theirs."""
    filled = 0
    selector = {FIELD: {"$exists": False}}
    projection = {"firstName": 1, "lastName": 1, "addresses": 1}
    while True:
        chunk = await profiles.find(selector, projection).limit(_FILL_CHUNK).to_list(None)
        if not chunk:
            return filled
        operations = [UpdateOne({"_id": d["_id"], **selector}, {"$set": {FIELD: folds(d)}}) for d in chunk]
        await profiles.bulk_write(operations, ordered=False)
        filled += len(chunk)
