"""Profile reads that follow merges: an id or identifier of a merged-away profile stands for its
survivor, so that clients holding old ids keep finding the customer."""

from __future__ import annotations

from app.domain.identifiers import normalise
from app.domain.profile import Profile
from app.services.ports import ProfileStore
from app.services.profile_writes import MAX_MERGE_HOPS


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
