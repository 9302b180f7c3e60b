"""Listening at once. Importing the application (Strawberry, graphql-core, the store, the pydantic
models: 1.6-2.2 s on a 2-core machine, `python -X importtime -c "import app.main"`) came before
uvicorn bound its port, so /healthz first answered ~2.7 s after `python -m app serve`.

uvicorn serves this stand-in instead, which needs nothing uvicorn has not imported: it listens at
once and answers /healthz 200 (`"starting": true`) and /readyz 503 `starting` while the application
is imported and built on a thread. Any other request waits for the application (up to
WAIT_FOR_APPLICATION_S; then 503 with Retry-After and a GraphQL-shaped error, or a WebSocket closed
with 1013, try again later). Then the application's lifespan is started,
driven from here as a server drives it, and from then on every connection goes to the application;
its lifespan is ended when the server's is. An application that cannot be loaded or started stops
the server (`failed`), which then exits as when uvicorn itself cannot start one (status 3)."""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import time
from collections.abc import Callable, MutableMapping
from typing import Any

from app.graceful_shutdown import ASGIApp, Message, Receive, Send

TRY_AGAIN_LATER = 1013  # WebSocket close code
PROBES = ("/healthz", "/readyz")  # answered at once while starting; anything else waits for the application
WAIT_FOR_APPLICATION_S = 10.0  # then 503 with Retry-After (or 1013)
RETRY_AFTER_SECONDS = 1
NOT_YET = "The server is starting: try again in a moment."

log = logging.getLogger("cdp")

Scope = MutableMapping[str, Any]


class Starting:
    """Stands in for the application that `load` returns until that application has started."""

    def __init__(
        self,
        load: Callable[[], ASGIApp],
        *,
        loaded: Callable[[], None],
        stop: Callable[[], None],
        wait_seconds: float = WAIT_FOR_APPLICATION_S,
    ) -> None:
        self._load = load  # on a worker thread: imports and builds the application
        self._loaded = loaded  # on the event loop, once it is built, before its lifespan starts
        self._stop = stop  # asks the server to stop: the application could not start
        self._wait_seconds = wait_seconds
        self.app: ASGIApp | None = None  # the application, once started
        self.failed = False
        self._stage = "loading the application"
        self._lifespan: _Lifespan | None = None
        self._stopping = False
        self._settled = asyncio.Event()  # the application started, or could not

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if self.app is None and scope["type"] != "lifespan" and scope.get("path") not in PROBES:
            # A request waits for the application a while rather than failing: with several workers
            # a browser's next request may reach one still loading (a second or two after another).
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._settled.wait(), self._wait_seconds)
        if self.app is not None:
            await self.app(scope, receive, send)
        elif scope["type"] == "lifespan":
            await self._lifespan_of_server(scope, receive, send)
        elif scope["type"] == "websocket":
            await receive()  # websocket.connect
            offered = scope.get("subprotocols") or [None]
            await send({"type": "websocket.accept", "subprotocol": offered[0]})
            await send({"type": "websocket.close", "code": TRY_AGAIN_LATER, "reason": "starting"})
        elif scope["type"] == "http":
            await json_answer(send, *self._answer_for(scope["path"]))

    def _answer_for(self, path: str) -> tuple[int, dict[str, object]]:
        if path == "/healthz":  # the process is alive: it is only not ready yet
            return 200, {"status": "ok", "pid": os.getpid(), "starting": True}
        if path == "/readyz":  # shaped as the application's 503 while it loads the demo data
            return 503, {"status": "starting", "progress": {"stage": self._stage, "done": 0, "total": 0}}
        return 503, {"errors": [{"message": NOT_YET, "extensions": {"code": "SERVICE_UNAVAILABLE"}}]}

    async def _lifespan_of_server(self, scope: Scope, receive: Receive, send: Send) -> None:
        await receive()  # lifespan.startup
        bringing_up = asyncio.create_task(self._bring_up(scope))
        await send({"type": "lifespan.startup.complete"})  # uvicorn listens now; the application follows
        await receive()  # lifespan.shutdown
        self._stopping = True
        await bringing_up  # a start under way is finished, then undone
        if self._lifespan is None:
            await send({"type": "lifespan.shutdown.complete"})
            return
        await send(await self._lifespan.ask("shutdown"))

    async def _bring_up(self, scope: Scope) -> None:
        began = time.monotonic()
        try:
            app = await asyncio.to_thread(self._load)
            self._loaded()
        except Exception:
            log.exception("the application could not be loaded")
            self._fail()
            return
        if self._stopping:  # asked to stop while it loaded: nothing to start nor to end
            self._settled.set()
            return
        self._stage = "starting the application"
        lifespan = _Lifespan(app, scope)  # the server's lifespan scope: its state reaches every request
        reply = await lifespan.ask("startup")
        if reply["type"] != "lifespan.startup.complete":
            # Starlette sends the failure's whole traceback: after the clear line the application logged
            # (`the store cannot be used: …`), its last line says why; the rest is for debugging.
            message = str(reply.get("message") or "").strip()
            log.error("the application did not start: %s", message.splitlines()[-1] if message else "(no reason given)")
            log.debug("the application's start failed: %s", message)
            self._fail()
            return
        self._lifespan, self.app = lifespan, app
        self._settled.set()
        log.info("application loaded and started in %.1f s, answering probes meanwhile", time.monotonic() - began)

    def _fail(self) -> None:
        self.failed = True
        self._settled.set()
        self._stop()


class _Lifespan:
    """An application's lifespan protocol, driven from outside as a server drives it."""

    def __init__(self, app: ASGIApp, scope: Scope) -> None:
        self._events: asyncio.Queue[Message] = asyncio.Queue()
        self._replies: asyncio.Queue[Message] = asyncio.Queue()
        self._running: asyncio.Future[object] = asyncio.ensure_future(app(scope, self._events.get, self._replies.put))
        # Starlette answers `failed` and then raises: the error is in the reply, and logged from it.
        self._running.add_done_callback(lambda task: task.cancelled() or task.exception())

    async def ask(self, event: str) -> Message:
        """Sends `lifespan.<event>`; the application's reply, or `failed` if it ended without one."""
        await self._events.put({"type": f"lifespan.{event}"})
        reply = asyncio.ensure_future(self._replies.get())
        either: set[asyncio.Future[Any]] = {reply, self._running}
        await asyncio.wait(either, return_when=asyncio.FIRST_COMPLETED)
        if reply.done():
            return reply.result()
        reply.cancel()
        error = None if self._running.cancelled() else self._running.exception()
        return {"type": f"lifespan.{event}.failed", "message": repr(error) if error else "its lifespan ended"}


async def json_answer(send: Send, status: int, body: dict[str, object]) -> None:
    """A JSON answer sent whole; a 503 says when to try again (Retry-After)."""
    content = json.dumps(body).encode()
    headers = [(b"content-type", b"application/json"), (b"content-length", str(len(content)).encode())]
    if status == 503:
        headers.append((b"retry-after", str(RETRY_AFTER_SECONDS).encode()))
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": content})
