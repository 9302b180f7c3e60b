"""An ASGI middleware around the whole server: a request id per HTTP request or WebSocket connection
(in every log line written meanwhile and in the `X-Request-Id` response header), an access log line
and the request counter for HTTP."""

from __future__ import annotations

import logging
import time
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

from app.observability.logs import accept_or_make, request_id
from app.observability.metrics import Metrics

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
ASGIApp = Callable[[Scope, Callable[[], Awaitable[Message]], Callable[[Message], Awaitable[None]]], Awaitable[None]]

access = logging.getLogger("cdp.access")
ROUTES = ("/graphql", "/healthz", "/readyz", "/metrics", "/playground-assets")
# Asked every few seconds by orchestrators, health checks and scrapers: answered well, their lines go at
# DEBUG (the request counter still counts them); a probe that fails is logged as any request is.
PROBES = frozenset({"/healthz", "/readyz", "/metrics"})


class RequestObservation:
    def __init__(self, app: ASGIApp, metrics: Callable[[], Metrics | None]) -> None:
        self.app = app
        self.metrics = metrics

    async def __call__(
        self, scope: Scope, receive: Callable[[], Awaitable[Message]], send: Callable[[Message], Awaitable[None]]
    ) -> None:
        if scope["type"] == "websocket":
            await self._websocket(scope, receive, send)
            return
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        current = accept_or_make(_offered_id(scope))
        token = request_id.set(current)
        started = time.perf_counter()
        status = 500

        async def send_with_id(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = int(message["status"])
                message["headers"] = [*message.get("headers", []), (b"x-request-id", current.encode())]
            await send(message)

        try:
            await self.app(scope, receive, send_with_id)
        finally:
            path = str(scope.get("path", ""))
            route = next((r for r in ROUTES if path.startswith(r)), "other")
            metrics = self.metrics()
            if metrics is not None:
                metrics.child(metrics.http_requests, scope.get("method", ""), route, str(status)).inc()
            level = logging.DEBUG if path in PROBES and status < 400 else logging.INFO
            if access.isEnabledFor(level):  # CDP_LOG_LEVEL=warning: no line, nothing made for one
                access.log(
                    level,
                    "%s %s %d",
                    scope.get("method"),
                    path,
                    status,
                    extra={
                        "method": scope.get("method"),
                        "path": path,
                        "status": status,
                        "durationMs": round((time.perf_counter() - started) * 1000, 2),
                    },
                )
            request_id.reset(token)

    async def _websocket(
        self, scope: Scope, receive: Callable[[], Awaitable[Message]], send: Callable[[Message], Awaitable[None]]
    ) -> None:
        """One id for the whole connection: every line logged while it is open (its subscriptions'
        masked errors included) carries it, and the handshake's response header says it."""
        current = accept_or_make(_offered_id(scope))
        token = request_id.set(current)

        async def send_with_id(message: Message) -> None:
            if message["type"] == "websocket.accept":
                message["headers"] = [*message.get("headers", []), (b"x-request-id", current.encode())]
            await send(message)

        try:
            await self.app(scope, receive, send_with_id)
        finally:
            request_id.reset(token)


def _offered_id(scope: Scope) -> str | None:
    for name, value in scope.get("headers", []):
        if name.lower() == b"x-request-id":
            return str(value.decode("latin-1"))
    return None
