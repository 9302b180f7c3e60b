"""A group's answer written for the subscribers who waited on one of them: each once, with its own
operation id; one that stops reading is left to take the change in itself, without holding the rest."""

from __future__ import annotations

import asyncio
import time
from datetime import UTC, datetime

import pytest

from app.domain.segments.segment import MembershipChange, SegmentEvent
from app.services.segment_bus import Heard, Subscription
from graphql_schema import broadcast

EVENT = SegmentEvent(
    _id="e1", segment_id="vip", profile_id="p1", change=MembershipChange.ENTERED,
    at=datetime(2026, 1, 1, tzinfo=UTC), cause="test",
)  # fmt: skip
BODY = '"payload":{"data":{}}}'


class _Count:
    def __init__(self) -> None:
        self.value = 0

    def inc(self, amount: int = 1) -> None:
        self.value += amount


def _followers(count: int, stuck: set[int]) -> tuple[list[Subscription], dict[str, list[str]]]:
    frames: dict[str, list[str]] = {}
    followers = []
    for n in range(count):
        operation = f"op-{n}"
        frames[operation] = []

        async def write(frame: str, into: list[str] = frames[operation], blocks: bool = n in stuck) -> None:
            if blocks:  # a client that stopped reading: the send waits for it forever
                await asyncio.Event().wait()
            into.append(frame)

        subscription = Subscription("vip", None, 10, group="g", owner=broadcast.Outlet(operation, write))
        subscription.held = True
        followers.append(subscription)
    return followers, frames


async def _left_to_itself(subscription: Subscription) -> list[object]:
    items = []
    while not subscription.held and subscription._items:
        items.append(await subscription.next())
    return items


async def test_each_follower_gets_the_text_with_its_own_id() -> None:
    followers, frames = _followers(200, stuck=set())
    counter = _Count()
    await broadcast.fan_out(BODY, Heard(EVENT, list(followers)), counter)
    assert frames == {f"op-{n}": [f'{{"id":"op-{n}","type":"next",{BODY}'] for n in range(200)}
    assert counter.value == 200 and not any(f.held for f in followers)
    assert [await _left_to_itself(f) for f in followers] == [[]] * 200


async def test_a_follower_that_stops_reading_does_not_hold_the_others(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(broadcast, "STEP_SECONDS", 0.05)
    followers, frames = _followers(10, stuck={4})
    counter = _Count()
    started = time.monotonic()
    await asyncio.wait_for(broadcast.fan_out(BODY, Heard(EVENT, list(followers)), counter), 5)
    assert time.monotonic() - started < 1
    # Written from the end of the list: 9 down to 5; 4 stopped reading; 3 to 0 were not reached.
    assert [n for n in range(10) if frames[f"op-{n}"]] == [5, 6, 7, 8, 9]
    assert counter.value == 5 and not any(f.held for f in followers)
    # The rest take the change in themselves, each on its own connection.
    assert [await _left_to_itself(f) for f in followers] == [[EVENT]] * 5 + [[]] * 5
