"""What profile lists filter on, one narrow row per live profile, written beside each profile.

A filter evaluated on the profiles' JSON documents parses every document it passes (3-12 KB each,
spread over overflow pages): a filter that matches few profiles read all 100,000 of them, for 1-2 s.
These rows hold only what `ProfileFilter` compares (lower-cased names, the stats counters, cities),
so a list scans a few MB in key order and reads a document only for the profiles it returns.

Every profile write of the embedded store calls `keep` with the document it wrote, in the same
transaction, as it keeps `blocking_keys` and `segment_members`: a row exists exactly while its
profile is live. The values come from the document already in hand (a few microseconds a profile);
SQL triggers parsing the written JSON again cost ~70 us a profile write.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterable, Sequence
from typing import Any

from app.domain.profile_query import FINAL_SIGMA, SIGMA, StatsField, folded_cities, folded_value
from app.store.sqlite import backfill

FILLED_MARK = "profileFacets"  # meta key: the rows were built for the profiles a store already held
FOLDED_MARK = "profileFacetsFinalSigma"  # meta key: the rows' names and cities were folded (`folded`)

_STATS = [field.value for field in StatsField]

STATEMENTS = (
    f"""CREATE TABLE IF NOT EXISTS profile_facets (
        profile_id TEXT PRIMARY KEY, first_name TEXT, last_name TEXT, {", ".join(_STATS)}
    ) WITHOUT ROWID""",
    """CREATE TABLE IF NOT EXISTS profile_cities (
        profile_id TEXT NOT NULL, city TEXT NOT NULL, PRIMARY KEY (profile_id, city)
    ) WITHOUT ROWID""",
    # A list filtered on a small city walks its profiles in id order (profile_filter.py).
    "CREATE INDEX IF NOT EXISTS profile_cities_by_city ON profile_cities(city, profile_id)",
)
_INSERT = f"INSERT OR REPLACE INTO profile_facets VALUES ({', '.join('?' * (3 + len(_STATS)))})"


def _row(document: dict[str, Any]) -> tuple[Any, ...]:
    stats = document.get("stats") or {}
    return (
        document["_id"],
        folded_value(document.get("firstName")),
        folded_value(document.get("lastName")),
        *(stats.get(name) or 0 for name in _STATS),
    )


def keep(
    db: sqlite3.Connection, documents: Sequence[dict[str, Any]], *, new: bool = False, cities: bool = True
) -> None:
    """The rows of these profiles as their documents now are (none for a merged-away profile);
    `new`: profiles inserted by this transaction, which have no rows yet; `cities=False`: their
    addresses are as the rows have them (most writes: an event's counters), so the city rows stay
    (rewriting them cost ~27 us a profile, about as much as the row itself)."""
    if not documents:
        return
    live = [d for d in documents if d.get("mergedInto") is None]
    if not new:
        forget(db, [d["_id"] for d in documents if d.get("mergedInto") is not None])
        if cities:
            db.executemany("DELETE FROM profile_cities WHERE profile_id = ?", [(d["_id"],) for d in live])
    db.executemany(_INSERT, [_row(d) for d in live])  # replaces the row a live profile had
    if cities or new:
        db.executemany(
            "INSERT INTO profile_cities (profile_id, city) VALUES (?, ?)",
            [(d["_id"], city) for d in live for city in folded_cities(d.get("addresses"))],
        )


def forget(db: sqlite3.Connection, profile_ids: Iterable[str]) -> None:
    """No rows for these profiles (merged away, or erased)."""
    ids = [(profile_id,) for profile_id in profile_ids]
    db.executemany("DELETE FROM profile_facets WHERE profile_id = ?", ids)
    db.executemany("DELETE FROM profile_cities WHERE profile_id = ?", ids)


def fill(db: sqlite3.Connection) -> int:
    """Build the rows of the profiles a store held before it had them (once: seconds for 100,000
    profiles). Returns how many profiles were given rows."""

    return backfill.live_documents_once(db, FILLED_MARK, lambda db, documents: keep(db, documents, new=True))


def fold_final_sigmas(db: sqlite3.Connection) -> int:
    """Fold the names and cities of rows written before `folded` (once); returns the rows changed."""

    def fold(db: sqlite3.Connection) -> int:
        pattern, swap = f"%{FINAL_SIGMA}%", (FINAL_SIGMA, SIGMA)
        changed = db.execute(
            "UPDATE profile_facets SET first_name = replace(first_name, ?, ?), last_name = replace(last_name, ?, ?) "
            "WHERE first_name LIKE ? OR last_name LIKE ?",
            (*swap, *swap, pattern, pattern),
        ).rowcount
        cities = db.execute(
            "UPDATE OR REPLACE profile_cities SET city = replace(city, ?, ?) WHERE city LIKE ?", (*swap, pattern)
        )
        return changed + cities.rowcount

    return backfill.once(db, FOLDED_MARK, fold)
