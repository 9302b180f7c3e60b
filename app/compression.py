"""Response compression: brotli or gzip, whichever the client's Accept-Encoding prefers, for HTTP
responses of COMPRESS_MINIMUM_BYTES or more (GraphQL answers, /metrics, the playground's assets).

Starlette's responders do the work (small bodies, responses already encoded, 206 partials, event
streams and images left alone; each streamed chunk flushed so a stream is not held back; large
chunks compressed on a worker thread); brotli is one more of them. What is ours is the choice, made
once per request from the raw headers: a request without Accept-Encoding (or accepting neither) goes
straight to the application, with no wrapper around its `send` and nothing copied, where Starlette's
own GZipMiddleware would watch every response of it. Such a response carries no `Vary:
Accept-Encoding`; a cache may then hand that identity body to a client that could have taken gzip,
which is correct, only larger. WebSockets pass untouched."""

from __future__ import annotations

from functools import lru_cache

import anyio.to_thread
import brotli
from starlette.middleware.gzip import GZipResponder, IdentityResponder
from starlette.types import ASGIApp, Receive, Scope, Send

COMPRESS_MINIMUM_BYTES = 1024  # below this the headers and the codec's framing eat most of the gain
GZIP_LEVEL = 6  # level 9 costs more CPU for ~0.2 % smaller bodies
BROTLI_QUALITY = 4  # dynamic-content quality: gzip 6's speed, ~5 % smaller; 11 takes seconds on the playground's JS
# Larger chunks are compressed on a worker thread, not the event loop (zlib and brotli let go of the
# GIL while they work). Starlette's gzip uses 128 KiB: gzip at level 6 takes ~22 us a KiB here, so a
# 1,000-event batch's answer (~122 KiB) held the loop ~2.6 ms; from 32 KiB, at most ~0.7 ms.
THREAD_MINIMUM_BYTES = 32 * 1024


class Compression:
    """ASGI middleware; mounted inside the request observation and CORS, outside the routes."""

    def __init__(self, app: ASGIApp, minimum_size: int = COMPRESS_MINIMUM_BYTES) -> None:
        self.app = app
        self.minimum_size = minimum_size

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            for name, value in scope["headers"]:
                if name == b"accept-encoding":
                    coding = preferred_coding(value)
                    if coding == "br":
                        await BrotliResponder(self.app, self.minimum_size)(scope, receive, send)
                        return
                    if coding == "gzip":
                        responder = GZipResponder(
                            self.app,
                            self.minimum_size,
                            compresslevel=GZIP_LEVEL,
                            thread_minimum_size=THREAD_MINIMUM_BYTES,
                        )
                        await responder(scope, receive, send)
                        return
                    break
        await self.app(scope, receive, send)


class BrotliResponder(IdentityResponder):
    content_encoding = "br"

    def __init__(self, app: ASGIApp, minimum_size: int) -> None:
        super().__init__(app, minimum_size)
        self._compressor: brotli.Compressor | None = None

    async def apply_compression(self, body: bytes, *, more_body: bool) -> bytes:
        if len(body) >= THREAD_MINIMUM_BYTES:
            return await anyio.to_thread.run_sync(self._compress, body, more_body)
        return self._compress(body, more_body)

    def _compress(self, body: bytes, more_body: bool) -> bytes:
        if self._compressor is None:
            self._compressor = brotli.Compressor(quality=BROTLI_QUALITY)
        compressed = self._compressor.process(body)
        # A streamed chunk is flushed so the client gets it now; the last one ends the stream.
        ending = self._compressor.flush() if more_body else self._compressor.finish()
        return bytes(compressed + ending)


@lru_cache(maxsize=256)
def preferred_coding(accept_encoding: bytes) -> str | None:
    """ "br", "gzip" or None from an Accept-Encoding value, by the client's q-values (RFC 9110 12.5.3):
    a coding with q=0, or left out when there is no `*`, is not acceptable; brotli wins a tie.
    Remembered: clients send a handful of distinct values."""
    weights: dict[str, float] = {}
    for part in accept_encoding.decode("latin-1").lower().split(","):
        coding, _, parameters = part.partition(";")
        weight = 1.0
        name, _, value = parameters.partition("=")
        if name.strip() == "q":
            try:
                weight = float(value)
            except ValueError:
                weight = 0.0
        weights[coding.strip()] = weight
    anything = weights.get("*", 0.0)
    br, gzip = weights.get("br", anything), weights.get("gzip", weights.get("x-gzip", anything))
    if br > 0 and br >= gzip:
        return "br"
    return "gzip" if gzip > 0 else None
