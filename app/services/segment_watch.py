"""Every server process hears every membership change, whichever process made it: the store's feed
of committed segment events (a change stream on `segment_events` with MongoDB, the committed rows
followed by each process with the embedded store) is the only way changes reach the local bus.

With MongoDB the stream's resume token is saved in the store (per instance) so that a restarted
watcher continues where it stopped and misses nothing (as long as the oplog still holds that point).
The embedded store's processes keep their position in memory only: a process's subscribers are its
own, and saving a position every second from every worker would only compete with real writes. It is
taken when following starts (`feed_position`), so that a follower started over after an error goes on
from there, not from the newest change then (which skipped what was committed in between)."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time

from app.services.ports import FeedPositionLost, ProfileStore
from app.services.segment_bus import SegmentBus

log = logging.getLogger("cdp.segments")
SAVE_EVERY_SECONDS = 1.0
RETRY_SECONDS = 2.0


def token_key(instance: str) -> str:
    return f"segmentWatchToken:{instance}"


async def watch(store: ProfileStore, bus: SegmentBus, *, instance: str | None) -> None:
    """Deliver committed changes to the bus until cancelled, resuming after errors. `instance`: where
    the position is saved across restarts; None: follow from now, the position kept in memory."""
    key = token_key(instance) if instance is not None else None
    token: str | None = None
    unread = key is not None  # the saved position, read in the first round the store answers
    while True:
        saved_at = time.monotonic()
        try:
            if unread and key is not None:
                token, unread = await store.read_meta(key) or None, False  # "": a position dropped
            if token is None:  # from now, kept: started over after an error, it goes on from here
                token = await store.feed_position()
            async for position, event in store.watch_segment_events(token, committed_here=bus.committed):
                bus.deliver([event])
                token = position
                if key is not None and time.monotonic() - saved_at >= SAVE_EVERY_SECONDS:
                    await store.write_meta(key, token)
                    saved_at = time.monotonic()
        except asyncio.CancelledError:
            if key is not None and token:
                await asyncio.shield(store.write_meta(key, token))
            raise
        except FeedPositionLost as exc:
            # Resumed from that position, it failed every time, and the worker delivered nothing again.
            log.warning(
                "segment changes committed while this process was not following may not reach its "
                "subscribers (%s); following from now",
                exc,
            )
            token = None
            if key is not None:
                with contextlib.suppress(Exception):  # the store down meanwhile: dropped at the next save
                    await store.write_meta(key, "")
        except Exception:
            log.exception("segment change stream interrupted; resuming in %.0f s", RETRY_SECONDS)
        if key is not None and token:
            with contextlib.suppress(Exception):  # the store down: saved at the next change or stop
                await store.write_meta(key, token)
        await asyncio.sleep(RETRY_SECONDS)
