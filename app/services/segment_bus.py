"""In-process delivery of segment membership changes to subscribers.

Each subscriber has a bounded queue: a subscriber that stops reading is cut off (its `overflowed`
flag is set and its iterator raises `SlowSubscriber`) instead of making the server hold an unbounded
backlog. Changes are published after their transaction committed, so nobody hears of a change that
was rolled back. A server delivers only what the store's feed of committed changes says, with either
backend (app/services/segment_watch.py): every process then hears every change, whichever process made
it, and the process that made it hears it once, by the same path as the others. Local delivery on
publish is for a lone process with no feed (tests, an in-memory store).
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable, Iterable
from dataclasses import dataclass, field

from app.domain.segments.segment import SegmentEvent

DEFAULT_QUEUE = 1000


class SlowSubscriber(Exception):
    def __init__(self, backlog: int) -> None:
        super().__init__(
            f"subscriber too slow: {backlog} membership changes waited unread; reconnect and read "
            "segment history to catch up"
        )


_OVERFLOW = object()  # what a cut-off subscriber finds at the end of its queue


@dataclass(eq=False)
class Subscription:
    segment_id: str | None
    profile_id: str | None
    limit: int
    # One slot more than the limit: room for the marker that tells the reader it was cut off.
    queue: asyncio.Queue[object] = field(init=False)
    overflowed: bool = False

    def __post_init__(self) -> None:
        self.queue = asyncio.Queue(self.limit + 1)

    def wants(self, event: SegmentEvent) -> bool:
        return (self.segment_id is None or self.segment_id == event.segment_id) and (
            self.profile_id is None or self.profile_id == event.profile_id
        )

    def offer(self, event: SegmentEvent) -> bool:
        """Queue the event; False (and the reader told) when the reader is `limit` changes behind."""
        if self.queue.qsize() >= self.limit:
            self.overflowed = True
            self.queue.put_nowait(_OVERFLOW)
            return False
        self.queue.put_nowait(event)
        return True


class SegmentBus:
    def __init__(self, *, max_queue: int = DEFAULT_QUEUE, local_delivery: bool = True) -> None:
        self.max_queue = max_queue
        # False in a server: the feed's watcher delivers, local publishing would deliver twice.
        self.local_delivery = local_delivery
        self._subscriptions: set[Subscription] = set()
        self.observer: Callable[[SegmentEvent], object] | None = None  # told of each change made here

    @property
    def active(self) -> int:
        return len(self._subscriptions)

    def publish_committed(self, events: Iterable[SegmentEvent]) -> None:
        """Changes this process committed."""
        events = list(events)
        if self.observer is not None:
            for event in events:
                self.observer(event)
        if self.local_delivery:
            self.deliver(events)

    def deliver(self, events: Iterable[SegmentEvent]) -> None:
        for event in events:
            for subscription in list(self._subscriptions):
                if subscription.wants(event) and not subscription.offer(event):
                    self._subscriptions.discard(subscription)

    async def listen(self, segment_id: str | None, profile_id: str | None) -> AsyncIterator[SegmentEvent]:
        subscription = Subscription(segment_id, profile_id, self.max_queue)
        self._subscriptions.add(subscription)
        try:
            while True:
                item = await subscription.queue.get()
                if item is _OVERFLOW:
                    raise SlowSubscriber(self.max_queue)
                assert isinstance(item, SegmentEvent)
                yield item
        finally:
            self._subscriptions.discard(subscription)
