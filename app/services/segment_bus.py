"""In-process delivery of segment membership changes to subscribers.

Each subscriber has a bounded queue: a subscriber that stops reading is cut off (its `overflowed`
flag is set and its iterator raises `SlowSubscriber`) instead of making the server hold an unbounded
backlog. Changes are published after their transaction committed, so nobody hears of a change that
was rolled back. A server delivers only what the store's feed of committed changes says, with either
backend (app/services/segment_watch.py): every process then hears every change, whichever process made
it, and the process that made it hears it once, by the same path as the others. Local delivery on
publish is for a lone process with no feed (tests, an in-memory store). A change made here sets
`committed`, which wakes this process's follower of the feed at once rather than at its next poll.
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

    def offer(self, event: SegmentEvent) -> bool:
        """Queue the event; False (and the reader told) when the reader is `limit` changes behind."""
        if self.queue.qsize() >= self.limit:
            self.overflowed = True
            self.queue.put_nowait(_OVERFLOW)
            return False
        self.queue.put_nowait(event)
        return True


class SegmentBus:
    """Subscriptions are kept by what they filter on (segment, profile, both or neither), so that a
    change is offered to its own subscribers only: with 10,000 subscribers each watching one profile,
    a change to one profile looks at its few, not at all 10,000."""

    def __init__(self, *, max_queue: int = DEFAULT_QUEUE, local_delivery: bool = True) -> None:
        self.max_queue = max_queue
        # False in a server: the feed's watcher delivers, local publishing would deliver twice.
        self.local_delivery = local_delivery
        self._by_filter: dict[tuple[str | None, str | None], set[Subscription]] = {}
        self.observer: Callable[[SegmentEvent], object] | None = None  # told of each change made here
        self.committed = asyncio.Event()  # set by a change made here; cleared by whoever follows the feed

    @property
    def active(self) -> int:
        return sum(len(group) for group in self._by_filter.values())

    def publish_committed(self, events: Iterable[SegmentEvent]) -> None:
        """Changes this process committed."""
        events = list(events)
        if events:
            self.committed.set()
        if self.observer is not None:
            for event in events:
                self.observer(event)
        if self.local_delivery:
            self.deliver(events)

    def deliver(self, events: Iterable[SegmentEvent]) -> None:
        for event in events:
            for key in ((None, None), (event.segment_id, None), (None, event.profile_id),
                        (event.segment_id, event.profile_id)):  # fmt: skip
                for subscription in list(self._by_filter.get(key, ())):
                    if not subscription.offer(event):
                        self._drop(subscription)

    def interested(self, event: SegmentEvent) -> int:
        """How many subscriptions a change is offered to."""
        keys = {(None, None), (event.segment_id, None), (None, event.profile_id), (event.segment_id, event.profile_id)}
        return sum(len(self._by_filter.get(key, ())) for key in keys)

    async def listen(self, segment_id: str | None, profile_id: str | None) -> AsyncIterator[SegmentEvent]:
        subscription = Subscription(segment_id, profile_id, self.max_queue)
        self._by_filter.setdefault((segment_id, profile_id), set()).add(subscription)
        try:
            while True:
                item = await subscription.queue.get()
                if item is _OVERFLOW:
                    raise SlowSubscriber(self.max_queue)
                assert isinstance(item, SegmentEvent)
                yield item
        finally:
            self._drop(subscription)

    def _drop(self, subscription: Subscription) -> None:
        key = (subscription.segment_id, subscription.profile_id)
        group = self._by_filter.get(key)
        if group is not None:
            group.discard(subscription)
            if not group:
                del self._by_filter[key]
