"""Profile reads and direct writes: by id (following merges), by identifier, typed listing, upsert."""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from app.domain import clock
from app.domain.errors import InvalidInput
from app.domain.event_effects import identifier_records
from app.domain.events import RawIdentifier
from app.domain.identifiers import Identifier, normalise
from app.domain.profile import Profile
from app.domain.profile_change import ProfileChange
from app.domain.profile_input import change_for_fields, parse_profile_input
from app.domain.profile_query import ProfileFilter
from app.services.identity_policy import IdentityPolicy
from app.services.ports import ProfileStore, StoreTransaction
from app.services.profile_writes import MAX_MERGE_HOPS, with_retries, write_to_resolved_profile

SOURCE = re.compile(r"^[a-z][a-z0-9_]{0,31}$")


@dataclass(frozen=True, slots=True)
class Page:
    profiles: list[Profile]
    has_next: bool


async def get_profile(store: ProfileStore, profile_id: str) -> Profile | None:
    profile = await store.get_profile(profile_id)
    return await _follow_merges(store, profile)


async def get_profile_by_identifier(store: ProfileStore, type_: str, value: str) -> Profile | None:
    identifier = normalise(type_, value, field="identifier")
    return await _follow_merges(store, await store.find_profile_by_identity(identifier.key))


async def _follow_merges(store: ProfileStore, profile: Profile | None) -> Profile | None:
    for _ in range(MAX_MERGE_HOPS):
        if profile is None or profile.merged_into is None:
            return profile
        profile = await store.get_profile(profile.merged_into)
    return None


def check_page_size(first: int, *, maximum: int, field: str = "first") -> None:
    if not 1 <= first <= maximum:
        raise InvalidInput(f"{field} must be between 1 and {maximum}, got {first}", field=field)


async def list_profiles(
    store: ProfileStore, query: ProfileFilter, *, first: int, after: str | None, max_page_size: int
) -> Page:
    check_page_size(first, maximum=max_page_size)
    profiles = await store.list_profiles(query, after=after, limit=first + 1)
    return Page(profiles[:first], len(profiles) > first)


async def upsert_profile(
    store: ProfileStore,
    identifiers: list[RawIdentifier],
    fields: dict[str, Any],
    *,
    source: str = "upsert",
    policy: IdentityPolicy | None = None,
) -> Profile:
    """Find the customer by identifiers (or create them) and set the given fields; `source` (a CRM,
    a form…) is what the SOURCE_PRIORITY merge rule ranks."""
    normalised, parsed = parse_profile_input(identifiers, fields)
    policy = policy or IdentityPolicy()
    usable = policy.usable(normalised)
    if not SOURCE.match(source):
        raise InvalidInput("source must be 1-32 lower-case letters, digits or underscores", field="source")
    at = clock.now()

    async def work(tx: StoreTransaction) -> Profile:
        def build(profile: Profile, additions: list[Identifier]) -> ProfileChange:
            change = change_for_fields(parsed, at=at, source=source)
            if additions:
                change.append["identifiers"] = identifier_records(additions, at=at, source=source)
            return change.stamped(at)

        profile, _ = await write_to_resolved_profile(tx, usable, build, at=at, policy=policy)
        return profile

    async with store.batch():
        return await with_retries(store, work)
