"""The blocking-key index kept on every profile: `Profile.blocking_keys` holds the keys of its
current identity fields, and each store indexes that list (a MongoDB multikey index, an SQLite side
table), so that look-alikes of one profile are found by key in milliseconds at any store size.

Every profile write passes through `refresh_keys` (whole documents: creation, merge, unmerge) or
`index_change` (single-document updates): the keys never lag behind the fields they come from.
Tombstones carry no keys: a merged-away profile is never a candidate.
"""

from __future__ import annotations

from typing import Any

from app.domain.matching.blocking import blocking_keys
from app.domain.matching.fields import match_fields
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


def match_view(document: dict[str, Any]) -> Profile:
    """A profile read only to be matched: its identity fields, not its history or stats (a store
    projects `MATCH_VIEW_FIELDS`, or passes the whole document and this drops the rest)."""
    return Profile.from_document({key: document[key] for key in MATCH_VIEW_FIELDS if key in document})
