"""The blocking-key index kept on every profile: `Profile.blocking_keys` holds the keys of its
current identity fields, and each store indexes that list (a MongoDB multikey index, an SQLite side
table), so that look-alikes of one profile are found by key in milliseconds at any store size.

Every profile write passes through `refresh_keys` (whole documents: creation, merge, unmerge) or
`index_change` (single-document updates): the keys never lag behind the fields they come from.
Tombstones carry no keys: a merged-away profile is never a candidate.
"""

from __future__ import annotations

from datetime import date, datetime
from typing import Any

from app.domain.identifiers import KnownIdentifierType
from app.domain.matching.blocking import blocking_keys
from app.domain.matching.fields import (
    AddressValues,
    MatchFields,
    contacts_held,
    contacts_of,
    match_fields,
    names_and_birth_date,
    normalised_values,
    stored_names_and_birth_date,
)
from app.domain.profile import Profile
from app.domain.profile_change import ProfileChange

# The stored fields the keys and the scores are computed from: what a store projects when it reads
# profiles only to match them (plus `_id`, `createdAt`, `updatedAt`, which every Profile needs).
MATCH_PATHS = ("firstName", "lastName", "birthDate", "identifiers", "addresses")
MATCH_VIEW_FIELDS = ("_id", "createdAt", "updatedAt", "blockingKeys", *MATCH_PATHS)
# Bumped whenever `blocking_keys` changes what it derives: stores holding keys of an older version
# are re-indexed at start-up (see app/services/match_index.py).
KEYS_VERSION = "3"


def keys_of(profile: Profile) -> list[str]:
    if profile.merged_into is not None:
        return []
    return sorted(blocking_keys(match_fields(profile)))


def stored_keys(document: dict[str, Any]) -> list[str]:
    """`keys_of` the profile a stored document holds, read straight off the document as `match_view`
    reads it: a batch's write built each changed profile whole (~85 µs) only to take its keys."""
    if document.get("mergedInto") is not None:
        return []
    return sorted(blocking_keys(match_view(document).fields))


def refresh_keys(profile: Profile) -> Profile:
    """The profile with the keys of its current fields (a copy; the argument is left alone)."""
    return profile.model_copy(update={"blocking_keys": keys_of(profile)})


def touches_match_fields(change: ProfileChange) -> bool:
    paths = [*change.set, *change.push, *change.append]
    return any(path.split(".", 1)[0] in MATCH_PATHS for path in paths)


def index_change(after: Profile, change: ProfileChange) -> Profile:
    """`after` is the profile as `change` leaves it: when the change moved its keys, add the new keys
    to the change (the same single-document write) and return `after` with them."""
    if not touches_match_fields(change):
        return after
    keys = keys_of(after)
    if keys == after.blocking_keys:
        return after
    change.set["blockingKeys"] = keys
    return after.model_copy(update={"blocking_keys": keys})


# The values `normalised_values` reads, as stored: names, birth date, emails, phones, addresses.
StoredValues = tuple[str | None, str | None, date | None, tuple[str, ...], tuple[str, ...], tuple[AddressValues, ...]]


class MatchView:
    """A profile read only to be matched: its id, its keys and what the matcher compares. Its match
    fields are normalised when first asked for (`fields`): one profile's lookup passes over most of
    the look-alikes it reads on their names and birth date alone (`names`), and normalising their
    addresses, emails and phones was most of what reading one cost."""

    __slots__ = ("_contacts", "_fields", "_names", "_values", "blocking_keys", "id")

    def __init__(self, profile_id: str, blocking_keys: tuple[str, ...], values: StoredValues | MatchFields) -> None:
        self.id = profile_id
        self.blocking_keys = blocking_keys
        self._values: StoredValues | None = None
        self._fields: MatchFields | None = None
        self._names: MatchFields | None = None
        self._contacts: frozenset[str] | None = None
        if isinstance(values, MatchFields):
            self._fields = values
        else:
            self._values = values

    @property
    def fields(self) -> MatchFields:
        if self._fields is None:
            assert self._values is not None
            self._fields = normalised_values(*self._values)
        return self._fields

    @property
    def birth_date(self) -> date | None:
        return self.fields.birth_date if self._values is None else self._values[2]

    @property
    def contacts(self) -> frozenset[str]:
        """The contact fields it holds a value of (`contacts_held`), read without `fields` (kept: a
        lookup asks its target's for every look-alike it judges)."""
        if self._contacts is None:
            self._contacts = contacts_of(self.fields) if self._values is None else contacts_held(*self._values[3:])
        return self._contacts

    @property
    def names(self) -> MatchFields:
        """The names and birth date alone (`names_and_birth_date` of `fields`), read without `fields`
        (kept: a lookup may ask twice, for the given-name key and for `may_reach`)."""
        if self._names is None:
            if self._values is None:
                self._names = names_and_birth_date(self.fields)
            else:
                self._names = stored_names_and_birth_date(*self._values[:3])
        return self._names


_EMAIL, _PHONE = KnownIdentifierType.EMAIL.value, KnownIdentifierType.PHONE.value


# What `stored_match_values` raises for a value of another shape (which `match_view` reads through Profile).
OTHER_SHAPE = (TypeError, ValueError, KeyError, AttributeError)


def match_view(document: dict[str, Any]) -> MatchView:
    """A profile read only to be matched, from its stored document (a store projects
    `MATCH_VIEW_FIELDS`, or passes the whole document and the rest is not read). Read straight from
    the document's values: building a Profile costs ~85 us even from these few fields (its defaults),
    most of what reading a look-alike cost. A value of another shape goes through Profile, which
    reads it as before or refuses it."""
    try:
        return MatchView(*stored_match_values(document))
    except OTHER_SHAPE:
        profile = Profile.from_document({key: document[key] for key in MATCH_VIEW_FIELDS if key in document})
        return MatchView(profile.id, tuple(profile.blocking_keys), match_fields(profile))


def stored_match_values(document: dict[str, Any]) -> tuple[str, tuple[str, ...], StoredValues]:
    """What `match_view` reads of a stored document: its id, its keys and its values as stored
    (OTHER_SHAPE for a value of another shape)."""
    keys = document.get("blockingKeys") or ()
    if not all(isinstance(key, str) for key in keys):
        raise TypeError("a blocking key that is not a string")
    return _text(document["_id"]), tuple(keys), _values(document)


def _values(document: dict[str, Any]) -> StoredValues:
    born = document.get("birthDate")
    if isinstance(born, str):
        born = date.fromisoformat(born)
    elif born is not None and (isinstance(born, datetime) or not isinstance(born, date)):
        raise TypeError("a birth date that is not a date")
    emails: list[str] = []
    phones: list[str] = []
    for record in document.get("identifiers") or ():
        kind, value = _text(record["type"]), _text(record["value"])
        if kind == _EMAIL:
            emails.append(value)
        elif kind == _PHONE:
            phones.append(value)
    addresses: list[AddressValues] = [
        (
            _optional(address.get("street")),
            _optional(address.get("line2")),
            _optional(address.get("city")),
            _optional(address.get("postcode")),
            _optional(address.get("country")),
        )
        for address in document.get("addresses") or ()
    ]
    return (
        _optional(document.get("firstName")),
        _optional(document.get("lastName")),
        born,
        tuple(emails),
        tuple(phones),
        tuple(addresses),
    )


def _text(value: Any) -> str:
    if not isinstance(value, str):
        raise TypeError("not a string")
    return value


def _optional(value: Any) -> str | None:
    return None if value is None else _text(value)
