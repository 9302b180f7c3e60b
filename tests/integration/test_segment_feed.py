"""The embedded store's feed of committed segment events (app/store/sqlite/segment_feed.py): a commit
made by the follower's own process is read at once, when the process says so, instead of at the next
poll; without that word the feed still finds it by polling."""

from __future__ import annotations

import asyncio

import pytest

from app.domain.segments.segment import SegmentEvent
from app.store.sqlite import segment_feed
from app.store.sqlite.store import SQLiteStore
from tests.builders import segment_event


async def _commit(store: SQLiteStore, event: SegmentEvent) -> None:
    await store.run_in_transaction(lambda tx: tx.insert_segment_events([event]))


async def test_a_commit_made_here_is_read_at_once_not_at_the_next_poll(
    sqlite_store: SQLiteStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(segment_feed, "POLL_SECONDS", 60.0)  # a poll would come too late for the wait below
    committed_here = asyncio.Event()
    await _commit(sqlite_store, segment_event(1))
    feed = sqlite_store.watch_segment_events("0", committed_here=committed_here)
    try:
        assert (await asyncio.wait_for(anext(feed), 5))[1].id == "e1"  # the first read does not wait
        second = asyncio.create_task(anext(feed))  # reads nothing new, then waits for a poll or a word
        await _commit(sqlite_store, segment_event(2))
        committed_here.set()  # what SegmentBus.publish_committed does after a commit
        assert (await asyncio.wait_for(second, 5))[1].id == "e2"
        assert not committed_here.is_set()  # taken: the next wait is for the next commit
    finally:
        await feed.aclose()  # type: ignore[attr-defined]


async def test_a_commit_made_elsewhere_is_found_by_polling(sqlite_store: SQLiteStore) -> None:
    other_process = SQLiteStore(sqlite_store.path)  # its commits set no event of ours
    await _commit(other_process, segment_event(1))
    feed = sqlite_store.watch_segment_events("0", committed_here=asyncio.Event())
    try:
        assert (await asyncio.wait_for(anext(feed), 5))[1].id == "e1"
        second = asyncio.create_task(anext(feed))
        await _commit(other_process, segment_event(2))
        assert (await asyncio.wait_for(second, 5))[1].id == "e2"
    finally:
        await feed.aclose()  # type: ignore[attr-defined]
        await other_process.close()
