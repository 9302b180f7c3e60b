"""Stopping without dropping anyone. On SIGTERM the server stops listening, tells every open WebSocket
that it is going away (close code 1001, so subscription clients reconnect to another replica), lets
in-flight HTTP requests finish (CDP_SHUTDOWN_GRACE_SECONDS), and only then runs the lifespan's end,
which closes the store. Left to itself uvicorn would close WebSockets with 1012 ("service restart")."""

from __future__ import annotations

import asyncio
import socket
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

import uvicorn

GOING_AWAY = 1001

Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[MutableMapping[str, Any], Receive, Send], Awaitable[None]]


class OpenWebSockets:
    """The WebSocket connections open in this process, each with a way to close it from outside."""

    def __init__(self) -> None:
        self._farewells: set[Callable[[], Awaitable[None]]] = set()

    def __len__(self) -> int:
        return len(self._farewells)

    def track(self, app: ASGIApp) -> ASGIApp:
        """`app`, with each of its WebSocket connections known here while it is open."""
        return _Tracked(app, self._farewells)

    async def close_all(self) -> None:
        # A client that vanished meanwhile makes its close fail; the others are closed all the same.
        await asyncio.gather(*(farewell() for farewell in list(self._farewells)), return_exceptions=True)


class _Tracked:
    # A class, not a closure: Starlette's routes call a plain function with a WebSocket, not as ASGI.
    def __init__(self, app: ASGIApp, farewells: set[Callable[[], Awaitable[None]]]) -> None:
        self.app = app
        self.farewells = farewells

    async def __call__(self, scope: MutableMapping[str, Any], receive: Receive, send: Send) -> None:
        accepted = closed = False

        async def send_until_closed(message: Message) -> None:
            nonlocal accepted, closed
            if closed:  # we said goodbye already: what the application still sends goes nowhere
                return
            accepted = accepted or message["type"] == "websocket.accept"
            closed = message["type"] == "websocket.close"
            await send(message)

        async def farewell() -> None:
            nonlocal closed
            if closed or not accepted:
                return
            closed = True
            # The server then hands the application a disconnect, which ends its subscriptions.
            await send({"type": "websocket.close", "code": GOING_AWAY, "reason": "server shutting down"})

        self.farewells.add(farewell)
        try:
            await self.app(scope, receive, send_until_closed)
        finally:
            self.farewells.discard(farewell)


class GracefulServer(uvicorn.Server):
    """uvicorn's server, saying goodbye to WebSocket clients before its own shutdown sequence."""

    def __init__(self, config: uvicorn.Config, *, websockets: OpenWebSockets) -> None:
        super().__init__(config)
        self.websockets = websockets

    async def shutdown(self, sockets: list[socket.socket] | None = None) -> None:
        for server in self.servers:  # first stop listening, so a closed client cannot come straight back
            server.close()
        await self.websockets.close_all()
        await super().shutdown(sockets)
