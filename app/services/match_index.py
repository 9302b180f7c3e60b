"""Keeps the blocking-key index current across upgrades: profiles written before the index existed,
or under an older key definition (`KEYS_VERSION`), are re-keyed once at start-up, page by page."""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from app.domain.matching.index import KEYS_VERSION, keys_of, stored_keys
from app.domain.profile_change import ProfileChange
from app.domain.profile_query import ProfileFilter
from app.services.ports import ProfileStore, StoreTransaction

META_KEY = "blockingKeysVersion"
PAGE_SIZE = 500

Progress = Callable[[int], None]  # profiles checked so far


async def ensure_blocking_keys(store: ProfileStore, progress: Progress | None = None) -> int:
    """Re-key every live profile whose stored keys differ from its fields; returns how many changed.
    A no-op (one read) when the store is already at `KEYS_VERSION`."""
    if await store.read_meta(META_KEY) == KEYS_VERSION:
        return 0
    changed = checked = 0
    after: str | None = None
    while page := await store.list_profiles(ProfileFilter(), after=after, limit=PAGE_SIZE):
        async with store.batch():
            for profile in page:
                if keys_of(profile) != profile.blocking_keys:
                    changed += await store.run_in_transaction(_set_keys(profile.id))
        checked += len(page)
        after = page[-1].id
        if progress is not None:
            progress(checked)
    await store.write_meta(META_KEY, KEYS_VERSION)
    return changed


def _set_keys(profile_id: str) -> Callable[[StoreTransaction], Awaitable[int]]:
    """The profile's keys, from the profile as stored when they are written: another worker may be
    serving writes while this one starts, and keys of the profile as the page read it were stale."""

    async def work(tx: StoreTransaction) -> int:
        document = (await tx.get_profile_documents([profile_id])).get(profile_id)
        if document is None or (keys := stored_keys(document)) == document.get("blockingKeys"):
            return 0
        # Not stamped: the keys are derived data, the profile itself (and its version) is unchanged.
        await tx.update_profile(profile_id, ProfileChange(set={"blockingKeys": keys}))
        return 1

    return work
