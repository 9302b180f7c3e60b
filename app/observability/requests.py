"""An ASGI middleware around the whole server: a request id per HTTP request (in every log line of
the request and in the `X-Request-Id` response header), an access log line, and the request counter."""

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


class RequestObservation:
    def __init__(self, app: ASGIApp, metrics: Callable[[], Metrics | None]) -> None:
        self.app = app
        self.metrics = metrics

    async def __call__(
        self, scope: Scope, receive: Callable[[], Awaitable[Message]], send: Callable[[Message], Awaitable[None]]
    ) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope.get("headers", [])}
        current = accept_or_make(headers.get("x-request-id"))
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
                metrics.http_requests.labels(scope.get("method", ""), route, str(status)).inc()
            access.info(
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
