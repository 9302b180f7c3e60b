"""The embedded store's feed of committed segment events (app/store/sqlite/segment_feed.py): a commit
made by the follower's own process is read at once, when the process says so, instead of at the next
poll; without that word the feed still finds it by polling."""

from __future__ import annotations

import asyncio
import sqlite3
from collections.abc import AsyncIterator
from typing import Any

import pytest

from app.domain.segments.segment import SegmentEvent
from app.services import segment_watch
from app.services.ports import FeedPositionLost
from app.services.segment_bus import SegmentBus
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


async def _first_heard(bus: SegmentBus, heard: list[str]) -> None:
    """The id of the first change the bus delivers, put in `heard`."""
    async for change in bus.listen(None, None):
        heard.append(change.id)
        return


class _FailsOnce:
    """The store, whose feed fails once as soon as it is followed (a read error): `failed` is set then."""

    def __init__(self, store: SQLiteStore) -> None:
        self.store = store
        self.failed = asyncio.Event()

    def __getattr__(self, name: str) -> Any:
        return getattr(self.store, name)

    def watch_segment_events(self, token: str | None, **kwargs: Any) -> AsyncIterator[tuple[str, SegmentEvent]]:
        if not self.failed.is_set():
            self.failed.set()
            raise sqlite3.OperationalError("disk I/O error")
        return self.store.watch_segment_events(token, **kwargs)


async def test_a_follower_started_over_after_an_error_misses_nothing_committed_meanwhile(
    sqlite_store: SQLiteStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(segment_watch, "RETRY_SECONDS", 0.2)
    await _commit(sqlite_store, segment_event(1))  # before following: not heard
    store, bus = _FailsOnce(sqlite_store), SegmentBus(local_delivery=False)
    heard: list[str] = []
    listener = asyncio.create_task(_first_heard(bus, heard))
    watcher = asyncio.create_task(segment_watch.watch(store, bus, instance=None))  # type: ignore[arg-type]
    try:
        await asyncio.wait_for(store.failed.wait(), 5)
        await _commit(sqlite_store, segment_event(2))  # while the follower waits to start over
        await asyncio.wait_for(listener, 5)
        assert heard == ["e2"]
    finally:
        watcher.cancel()
        await asyncio.gather(watcher, return_exceptions=True)


class _PositionLost:
    """The store, whose feed cannot resume from a saved position (MongoDB's oplog no longer holds it):
    the error its change stream gives on every resume from it."""

    def __init__(self, store: SQLiteStore, lost: str) -> None:
        self.store, self.lost = store, lost
        self.refused, self.followed = 0, asyncio.Event()

    def __getattr__(self, name: str) -> Any:
        return getattr(self.store, name)

    def watch_segment_events(self, token: str | None, **kwargs: Any) -> AsyncIterator[tuple[str, SegmentEvent]]:
        if token == self.lost:
            self.refused += 1
            raise FeedPositionLost("the change stream cannot resume (286: history lost)")
        self.followed.set()  # from a position taken now
        return self.store.watch_segment_events(token, **kwargs)


async def test_a_saved_position_the_feed_cannot_resume_from_is_dropped_and_the_feed_followed_from_now(
    sqlite_store: SQLiteStore, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """Found by an audit of the MongoDB backend: a worker down longer than the oplog's window got the
    same error at every resume from its saved token, every 2 s, for ever, and never delivered again."""
    monkeypatch.setattr(segment_watch, "RETRY_SECONDS", 0.05)
    await sqlite_store.write_meta(segment_watch.token_key("w1"), "too-old")
    store, bus = _PositionLost(sqlite_store, "too-old"), SegmentBus(local_delivery=False)
    heard: list[str] = []
    listener = asyncio.create_task(_first_heard(bus, heard))
    watcher = asyncio.create_task(segment_watch.watch(store, bus, instance="w1"))  # type: ignore[arg-type]
    try:
        await asyncio.wait_for(store.followed.wait(), 5)
        await _commit(sqlite_store, segment_event(3))
        await asyncio.wait_for(listener, 5)
    finally:
        watcher.cancel()
        await asyncio.gather(watcher, return_exceptions=True)
    assert heard == ["e3"] and store.refused == 1
    assert await sqlite_store.read_meta(segment_watch.token_key("w1")) != "too-old"
    assert "may not reach its subscribers" in caplog.text
