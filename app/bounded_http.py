"""uvicorn's httptools protocol with a bound on a request's head: its size and the time it takes.

uvicorn bounds neither with httptools (h11's `h11_max_incomplete_event_size` applies to h11 only):
the URL grew by copying itself on the event loop for every chunk, so one client sending a 100 MiB
URL held every other request for seconds (a concurrent /healthz took 5.8 s) and 200 MB per
connection, and a client that sent half a request line and stopped held its connection, and a file
descriptor, for ever: 20,000 of them and the server accepted no one. Here a head (request line and
headers) larger than `h11_max_incomplete_event_size` is answered 431 and the connection closed, and
one not complete within HEAD_TIMEOUT_SECONDS of the connection or of its first byte is answered 408
and closed. Idle keep-alive connections are uvicorn's own `timeout_keep_alive`.

A head of many tiny headers (`a:` 200,000 times, 800 KB) cost a call into Python for each, and every
header look-up of the request (a dozen, from the middleware to the key check) walked them all: 250 ms
of the event loop for each such request, sent without a key. A head holds at most MAX_HEADERS headers
(431 past them), and each counts its framing (`: ` and the line's end) towards the size bound.
"""

from __future__ import annotations

import asyncio

from uvicorn.protocols.http.httptools_impl import STATUS_LINE, HttpToolsProtocol

HEAD_TIMEOUT_SECONDS = 15.0  # a client on a slow link sends a head in well under a second
MAX_HEADERS = 100  # browsers send 10-20; nginx's default buffers hold about as many as this
_HEADER_FRAMING = 4  # ": " and CRLF around each header's name and value


def head_bytes(max_query_length: int) -> int:
    """The largest head taken: room for a GET carrying a whole document in its URL (percent-encoded,
    up to 3 bytes a character) besides the headers."""
    return 3 * max_query_length + 16_384


class BoundedHttpToolsProtocol(HttpToolsProtocol):
    """Set as uvicorn's `http`; the head's size bound is the config's h11_max_incomplete_event_size."""

    _head_bytes = 0
    _headers = 0
    _head_timer: asyncio.TimerHandle | None = None
    _refused = False

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._arm()  # a connection that never sends a byte is a slow head too

    def connection_lost(self, exc: Exception | None) -> None:
        self._disarm()
        super().connection_lost(exc)

    def data_received(self, data: bytes) -> None:
        if not self._refused:  # what follows a refused head is not read
            super().data_received(data)

    def on_message_begin(self) -> None:
        super().on_message_begin()
        self._head_bytes = self._headers = 0
        self._url_parts: list[bytes] = []
        self._arm()

    def on_url(self, url: bytes) -> None:
        # Kept in parts and joined once: `url += part` copied the whole URL for every chunk.
        if self._counted(len(url)):
            self._url_parts.append(url)

    def on_header(self, name: bytes, value: bytes) -> None:
        self._headers += 1
        if self._headers > MAX_HEADERS and not self._refused:
            self._refuse(431, f"more than {MAX_HEADERS} headers")
        if self._counted(len(name) + len(value) + _HEADER_FRAMING):
            super().on_header(name, value)

    def on_body(self, body: bytes) -> None:
        if not self._refused:
            super().on_body(body)

    def on_message_complete(self) -> None:
        if not self._refused:
            super().on_message_complete()

    def on_headers_complete(self) -> None:
        self._disarm()
        if self._refused:
            return
        self.url = b"".join(self._url_parts)
        super().on_headers_complete()

    def _counted(self, size: int) -> bool:
        """Whether the head is still within its bound once `size` more bytes of it are counted."""
        if self._refused:
            return False
        self._head_bytes += size
        bound = self.config.h11_max_incomplete_event_size
        if bound is not None and self._head_bytes > bound:
            self._refuse(431, "request line and headers too large")
            return False
        return True

    def _arm(self) -> None:
        self._disarm()
        self._head_timer = self.loop.call_later(HEAD_TIMEOUT_SECONDS, self._head_too_slow)

    def _disarm(self) -> None:
        if self._head_timer is not None:
            self._head_timer.cancel()
            self._head_timer = None

    def _head_too_slow(self) -> None:
        self._head_timer = None
        self._refuse(408, "request line and headers not received in time")

    def _refuse(self, status: int, message: str) -> None:
        self._refused = True
        self._disarm()
        if self.transport.is_closing():
            return
        body = message.encode("ascii")
        self.transport.write(
            STATUS_LINE[status]
            + b"content-type: text/plain; charset=utf-8\r\ncontent-length: "
            + str(len(body)).encode("ascii")
            + b"\r\nconnection: close\r\n\r\n"
            + body
        )
        self.transport.close()
