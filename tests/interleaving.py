"""Stores that make something happen between two steps of a service, as another request or another
server process would: the races the services must survive, shown with events rather than sleeps."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

from app.services.ports import ProfileStore

T = TypeVar("T")


class StandIn:
    """The store `inner`: every attribute is its own, but for the steps a subclass overrides."""

    def __init__(self, inner: ProfileStore) -> None:
        self._inner = inner

    def __getattr__(self, name: str) -> Any:
        return getattr(self._inner, name)


class Held(StandIn):
    """A stand-in whose overriding step calls `hold`: it sets `waiting`, then waits for the test's `go`."""

    def __init__(self, inner: ProfileStore) -> None:
        super().__init__(inner)
        self.waiting, self.go = asyncio.Event(), asyncio.Event()

    async def hold(self) -> None:
        self.waiting.set()
        await self.go.wait()


class HeldBatches(Held):
    """The store, with its next batch held before it takes the writer, until `go` is set: its events
    are judged (and a large batch's first run computed on a snapshot) and it waits for the writer."""

    async def run_batch(self, work: Callable[[], Awaitable[T]]) -> T:
        await self.hold()
        return await self._inner.run_batch(work)


def until(condition: Callable[[], bool], what: str, *, seconds: float = 10, every: float = 0.001) -> None:
    """Wait on this thread (up to `seconds`) for `condition`, which another thread or process makes
    true, asking every `every` seconds; `what` says what never happened if it does not."""
    deadline = time.monotonic() + seconds
    while not condition():
        assert time.monotonic() < deadline, what
        time.sleep(every)
