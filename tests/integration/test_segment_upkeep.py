"""Segment upkeep after a write is batch-native, on every storage backend: one change over many profiles
costs one read of the profiles and one unit of work, whatever their number; nothing holds the write
lock (or the event loop) while profiles are read and evaluated; and a profile that moves between that
read and the write is read and evaluated again rather than written from its old version."""

from __future__ import annotations

import asyncio
import contextvars
import threading
from collections import Counter
from collections.abc import Awaitable, Callable
from datetime import timedelta
from typing import Any

import pytest

from app.domain import clock
from app.domain.profile import RECENT_INTERACTIONS_CAP
from app.domain.segments.segment import MembershipChange
from app.services.ingestion import ingest_events
from app.services.ports import ProfileStore
from app.services.segment_bus import SegmentBus
from app.services.segments import OFF_LOOP_FROM, SegmentEngine
from app.store.sqlite.store import SQLiteStore
from tests.builders import event
from tests.interleaving import StandIn

BUYERS = {"name": "Buyers", "condition": {"compare": {"path": "stats.orders", "op": "gte", "value": 1}}}
CART_WEEK = {
    "name": "Abandoned a cart this week",
    "condition": {"event": {"type": "cart_abandoned", "atLeast": 1, "withinDays": 7}},
}
TWO_ORDERS_MONTH = {
    "name": "Two orders this month",
    "condition": {"event": {"type": "order_completed", "atLeast": 2, "withinDays": 30}},
}
EMMAS = {"name": "Emmas", "condition": {"compare": {"path": "firstName", "op": "eq", "value": "Emma"}}}


class CountingStore:
    """The real store, with each call of a coroutine method counted, and hooks to run something as
    the engine reads profiles or as it writes (another request's write landing meanwhile)."""

    def __init__(self, inner: ProfileStore) -> None:
        self.inner = inner
        self.calls: Counter[str] = Counter()
        self.before_write: Callable[[], Awaitable[None]] | None = None
        self.on_read: Callable[[], Awaitable[None]] | None = None
        self.log: list[str] = []

    def __getattr__(self, name: str) -> Any:
        attribute = getattr(self.inner, name)
        if not asyncio.iscoroutinefunction(attribute):
            return attribute

        async def counted(*args: Any, **kwargs: Any) -> Any:
            self.calls[name] += 1
            if name in ("get_profile", "get_profiles") and self.on_read is not None:
                on_read, self.on_read = self.on_read, None
                await on_read()
            return await attribute(*args, **kwargs)

        return counted

    async def run_in_transaction(self, work: Callable[[Any], Awaitable[Any]]) -> Any:
        self.calls["run_in_transaction"] += 1
        if self.before_write is not None:
            before, self.before_write = self.before_write, None
            await before()
        self.log.append("upkeep write")
        return await self.inner.run_in_transaction(work)


class LandingAfterRead(StandIn):
    """The real store, where something lands right after the first read of profiles (another
    request's write, between the read and the write of whoever read them)."""

    def __init__(self, inner: ProfileStore, land: Callable[[], Awaitable[None]]) -> None:
        super().__init__(inner)
        self._land, self.landed = land, False

    async def get_profiles(self, profile_ids: Any) -> Any:
        found = await self._inner.get_profiles(profile_ids)
        if not self.landed:
            self.landed = True
            await self._land()
        return found


async def _profiles(store: ProfileStore, count: int, type_: str = "order_completed") -> list[str]:
    """Profiles written with no listener: their memberships wait for the engine's `changed`."""
    events = [event(type_, email=f"p{n}@example.com") for n in range(count)]
    return [o.profile_id or "" for o in await ingest_events(store, events)]


@pytest.mark.parametrize("count", [pytest.param(3, id="3 profiles"), pytest.param(40, id="40 profiles")])
async def test_one_change_reads_once_and_writes_one_unit_of_work_whatever_the_profiles(
    store: ProfileStore, count: int
) -> None:
    engine = SegmentEngine(store, SegmentBus())
    buyers = (await engine.create(BUYERS)).segment
    carts = (await engine.create(CART_WEEK)).segment  # windowed: each profile gets a scheduled check
    ids = await _profiles(store, count)
    counting = CountingStore(store)

    events = await SegmentEngine(counting, SegmentBus()).changed(ids, "event", event_types={"order_completed"})

    assert sorted((e.profile_id, e.change, e.cause) for e in events) == sorted(
        (p, MembershipChange.ENTERED, "event") for p in ids
    )
    assert sorted(await store.member_ids(buyers.id)) == sorted(ids)
    assert await store.member_ids(carts.id) == []
    assert counting.calls["run_in_transaction"] == 1
    assert counting.calls["get_profiles"] == 1
    assert counting.calls["get_profile"] == 0
    assert counting.calls["list_interactions"] == 0


