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

A browser on this machine is such a connection, whatever page it acts for. Its requests to another
origin are kept from the API by the browser (a cross-origin POST of JSON needs a CORS preflight this
server does not grant, a WebSocket handshake from another origin is refused by Strawberry), except
when a page points its own name at 127.0.0.1 (DNS rebinding): the browser then takes the server for
the page's own origin. Such a request names the page's host in its Host header, so a request that
arrived on a loopback address must name this machine there (`localhost`, a name under `.localhost`,
or a loopback address), or it is refused as a network one is.

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

from app.command_line import app_command
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
        if exposed is not None:
            why = (
                f"CDP_AUTH=off serves this machine only, and this connection came over the network ({exposed}): "
                f"turn authentication on (keys: `{app_command('keys create')}`) or listen on 127.0.0.1"
            )
        elif (named := foreign_host(scope)) is not None:
            why = (
                f"CDP_AUTH=off serves this machine only, and this request names another host ({named}) in its "
                "Host header, as a web page pointing its own name at 127.0.0.1 does: open the server as "
                "http://localhost:<port> or http://127.0.0.1:<port>, or turn authentication on"
            )
        else:
            await self.app(scope, receive, send)
            return
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


def foreign_host(scope: Scope) -> str | None:
    """The Host header of a request that arrived on an IP address when it names anything but this
    machine (None when it does, or when there is no such address: an in-process test transport)."""
    arrived = scope.get("server")
    if not isinstance(arrived, list | tuple) or not arrived or not _is_address(str(arrived[0])):
        return None
    for name, value in scope.get("headers") or ():
        if name == b"host":
            host = value.decode("latin-1")
            return None if _names_this_machine(host) else host[:100]
    return None  # HTTP/1.0 without a Host: no name a page could have given


@lru_cache(maxsize=1024)
def _names_this_machine(host: str) -> bool:
    if host.startswith("["):  # an IPv6 address, with or without its port: [::1]:8000
        name = host[1 : host.find("]")] if "]" in host else host
    else:  # a name or an IPv4 address, with or without its port
        name = host.rsplit(":", 1)[0] if host.count(":") == 1 else host
    name = name.rstrip(".").lower()
    if name == "localhost" or name.endswith(".localhost"):
        return True
    if not _is_address(name):
        return False
    # 0.0.0.0 and [::]: the address uvicorn prints when it listens on every interface; a page's origin
    # is one of them only if it is this server's own.
    return ipaddress.ip_address(name).is_unspecified or _network_host(name) is None


@lru_cache(maxsize=1024)
def _is_address(host: str) -> bool:
    """Remembered by host, as `_network_host`: every request asks it of the address it arrived on."""
    try:
        ipaddress.ip_address(host.split("%")[0])
    except ValueError:
        return False
    return True


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
