"""In-process delivery of segment membership changes to subscribers.

Each subscriber has a bounded queue: a subscriber that stops reading is cut off (its `overflowed`
flag is set and its iterator raises `SlowSubscriber`) instead of making the server hold an unbounded
backlog. Stopped means `limit` changes unread and none taken for STALLED_SECONDS: a burst (a segment
redefined, thousands of members moving at once) is delivered in one go, faster than any reader takes
it, and a reader still taking changes is cut off only past BURST_LIMIT times `limit`. Changes are
published after their transaction committed, so nobody hears of a change that was rolled back. A
server delivers only what the store's feed of committed changes says, with either backend
(app/services/segment_watch.py): every process then hears every change, whichever process made it,
and the process that made it hears it once, by the same path as the others. Local delivery on
publish is for a lone process with no feed (tests, an in-memory store). A change made here sets
`committed`, which wakes this process's follower of the feed at once rather than at its next poll.

Subscribers whose answers are one (a group: graphql_schema/broadcast.py) are not each woken for a
change: of those waiting, one takes it in and writes the group's answer for the others (`Heard`).
"""

from __future__ import annotations

import asyncio
import time
from collections import deque
from collections.abc import AsyncIterator, Callable, Collection, Hashable, Iterable
from dataclasses import dataclass, field

from app.domain.segments.segment import SegmentEvent
from app.services.profile_changes import Cause

DEFAULT_QUEUE = 1000
# With `limit` changes unread, a reader is judged stopped when it took none for this long (nor had
# none to take): a reader executing each change in a millisecond takes a 4,000-member burst in 4 s.
STALLED_SECONDS = 5.0
# The most a reader still taking changes may have waiting, in `limit`s (what memory is bounded by:
# the changes themselves are shared by every subscriber; each waiting one is a reference).
BURST_LIMIT = 20
ERASED = Cause.ERASURE.value


class SlowSubscriber(Exception):
    def __init__(self, backlog: int) -> None:
        super().__init__(
            f"subscriber too slow: {backlog} membership changes waited unread; reconnect and read "
            "segment history to catch up"
        )


_OVERFLOW = object()  # what a cut-off subscriber finds at the end of its queue


@dataclass(eq=False)
class Heard:
    """A change as its reader takes it in, with the other subscribers of its group who wait for this
    reader to write the group's answer for them too. The reader settles each of them: `Subscription.
    settle(None)` once written for it, or `release()` hands the change back to those it did not write
    for (each then takes it in itself, before anything that arrived since)."""

    event: SegmentEvent
    followers: list[Subscription] = field(default_factory=list)

    def take(self) -> list[Subscription]:
        followers, self.followers = self.followers, []
        return followers

    def release(self) -> None:
        for follower in self.take():
            follower.settle(self.event)


