"""In-process delivery of segment membership changes to subscribers.

Each subscriber has a bounded queue: a subscriber that stops reading is cut off (its `overflowed`
flag is set and its iterator raises `SlowSubscriber`) instead of making the server hold an unbounded
backlog. Changes are published after their transaction committed, so nobody hears of a change that
was rolled back. With MongoDB, a change-stream watcher publishes instead (every process then hears
every change, whichever process made it); see app/services/segment_watch.py.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Iterable
from dataclasses import dataclass, field

from app.domain.segments.segment import SegmentEvent

DEFAULT_QUEUE = 1000


class SlowSubscriber(Exception):
    def __init__(self, backlog: int) -> None:
        super().__init__(
            f"subscriber too slow: {backlog} membership changes waited unread; reconnect and read "
            "segment history to catch up"
        )


@dataclass(eq=False)
class Subscription:
    segment_id: str | None
    profile_id: str | None
    queue: asyncio.Queue[SegmentEvent]
    overflowed: asyncio.Event = field(default_factory=asyncio.Event)

    def wants(self, event: SegmentEvent) -> bool:
        return (self.segment_id is None or self.segment_id == event.segment_id) and (
            self.profile_id is None or self.profile_id == event.profile_id
        )


class SegmentBus:
    def __init__(self, *, max_queue: int = DEFAULT_QUEUE, local_delivery: bool = True) -> None:
        self.max_queue = max_queue
        # False with MongoDB: the change-stream watcher delivers, local publishing would deliver twice.
        self.local_delivery = local_delivery
        self._subscriptions: set[Subscription] = set()

    @property
    def active(self) -> int:
        return len(self._subscriptions)

    def publish_committed(self, events: Iterable[SegmentEvent]) -> None:
        """Changes this process committed."""
        if self.local_delivery:
            self.deliver(events)

    def deliver(self, events: Iterable[SegmentEvent]) -> None:
        for event in events:
            for subscription in list(self._subscriptions):
                if not subscription.wants(event):
                    continue
                try:
                    subscription.queue.put_nowait(event)
                except asyncio.QueueFull:
                    subscription.overflowed.set()
                    self._subscriptions.discard(subscription)

    async def listen(self, segment_id: str | None, profile_id: str | None) -> AsyncIterator[SegmentEvent]:
        subscription = Subscription(segment_id, profile_id, asyncio.Queue(self.max_queue))
        self._subscriptions.add(subscription)
        try:
            while True:
                if subscription.overflowed.is_set():
                    raise SlowSubscriber(subscription.queue.qsize())
                getter = asyncio.ensure_future(subscription.queue.get())
                cut = asyncio.ensure_future(subscription.overflowed.wait())
                done, _ = await asyncio.wait({getter, cut}, return_when=asyncio.FIRST_COMPLETED)
                if getter in done:
                    cut.cancel()
                    yield getter.result()
                else:
                    getter.cancel()
        finally:
            self._subscriptions.discard(subscription)
