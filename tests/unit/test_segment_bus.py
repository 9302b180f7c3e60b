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
