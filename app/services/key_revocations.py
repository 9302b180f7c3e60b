"""Revoked API keys, heard by every server process: whichever process (or the CLI) revoked a key,
each one reads the store's key list every few seconds and acts on the revoked ones. A request is
refused on its own (every request checks its key); what this is for is what outlives a request:
open subscriptions, which must not keep receiving changes for a key that was taken away."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable

from app.domain.errors import StoreUnavailable
from app.services.ports import ProfileStore

log = logging.getLogger("cdp.keys")

OnRevoked = Callable[[set[str]], Awaitable[object]]


async def revoked_key_ids(store: ProfileStore) -> set[str]:
    return {key.id for key in await store.list_api_keys() if key.revoked_at is not None}


async def watch_revocations(store: ProfileStore, on_revoked: OnRevoked, *, every_seconds: float) -> None:
    """Tell `on_revoked` the ids of every revoked key, every `every_seconds`, until cancelled (acting on
    one again is harmless: the listener closes what is still open, a socket its key let in just before
    the revocation included). The key list is read again only when the keys' version moved: read every
    time, 100,000 keys (revoked ones are kept) took 1.2 s of every worker's loop every 2 s."""
    seen: int | None = None
    revoked: set[str] = set()
    while True:
        try:
            version = await store.api_keys_version()
            if version != seen:
                revoked, seen = await revoked_key_ids(store), version
        except StoreUnavailable as exc:
            log.warning("revoked keys not read (%s): trying again in %.0f s", exc.message, every_seconds)
        if revoked:
            await on_revoked(revoked)
        await asyncio.sleep(every_seconds)
