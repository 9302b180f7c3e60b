"""Segment history kept for CDP_SEGMENT_HISTORY_DAYS: older changes are deleted in the background.

Every membership change is recorded (segmentHistory, subscribers catching up), and a store whose
segments are redefined or whose members come and go grows by a row per change for ever: ~650 bytes
each on the embedded store, 65 MB each time a segment of 100,000 members is redefined back and forth.
The newest change of each profile in each segment stays whatever its age: for a member, it is the
entry `segmentMemberships` reads its `since` from.
"""

from __future__ import annotations

import asyncio
import logging
from datetime import datetime, timedelta

from app.domain import clock
from app.services.ports import ProfileStore

log = logging.getLogger("cdp")

CHUNK = 5_000  # changes deleted in one transaction: the writer is held for a chunk, not a whole backlog
EVERY_SECONDS = 3600.0


async def forget_old_changes(store: ProfileStore, *, kept_for: timedelta, now: datetime | None = None) -> int:
    """Delete the segment changes older than `kept_for` (but each profile's newest in each segment),
    a chunk at a time; how many were deleted."""
    before = (now or clock.now()) - kept_for
    forgotten = 0
    while deleted := await store.forget_segment_history(before=before, limit=CHUNK):
        forgotten += deleted
        if deleted < CHUNK:
            break
        await asyncio.sleep(0)  # other writers take their turn between chunks
    if forgotten:
        log.info("segment history: deleted %d changes older than %d days", forgotten, kept_for.days)
    return forgotten


async def keep_forgetting_old_changes(store: ProfileStore, *, kept_for: timedelta, every_seconds: float) -> None:
    """Until cancelled, `forget_old_changes` now and every `every_seconds`."""
    while True:
        try:
            await forget_old_changes(store, kept_for=kept_for)
        except Exception:  # a store hiccup must not end the schedule; the next round retries
            log.exception("deleting old segment history failed; retrying in %.0f s", every_seconds)
        await asyncio.sleep(every_seconds)
