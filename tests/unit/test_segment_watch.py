"""The MongoDB change-stream watcher's own logic (the fake MongoDB has no change streams, so a
stand-in stream feeds it): changes reach the bus, the resume token is saved, a restart resumes."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

from app.domain.segments.segment import SegmentEvent
from app.services import segment_watch
from app.services.segment_bus import SegmentBus
from tests.builders import segment_event


class StreamStandIn:
    """A change stream over a fixed list of changes, resumable after any token it handed out."""

    def __init__(self, changes: int) -> None:
        self.changes = [(f"token-{n}", segment_event(n)) for n in range(changes)]
        self.meta: dict[str, str] = {}
        self.resumed_after: list[str | None] = []
        self.woken_by: asyncio.Event | None = None

    async def read_meta(self, key: str) -> str | None:
        return self.meta.get(key)

    async def feed_position(self) -> str | None:
        return None  # as MongoDB

    async def write_meta(self, key: str, value: str) -> None:
        self.meta[key] = value

    async def watch_segment_events(
        self, resume_token: str | None, *, committed_here: asyncio.Event | None = None
    ) -> AsyncIterator[tuple[str, SegmentEvent]]:
        self.resumed_after.append(resume_token)
        self.woken_by = committed_here
        start = 0 if resume_token is None else int(resume_token.removeprefix("token-")) + 1
        for token, event in self.changes[start:]:
            yield token, event
        await asyncio.Event().wait()  # a live stream waits for the next change


async def _heard(bus: SegmentBus, count: int) -> list[str]:
    heard: list[str] = []
    async for event in bus.listen("seg", None):
        heard.append(event.profile_id)
        if len(heard) == count:
            return heard
    return heard


async def test_changes_reach_the_bus_and_a_restart_resumes_after_the_last_one() -> None:
    stream = StreamStandIn(3)
    bus = SegmentBus(local_delivery=False)
    listener = asyncio.create_task(_heard(bus, 3))
    await asyncio.sleep(0)
    watcher = asyncio.create_task(segment_watch.watch(stream, bus, instance="a"))  # type: ignore[arg-type]
    assert await asyncio.wait_for(listener, 2) == ["p0", "p1", "p2"]
    watcher.cancel()
    await asyncio.gather(watcher, return_exceptions=True)
    assert stream.meta[segment_watch.token_key("a")] == "token-2"  # saved on the way out
    assert stream.woken_by is bus.committed  # what the bus sets when this process commits a change

    stream.changes.append(("token-3", segment_event(3)))
    listener = asyncio.create_task(_heard(bus, 1))
    await asyncio.sleep(0)
    watcher = asyncio.create_task(segment_watch.watch(stream, bus, instance="a"))  # type: ignore[arg-type]
    assert await asyncio.wait_for(listener, 2) == ["p3"]  # nothing missed, nothing heard twice
    watcher.cancel()
    await asyncio.gather(watcher, return_exceptions=True)
    assert stream.resumed_after == [None, "token-2"]
