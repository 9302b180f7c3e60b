"""The bus offers a change to its own subscribers only: those watching everything, its segment, its
profile, or both; and each of them hears it once."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime

from app.domain.segments.segment import MembershipChange, SegmentEvent
from app.services.segment_bus import SegmentBus


def _event(number: int, segment_id: str, profile_id: str) -> SegmentEvent:
    return SegmentEvent(
        _id=f"e{number}",
        segment_id=segment_id,
        profile_id=profile_id,
        change=MembershipChange.ENTERED,
        at=datetime(2026, 1, 1, tzinfo=UTC),
        cause="test",
    )


async def test_a_change_reaches_exactly_its_own_subscribers_among_thousands() -> None:
    bus = SegmentBus()
    filters = [(None, f"p{n}") for n in range(2_000)]  # each watching one profile
    filters += [("vip", None), ("vip", None), ("churn", None), (None, None), ("vip", "p7"), ("churn", "p7")]
    heard: list[list[str]] = [[] for _ in filters]

    async def listen(index: int, segment_id: str | None, profile_id: str | None) -> None:
        async for event in bus.listen(segment_id, profile_id):
            heard[index].append(event.id)

    tasks = [asyncio.create_task(listen(i, s, p)) for i, (s, p) in enumerate(filters)]
    await asyncio.sleep(0)  # every listener subscribed
    assert bus.active == len(filters)
    change = _event(1, "vip", "p7")
    assert bus.interested(change) == 5  # p7's watcher, two of vip, the one of everything, vip+p7
    bus.deliver([change, _event(2, "churn", "p1999")])
    await asyncio.sleep(0)
    for task in tasks:
        task.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)

    got = {filters[i]: ids for i, ids in enumerate(heard) if ids}
    assert got == {
        (None, "p7"): ["e1"],
        ("vip", None): ["e1"],
        (None, None): ["e1", "e2"],
        ("vip", "p7"): ["e1"],
        (None, "p1999"): ["e2"],
        ("churn", None): ["e2"],
    }
    assert [len(ids) for ids in heard if ids].count(1) == 6  # the two vip watchers heard e1 once each
    assert bus.active == 0  # every listener gone with its task


def test_a_change_committed_here_wakes_the_follower_of_the_feed_and_nothing_else_does() -> None:
    bus = SegmentBus(local_delivery=False)
    bus.publish_committed([])
    bus.deliver([_event(1, "vip", "p1")])  # heard from the feed: a change of any process
    assert not bus.committed.is_set()
    bus.publish_committed([_event(2, "vip", "p1")])
    assert bus.committed.is_set()  # app/services/segment_watch.py hands it to the store's feed


class _Group:
    """Readers of one group as the transport serves them (graphql_schema/subscriptions.py): each writes
    what it takes in for itself, and for its followers unless told to hand the change back."""

    def __init__(self, bus: SegmentBus, size: int) -> None:
        self.bus = bus
        self.written: dict[str, list[str]] = {f"r{n}": [] for n in range(size)}
        self.led: list[tuple[str, str, int]] = []  # (reader, change, followers)
        self.hand_back = False
        self.gate = asyncio.Event()
        self.gate.set()
        self.tasks = {name: asyncio.create_task(self._read(name)) for name in self.written}

    async def _read(self, name: str) -> None:
        async for heard in self.bus.listen_shared("vip", None, group="same document", owner=name):
            self.written[name].append(heard.event.id)
            try:
                if heard.followers:
                    self.led.append((name, heard.event.id, len(heard.followers)))
                    await self.gate.wait()
                if not self.hand_back:
                    for follower in heard.take():
                        assert isinstance(follower.owner, str)
                        self.written[follower.owner].append(heard.event.id)
                        follower.settle(None)
            finally:
                heard.release()

    async def stop(self) -> None:
        for task in self.tasks.values():
            task.cancel()
        await asyncio.gather(*self.tasks.values(), return_exceptions=True)


async def _turns(count: int = 5) -> None:
    for _ in range(count):
        await asyncio.sleep(0)


async def test_a_groups_waiting_subscribers_wake_one_reader_who_writes_for_the_others() -> None:
    bus = SegmentBus()
    group = _Group(bus, 5)
    alone: list[str] = []

    async def listen_alone() -> None:
        async for event in bus.listen("vip", None):
            alone.append(event.id)

    other = asyncio.create_task(listen_alone())
    await _turns()
    bus.deliver([_event(1, "vip", "p1")])
    await _turns()
    bus.deliver([_event(2, "vip", "p2")])
    await _turns()
    assert [(change, followers) for _, change, followers in group.led] == [("e1", 4), ("e2", 4)]
    assert group.written == {name: ["e1", "e2"] for name in group.written}  # each once, in order
    assert alone == ["e1", "e2"]
    other.cancel()
    await group.stop()
    assert bus.active == 0


async def test_a_change_handed_back_comes_before_what_arrived_since() -> None:
    bus = SegmentBus()
    group = _Group(bus, 3)
    group.hand_back, group.gate = True, asyncio.Event()  # the leader will not write e1 for the others
    await _turns()
    bus.deliver([_event(1, "vip", "p1")])
    await _turns()
    bus.deliver([_event(2, "vip", "p2")])  # while the leader still holds e1 for the others
    await _turns()
    ((leader, _, _),) = group.led
    assert group.written == {name: ["e1"] if name == leader else [] for name in group.written}
    group.gate.set()
    await _turns()
    assert group.written == {name: ["e1", "e2"] for name in group.written}  # e1 first, taken in by each
    await group.stop()


async def test_a_leader_gone_before_reading_hands_the_change_back_to_its_group() -> None:
    bus = SegmentBus()
    group = _Group(bus, 3)
    await _turns()
    bus.deliver([_event(1, "vip", "p1")])
    (leader,) = [s.owner for key in bus._by_filter for s in bus._by_filter[key] if not s.held]
    assert isinstance(leader, str)
    group.tasks[leader].cancel()  # before it ran: e1 is still in its queue
    await _turns()
    assert group.written == {name: [] if name == leader else ["e1"] for name in group.written}
    await group.stop()
    assert bus.active == 0
