"""Work one server process does at a time, though every process runs its schedule: a lease in the store
(`ProfileStore.take_lease`), held for a bounded time so that a process that dies leaves it to the next."""

from __future__ import annotations

from datetime import timedelta

from app.domain import clock
from app.services.ports import ProfileStore


async def hold_for(store: ProfileStore, name: str, holder: str, duration: timedelta) -> bool:
    """Take `name` for `duration` from now, or renew it for its holder; False: another holds it."""
    now = clock.now()
    return await store.take_lease(name, holder, now=now, until=now + duration)
