"""Profile reads that follow merges: an id or identifier of a merged-away profile stands for its
survivor, so that clients holding old ids keep finding the customer."""

from __future__ import annotations

from collections.abc import Collection, Sequence

from app.domain.identifiers import normalise
from app.domain.profile import Profile
from app.services.ports import ProfileStore
from app.services.profile_writes import MAX_MERGE_HOPS


async def get_profile(store: ProfileStore, profile_id: str) -> Profile | None:
    profile = await store.get_profile(profile_id)
    return await _follow_merges(store, profile)


async def get_profiles(store: ProfileStore, profile_ids: Collection[str]) -> dict[str, Profile | None]:
    """`get_profile` for each of `profile_ids`, with one store read per merge hop for all of them."""
    current = await store.get_profiles(profile_ids)
    pending: dict[str, Profile | None] = {profile_id: current.get(profile_id) for profile_id in profile_ids}
    found: dict[str, Profile | None] = dict.fromkeys(profile_ids)  # None for chains longer than MAX_MERGE_HOPS
    for _ in range(MAX_MERGE_HOPS):
        following: dict[str, str] = {}
        for profile_id, profile in pending.items():
            if profile is None or profile.merged_into is None:
                found[profile_id] = profile
            else:
                following[profile_id] = profile.merged_into
        if not following:
            break
        survivors = await store.get_profiles(set(following.values()))
        pending = {profile_id: survivors.get(target) for profile_id, target in following.items()}
    return found


async def read_again(store: ProfileStore, profiles: Sequence[Profile]) -> list[Profile]:
    """`profiles` as stored now, each followed to its survivor: what a write answers once its
    listeners ran, since segment upkeep changes the profile's `segments` after the write (its answer
    listed the segments from before it) and a look-alike may have been merged; one gone since (erased)
    is answered as written."""
    now = await get_profiles(store, [profile.id for profile in profiles])
    return [now.get(profile.id) or profile for profile in profiles]


async def get_profile_by_identifier(store: ProfileStore, type_: str, value: str) -> Profile | None:
    identifier = normalise(type_, value, field="")  # the query's arguments: type and value
    return await _follow_merges(store, await store.find_profile_by_identity(identifier.key))


async def _follow_merges(store: ProfileStore, profile: Profile | None) -> Profile | None:
    for _ in range(MAX_MERGE_HOPS):
        if profile is None or profile.merged_into is None:
            return profile
        profile = await store.get_profile(profile.merged_into)
    return None
