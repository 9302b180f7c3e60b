"""The stand-in that answers while the application loads (app/starting.py): probes at once; any
other request waits for the application, and is refused (503 Retry-After, or 1013) only when it
does not come within the wait."""

from __future__ import annotations

import asyncio
import threading
from typing import Any

from app.starting import Starting


async def _call(starting: Starting, scope: dict[str, Any], incoming: dict[str, Any]) -> list[Any]:
    sent: list[Any] = []

    async def receive() -> Any:
        return incoming

    async def send(message: Any) -> None:
        sent.append(message)

    await starting(scope, receive, send)
    return sent


async def test_requests_wait_for_the_application_then_are_refused_when_it_does_not_come() -> None:
    release, stopped = threading.Event(), []

    def load() -> Any:  # an import that does not finish while the requests below are made
        release.wait(30)
        raise ImportError("never loaded")

    starting = Starting(load, loaded=lambda: None, stop=lambda: stopped.append(True), wait_seconds=0.2)
    lifespan_sent: list[Any] = []
    startup = asyncio.Queue[dict[str, Any]]()
    startup.put_nowait({"type": "lifespan.startup"})

    async def send(message: Any) -> None:
        lifespan_sent.append(message)

    lifespan = asyncio.create_task(starting({"type": "lifespan"}, startup.get, send))
    while not lifespan_sent:
        await asyncio.sleep(0)
    assert lifespan_sent == [{"type": "lifespan.startup.complete"}]  # uvicorn listens from here

    health = await _call(starting, {"type": "http", "path": "/healthz"}, {"type": "http.request", "body": b""})
    assert health[0]["status"] == 200
    query = await _call(starting, {"type": "http", "path": "/graphql"}, {"type": "http.request", "body": b""})
    assert query[0]["status"] == 503 and (b"retry-after", b"1") in query[0]["headers"]  # after the wait
    socket = {"type": "websocket", "path": "/graphql", "subprotocols": []}
    closed = await _call(starting, socket, {"type": "websocket.connect"})
    assert closed[-1] == {"type": "websocket.close", "code": 1013, "reason": "starting"}

    release.set()  # the load fails: the server is asked to stop
    while not stopped:
        await asyncio.sleep(0.01)
    startup.put_nowait({"type": "lifespan.shutdown"})
    await lifespan
    assert lifespan_sent[-1] == {"type": "lifespan.shutdown.complete"} and starting.failed
