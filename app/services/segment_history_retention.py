"""Segment history kept for CDP_SEGMENT_HISTORY_DAYS: older changes are deleted in the background.

Every membership change is recorded (segmentHistory, subscribers catching up), and a store whose
segments are redefined or whose members come and go grows by a row per change for ever: ~650 bytes
each on the embedded store, 65 MB each time a segment of 100,000 members is redefined back and forth.
Of the older changes, the newest entry of each profile into each segment that still exists stays:
for a member it is what `segmentMemberships { since }` reads (the store's `segment_entries`).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Collection, Mapping
from datetime import datetime, timedelta

from app.domain import clock
from app.domain.segments.segment import MembershipChange, SegmentEvent
from app.services.ports import ProfileStore

log = logging.getLogger("cdp")

# Changes read, then deleted, at a time: a delete holds the write lock for its chunk's ids only.
CHUNK = 2_000
EVERY_SECONDS = 3600.0


async def forget_old_changes(store: ProfileStore, *, kept_for: timedelta, now: datetime | None = None) -> int:
    """Delete the segment changes older than `kept_for`, but each profile's newest entry into each
    segment that exists; how many were deleted. The old changes are read once, oldest first, a chunk
    at a time (what stays is read again on the next run); each chunk's decision holds whatever
    happens meanwhile (a change found older than another entry stays older, a deleted segment deleted)."""
    before = (now or clock.now()) - kept_for
    forgotten = 0
    after: tuple[datetime, str] | None = None
    while changes := await store.old_segment_changes(before=before, after=after, limit=CHUNK):
        after = (changes[-1].at, changes[-1].id)
        segments = {segment.id for segment in await store.list_segments()}  # after the chunk: none made since
        entered = {change.profile_id for change in changes if change.change is MembershipChange.ENTERED}
        entries = await store.segment_entries(entered) if entered else {}
        doomed = [change.id for change in changes if forgettable(change, entries, segments)]
        if doomed:
            forgotten += await store.delete_segment_events(doomed)
        if len(changes) < CHUNK:
            break
        await asyncio.sleep(0)
    if forgotten:
        log.info("segment history: deleted %d changes older than %d days", forgotten, kept_for.days)
    return forgotten


def forgettable(
    change: SegmentEvent, entries: Mapping[str, Mapping[str, datetime]], segments: Collection[str]
) -> bool:
    """Whether an old change may go: any change of a segment deleted since, an exit, an entry older
    than the profile's newest entry into that segment (`entries`: segment_entries)."""
    if change.segment_id not in segments or change.change is not MembershipChange.ENTERED:
        return True
    return entries.get(change.profile_id, {}).get(change.segment_id) != change.at


async def keep_forgetting_old_changes(store: ProfileStore, *, kept_for: timedelta, every_seconds: float) -> None:
    """Until cancelled, `forget_old_changes` now and every `every_seconds`."""
    while True:
        try:
            await forget_old_changes(store, kept_for=kept_for)
        except Exception:  # a store hiccup must not end the schedule; the next round retries
            log.exception("deleting old segment history failed; retrying in %.0f s", every_seconds)
        await asyncio.sleep(every_seconds)

