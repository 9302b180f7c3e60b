"""The embedded store's feed of committed segment events: what a MongoDB change stream is to the
MongoDB backend. Every server process (one per core, app/workers.py) follows it, so a subscriber on
any process hears a change made by any other.

Positions are `segment_feed.seq` (schema.py): numbered in commit order, because SQLite lets one
writer at a time hold the write lock (BEGIN IMMEDIATE) and a row becomes visible only with its
commit, so no reader ever sees a higher number before a lower one. A follower polls every
POLL_SECONDS on a connection of its own, run on a thread of its own: a poll that finds the page
cache cold, or many rows to parse, never holds the event loop. A commit made by the follower's own
process sets `wake`, and the follower reads at once: a poll's wait (up to POLL_SECONDS, a half of
the whole delivery time to a thousand subscribers) is left only to changes made by other processes.
"""

from __future__ import annotations

import asyncio
import contextlib
import sqlite3
from collections.abc import AsyncIterator, Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, TypeVar

from app.domain.segments.segment import SegmentEvent
from app.store.documents import loads

# A change reaches subscribers within one poll (plus the query): well inside the 150 ms aimed for,
# at twenty indexed look-ups a second per process while nothing changes.
POLL_SECONDS = 0.05
ROWS_PER_POLL = 1000  # a burst (a segment evaluated over the store) is read in slices, without a pause

T = TypeVar("T")


async def follow(
    path: Path, resume_token: str | None, *, wake: asyncio.Event | None = None
) -> AsyncIterator[tuple[str, SegmentEvent]]:
    """(position, event) for each segment event committed after `resume_token` (a position this feed
    handed out), or, with None, after the newest one committed when following starts. `wake`, when
    set, ends the wait between polls (and is cleared before the next read)."""
    if str(path) == ":memory:":  # another connection would open another, empty database
        raise ValueError("an in-memory embedded store has no feed: its changes are delivered in-process")
    # One thread owns the connection: its queries, and its closing, run one after another.
    thread = ThreadPoolExecutor(max_workers=1, thread_name_prefix="segment-feed")
    loop = asyncio.get_running_loop()

    def run(work: Callable[..., T], *args: Any) -> asyncio.Future[T]:
        return loop.run_in_executor(thread, work, *args)

    connection = await run(_connect, path)
    try:
        position = int(resume_token) if resume_token else await run(newest, connection)
        while True:
            rows = await run(_committed_after, connection, position)
            for position, event in rows:
                yield str(position), event
            if len(rows) < ROWS_PER_POLL:
                await _pause(wake)
    finally:
        # Queued behind a poll still running (the follower was cancelled meanwhile), never beside it.
        thread.submit(connection.close)
        thread.shutdown(wait=False)


async def _pause(wake: asyncio.Event | None) -> None:
    if wake is None:
        await asyncio.sleep(POLL_SECONDS)
        return
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(wake.wait(), POLL_SECONDS)
    # Cleared before the read, not after: a commit while it runs sets it again for the next wait.
    wake.clear()


def _connect(path: Path) -> sqlite3.Connection:
    connection = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
    connection.execute("PRAGMA busy_timeout=5000")
    connection.execute("PRAGMA query_only=ON")
    return connection


def newest(connection: sqlite3.Connection) -> int:
    """The position of the newest committed change (0: none yet)."""
    row = connection.execute("SELECT max(seq) FROM segment_feed").fetchone()
    return int(row[0]) if row and row[0] is not None else 0


def _committed_after(connection: sqlite3.Connection, position: int) -> list[tuple[int, SegmentEvent]]:
    rows = connection.execute(
        "SELECT f.seq, e.doc FROM segment_feed f JOIN segment_events e ON e.id = f.event_id "
        "WHERE f.seq > ? ORDER BY f.seq LIMIT ?",
        (position, ROWS_PER_POLL),
    ).fetchall()
    return [(int(seq), SegmentEvent.model_validate(loads(doc))) for seq, doc in rows]
