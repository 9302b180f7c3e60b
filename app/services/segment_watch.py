"""With MongoDB, every server process hears every membership change, whichever process made it: a
change stream on `segment_events` feeds the local bus. The stream's resume token is saved in the
store (per instance) so that a restarted watcher continues where it stopped and misses nothing
(as long as the oplog still holds that point)."""

from __future__ import annotations

import asyncio
import logging
import time

from app.services.ports import ProfileStore
from app.services.segment_bus import SegmentBus

log = logging.getLogger("cdp.segments")
SAVE_EVERY_SECONDS = 1.0
RETRY_SECONDS = 2.0


def token_key(instance: str) -> str:
    return f"segmentWatchToken:{instance}"


async def watch(store: ProfileStore, bus: SegmentBus, *, instance: str) -> None:
    """Deliver committed changes to the bus until cancelled, resuming after errors."""
    key = token_key(instance)
    while True:
        token = await store.read_meta(key)
        saved_at = time.monotonic()
        try:
            async for position, event in store.watch_segment_events(token):
                bus.deliver([event])
                token = position
                if time.monotonic() - saved_at >= SAVE_EVERY_SECONDS:
                    await store.write_meta(key, token)
                    saved_at = time.monotonic()
        except asyncio.CancelledError:
            if token:
                await asyncio.shield(store.write_meta(key, token))
            raise
        except Exception:
            log.exception("segment change stream interrupted; resuming in %.0f s", RETRY_SECONDS)
        if token:
            await store.write_meta(key, token)
        await asyncio.sleep(RETRY_SECONDS)
