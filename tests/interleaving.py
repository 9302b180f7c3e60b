"""Stores that make something happen between two steps of a service, as another request or another
server process would: the races the services must survive, shown with events rather than sleeps."""

from __future__ import annotations

import asyncio
from typing import Any

from app.services.ports import ProfileStore


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
