"""Open WebSockets by the API key that opened them, so that revoking the key closes them (4403, the
protocol's Forbidden) instead of letting its subscriptions run on."""

from __future__ import annotations

import logging
import weakref
from collections.abc import Iterable

from starlette.websockets import WebSocket, WebSocketState

log = logging.getLogger("cdp.keys")

REVOKED_CLOSE = 4403


class SocketsByKey:
    def __init__(self) -> None:
        # Weak: a socket that closed on its own leaves without being told to.
        self._open: dict[str, weakref.WeakSet[WebSocket]] = {}

    def add(self, key_id: str, socket: WebSocket) -> None:
        self._open.setdefault(key_id, weakref.WeakSet()).add(socket)

    async def close_revoked(self, key_ids: Iterable[str]) -> int:
        """Close every open socket of these keys; returns how many were closed."""
        closed = 0
        for key_id in set(key_ids) & self._open.keys():
            for socket in list(self._open.pop(key_id)):
                if socket.application_state is WebSocketState.CONNECTED:
                    try:
                        await socket.close(code=REVOKED_CLOSE, reason=f"API key {key_id} was revoked")
                    except RuntimeError:  # it closed meanwhile
                        continue
                    closed += 1
        if closed:
            log.info("closed %d WebSocket connection(s) of revoked key(s)", closed)
        return closed