async def test_a_write_meanwhile_waits_for_no_read_nor_evaluation(store: ProfileStore) -> None:
    engine = SegmentEngine(store, SegmentBus())
    buyers = (await engine.create(BUYERS)).segment
    ids = await _profiles(store, 30)
    counting = CountingStore(store)
    small_writes: list[asyncio.Task[None]] = []

    async def small_write() -> None:
        await store.write_meta("probe", "1")
        counting.log.append("small write")

    async def while_reading() -> None:  # another request's write, while the upkeep reads the profiles
        small_writes.append(asyncio.create_task(small_write(), context=contextvars.Context()))  # a request of its own
        done, _ = await asyncio.wait(small_writes, timeout=10)  # a guard: it would wait for the upkeep
        assert done, "the write waited for the upkeep's read"

    counting.on_read = while_reading
    await SegmentEngine(counting, SegmentBus()).changed(ids, "event", event_types={"order_completed"})

    assert counting.log == ["small write", "upkeep write"]
    assert len(await store.member_ids(buyers.id)) == len(ids)


async def test_the_loop_turns_while_a_large_change_is_read_and_evaluated(sqlite_store: SQLiteStore) -> None:
    engine = SegmentEngine(sqlite_store, SegmentBus())
    buyers = (await engine.create(BUYERS)).segment
    ids = await _profiles(sqlite_store, OFF_LOOP_FROM * 2)
    loop_thread = threading.get_ident()
    on_loop: list[str] = []
    sqlite_store.trace(lambda sql: on_loop.append(sql) if threading.get_ident() == loop_thread else None)
    counting = CountingStore(sqlite_store)
    turns = 0
    turns_at_write: list[int] = []

    async def before_write() -> None:
        turns_at_write.append(turns)

    async def turn() -> None:
        nonlocal turns
        while not upkeep.done():
            turns += 1
            await asyncio.sleep(0)

    counting.before_write = before_write
    upkeep = asyncio.create_task(SegmentEngine(counting, SegmentBus()).changed(ids, "event", event_types={"x"}))
    await asyncio.sleep(0)
    turns_at_start = turns
    await asyncio.gather(upkeep, turn())
    sqlite_store.trace(None)

    assert len(await sqlite_store.member_ids(buyers.id)) == len(ids)
    assert not [sql for sql in on_loop if "FROM profiles" in sql], "profiles were read on the event loop"
    # Other coroutines ran while the profiles were read and evaluated, before anything was written.
    assert turns_at_write[0] > turns_at_start + 1


async def test_a_profile_that_moved_since_it_was_read_is_evaluated_again_not_overwritten(store: ProfileStore) -> None:
    engine = SegmentEngine(store, SegmentBus())
    emmas = (await engine.create(EMMAS)).segment
    outcomes = await ingest_events(
        store,
        [
            event("identify", email="moves@example.com", properties={"firstName": "Emma"}),
            event("identify", email="stays@example.com", properties={"firstName": "Emma"}),
        ],
    )
    moves, stays = (o.profile_id or "" for o in outcomes)
    counting = CountingStore(store)

    async def renamed_meanwhile() -> None:  # lands after the engine read "Emma", before it writes
        await ingest_events(
            store, [event("identify", email="moves@example.com", properties={"firstName": "Léa"}, minutes=1)]
        )

    counting.before_write = renamed_meanwhile
    events = await SegmentEngine(counting, SegmentBus()).changed([moves, stays], "profile updated", paths=None)

    assert [(e.profile_id, e.change) for e in events] == [(stays, MembershipChange.ENTERED)]
    assert await store.member_ids(emmas.id) == [stays]
    assert counting.calls["run_in_transaction"] == 2  # the moved one, read and evaluated again