@dataclass(eq=False)
class Subscription:
    segment_id: str | None
    profile_id: str | None
    limit: int
    # Subscribers whose answers to a change are one answer (graphql_schema/broadcast.py: the same
    # document, variables and caller), or None; and what its reader attached for such an answer to be
    # written through (opaque here).
    group: Hashable | None = None
    owner: object = None
    overflowed: bool = False
    held: bool = False  # a change taken by another subscriber of its group, to be written for it
    _items: deque[object] = field(default_factory=deque)
    _wake: asyncio.Future[None] | None = None
    _progress_at: float = field(default_factory=time.monotonic)  # it last took a change, or had none left

    @property
    def idle(self) -> bool:
        """Its reader waits for a change, with nothing queued or held: a change may be written for it
        by another reader without overtaking one of its own."""
        return self._wake is not None and not self._items and not self.held

    def offer(self, item: object) -> bool:
        """Queue the change; False (and the reader told) when the reader stopped reading (`limit`
        changes behind and none taken for STALLED_SECONDS) or is BURST_LIMIT times that behind."""
        backlog = len(self._items)
        if not backlog:
            self._progress_at = time.monotonic()
        elif backlog >= self.limit and (
            backlog >= self.limit * BURST_LIMIT or time.monotonic() - self._progress_at > STALLED_SECONDS
        ):
            self.overflowed = True
            self._items.append(_OVERFLOW)
            self._wakeup()
            return False
        self._items.append(item)
        self._wakeup()
        return True

    def settle(self, event: SegmentEvent | None) -> None:
        """The held change was written for it (None), or is handed back to it to take in first."""
        self.held = False
        if event is not None:
            self._items.appendleft(event)
        if self._items:
            self._wakeup()

    async def next(self) -> object:
        while self.held or not self._items:
            self._wake = asyncio.get_running_loop().create_future()
            try:
                await self._wake
            finally:
                self._wake = None
        self._progress_at = time.monotonic()
        return self._items.popleft()

    def release(self) -> None:
        """Its reader is gone: what it was to write for others goes back to them."""
        for item in self._items:
            if isinstance(item, Heard):
                item.release()
        self._items.clear()

    def _wakeup(self) -> None:
        if self._wake is not None and not self._wake.done():
            self._wake.set_result(None)


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
        # Told of erased people's profile ids before their exits are offered: the whole family of an
        # erasure made by this process (`erased`), the id an exit names (cause ERASURE) for one made by
        # any process. What the transport keeps of their earlier changes' answers goes
        # (graphql_schema/shared_events.py).
        self.on_erased: list[Callable[[Collection[str]], object]] = []
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

    def erased(self, profile_ids: Collection[str]) -> None:
        """People erased: whoever keeps something of their earlier changes forgets it."""
        for forget in self.on_erased:
            forget(profile_ids)

    def deliver(self, events: Iterable[SegmentEvent]) -> None:
        """Offer each change to its subscribers. Of a group's subscribers waiting for a change, one (its
        leader) takes it in and the others wait for the leader to write the group's one answer for them:
        a thousand subscribers of one segment wake one task per change, not a thousand."""
        for event in events:
            if event.cause == ERASED:
                self.erased((event.profile_id,))
            leaders: dict[Hashable, Heard] = {}
            for key in ((None, None), (event.segment_id, None), (None, event.profile_id),
                        (event.segment_id, event.profile_id)):  # fmt: skip
                for subscription in list(self._by_filter.get(key, ())):
                    item: object = event
                    group = subscription.group
                    if group is not None and subscription.idle:
                        heard = leaders.get(group)
                        if heard is not None:
                            subscription.held = True
                            heard.followers.append(subscription)
                            continue
                        item = leaders[group] = Heard(event)
                    if not subscription.offer(item):
                        self._drop(subscription)

    def interested(self, event: SegmentEvent) -> int:
        """How many subscriptions a change is offered to."""
        keys = {(None, None), (event.segment_id, None), (None, event.profile_id), (event.segment_id, event.profile_id)}
        return sum(len(self._by_filter.get(key, ())) for key in keys)

    async def listen(self, segment_id: str | None, profile_id: str | None) -> AsyncIterator[SegmentEvent]:
        async for heard in self.listen_shared(segment_id, profile_id, group=None, owner=None):
            yield heard.event

    async def listen_shared(
        self, segment_id: str | None, profile_id: str | None, *, group: Hashable | None, owner: object
    ) -> AsyncIterator[Heard]:
        """As `listen`, for a reader whose answers are shared with its `group`: each change comes with
        the subscribers it must write its answer for (`Heard.followers`), reached through their `owner`."""
        subscription = Subscription(segment_id, profile_id, self.max_queue, group=group, owner=owner)
        self._by_filter.setdefault((segment_id, profile_id), set()).add(subscription)
        try:
            while True:
                item = await subscription.next()
                if item is _OVERFLOW:
                    raise SlowSubscriber(self.max_queue)
                if isinstance(item, Heard):
                    yield item
                else:
                    assert isinstance(item, SegmentEvent)
                    yield Heard(item)
        finally:
            self._drop(subscription)
            subscription.release()

    def _drop(self, subscription: Subscription) -> None:
        key = (subscription.segment_id, subscription.profile_id)
        group = self._by_filter.get(key)
        if group is not None:
            group.discard(subscription)
            if not group:
                del self._by_filter[key]
