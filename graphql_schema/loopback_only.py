"""With authentication off (CDP_AUTH=off) the server answers only connections made on this machine.

Why each connection is checked, not the configuration: CDP_HOST names the address the server was told
to bind, but `uvicorn app.main:create_app --factory --host 0.0.0.0`, a gunicorn bind, a socket handed
over by systemd or a container's port mapping decide where it really listens, out of the
application's sight. What every ASGI server does report is where each connection arrived:
`scope["server"]` is the local address of the accepted socket (its getsockname) and `scope["client"]`
the peer's. A connection that arrived on, or came from, a network address is refused (HTTP 403 with a
GraphQL error saying why; a WebSocket handshake refused, which servers answer with 403), and the
first refusal is logged as an error. The same server still answers 127.0.0.1, so a developer's
`--host 0.0.0.0` keeps working locally while the network gets nothing.

Addresses that are not IP addresses (a Unix socket's path or none, the made-up host of an in-process
test transport) involve no network interface and pass. A reverse proxy on this machine that forwards
network traffic to loopback is the operator's choice and beyond what the process can see; when it
sends X-Forwarded-For, uvicorn reports the real client, which is then refused too.
"""

from __future__ import annotations

import ipaddress
import logging
from functools import lru_cache
from typing import Any

from starlette.types import ASGIApp, Receive, Scope, Send

from graphql_schema.refusals import FORBIDDEN, refusal

log = logging.getLogger("cdp.security")


class LoopbackOnly:
    """ASGI middleware: mount it when authentication is off."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app
        self._said = False

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] not in ("http", "websocket"):
            await self.app(scope, receive, send)
            return
        exposed = network_address(scope.get("server")) or network_address(scope.get("client"))
        if exposed is None:
            await self.app(scope, receive, send)
            return
        why = (
            f"CDP_AUTH=off serves this machine only, and this connection came over the network ({exposed}): "
            "turn authentication on (keys: `python -m app keys create`) or listen on 127.0.0.1"
        )
        if not self._said:
            self._said = True
            log.error("refusing network connections: %s", why)
        if scope["type"] == "websocket":
            # Closing before accepting refuses the handshake (the server answers 403).
            await send({"type": "websocket.close", "code": 1008, "reason": "CDP_AUTH=off: this machine only"})
            return
        await refusal(403, why, code=FORBIDDEN)(scope, receive, send)


def network_address(endpoint: Any) -> str | None:
    """The host of an ASGI (host, port) pair when it is an IP address other than loopback."""
    if not isinstance(endpoint, list | tuple) or not endpoint or not isinstance(endpoint[0], str):
        return None
    return _network_host(endpoint[0])


@lru_cache(maxsize=1024)
def _network_host(host: str) -> str | None:
    """Remembered by host: parsing an address was a few percent of a profile read's CPU."""
    try:
        address = ipaddress.ip_address(host.split("%")[0])  # an IPv6 zone (fe80::1%eth0) is no part of it
    except ValueError:
        return None
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        address = address.ipv4_mapped
    return None if address.is_loopback else host