async def test_an_evaluation_never_drops_the_window_check_of_an_event_that_landed_meanwhile(
    store: ProfileStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The evaluation of a new segment schedules its members' window checks from profiles it read; an
    event landing after that read, with its own upkeep and check, keeps them: the evaluation leaves
    a profile that moved out of its write, and decides it again on what it is now."""
    now = clock.now()
    engine = SegmentEngine(store, SegmentBus())
    (first,) = await ingest_events(
        store, [event("cart_abandoned", email="cart@example.com", at=now - timedelta(days=1))]
    )
    profile_id = first.profile_id or pytest.fail()

    async def abandoned_again() -> None:  # after the evaluation read the profile, before it writes
        await ingest_events(store, [event("cart_abandoned", email="cart@example.com", at=now)])
        await engine.changed([profile_id], "event", paths=None)

    at_most_one = {
        "name": "At most one abandon this week",
        "condition": {"event": {"type": "cart_abandoned", "atMost": 1, "withinDays": 7}},
    }
    reading = LandingAfterRead(store, abandoned_again)
    segment = (await SegmentEngine(reading, SegmentBus()).create(at_most_one)).segment
    assert reading.landed  # between the evaluation's read and its write
    assert await store.member_ids(segment.id) == []  # two abandons this week

    due = await store.next_check_at()  # when the first abandon leaves the week
    assert due is not None and abs(due - (now + timedelta(days=6))) < timedelta(seconds=1)
    real = clock.now
    monkeypatch.setattr(clock, "now", lambda: real() + timedelta(days=6, seconds=2))
    assert await engine.run_due_checks() == 1
    assert await store.member_ids(segment.id) == [profile_id]


async def test_an_evaluation_schedules_the_window_check_of_a_profile_renamed_meanwhile(
    store: ProfileStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Found by a review: a write that moves no windowed segment (a name) has an upkeep that never looks
    at the segment being created, so the evaluation must decide the profile again itself. Left out of
    its write only, the profile had no check, and stayed in "abandoned a cart this week" for good."""
    now = clock.now()
    engine = SegmentEngine(store, SegmentBus())
    (first,) = await ingest_events(
        store, [event("cart_abandoned", email="cart@example.com", at=now - timedelta(days=1))]
    )
    profile_id = first.profile_id or pytest.fail()
    await engine.changed([profile_id], "event", paths=None)  # its upkeep done: no write waits for one

    async def renamed() -> None:  # after the evaluation read the profile, before it writes
        await ingest_events(store, [event("identify", email="cart@example.com", properties={"firstName": "Cy"})])
        await engine.changed([profile_id], "event", paths=["firstName"])

    reading = LandingAfterRead(store, renamed)
    segment = (await SegmentEngine(reading, SegmentBus()).create(CART_WEEK)).segment
    assert reading.landed
    assert await store.member_ids(segment.id) == [profile_id]

    due = await store.next_check_at()  # when the abandon leaves the week
    assert due is not None and abs(due - (now + timedelta(days=6))) < timedelta(seconds=1)
    real = clock.now
    monkeypatch.setattr(clock, "now", lambda: real() + timedelta(days=6, seconds=2))
    assert await engine.run_due_checks() == 1
    assert await store.member_ids(segment.id) == []


async def test_a_profile_past_its_recent_list_is_decided_on_the_events_its_segment_counts(store: ProfileStore) -> None:
    """Two orders ten days ago, then more page views than the recent list holds: the month's window
    reaches past the list, so the evaluation's check and a later upkeep read the history (only the
    event types the segment counts, app/domain/segments/upkeep.py counted_types) and still see both."""
    now = clock.now()
    email = "heavy@example.com"
    orders = [event("order_completed", email=email, at=now - timedelta(days=10, minutes=n)) for n in range(2)]
    views = [event("page_view", email=email, at=now - timedelta(minutes=n)) for n in range(RECENT_INTERACTIONS_CAP + 5)]
    outcomes = await ingest_events(store, [*orders, *views])
    profile_id = outcomes[0].profile_id or pytest.fail()
    profile = await store.get_profile(profile_id)
    assert profile is not None and {i.type for i in profile.recent} == {"page_view"}
    engine = SegmentEngine(store, SegmentBus())
    await engine.changed([profile_id], "event", paths=None)  # its upkeep done: no write waits for one

    segment = (await engine.create(TWO_ORDERS_MONTH)).segment
    assert await store.member_ids(segment.id) == [profile_id]
    due = await store.next_check_at()  # the older order leaves the month: one order is not two
    assert due is not None and abs(due - (now + timedelta(days=20, minutes=-1))) < timedelta(seconds=1)

    await ingest_events(store, [event("order_completed", email=email, at=now - timedelta(days=40))])  # a late one
    assert await engine.changed([profile_id], "event", event_types={"order_completed"}) == []
    assert await store.member_ids(segment.id) == [profile_id]


async def test_missed_writes_with_no_segment_defined_are_cleared_without_reading_a_profile(
    store: ProfileStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Read and evaluated against no segment, the 100,000 checks a bulk load left (no server's upkeep
    running) held a core for ~14 s: there is nothing to catch up, and a segment defined afterwards is
    evaluated over every profile."""
    ids = await _profiles(store, 40)  # written with no listener: each leaves its check of every segment
    real = clock.now
    monkeypatch.setattr(clock, "now", lambda: real() + timedelta(minutes=1))  # due
    counting = CountingStore(store)

    assert await SegmentEngine(counting, SegmentBus()).run_due_checks() == 40

    assert await store.next_check_at() is None
    assert counting.calls["get_profiles"] == counting.calls["interactions_since"] == 0
    buyers = (await SegmentEngine(store, SegmentBus()).create(BUYERS)).segment
    assert sorted(await store.member_ids(buyers.id)) == sorted(ids)
