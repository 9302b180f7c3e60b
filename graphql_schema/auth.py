"""Who is calling: the API key of a request (`Authorization: Bearer <key>`) or of a WebSocket
connection (`connection_init` payload), checked once per request or connection."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from app.bootstrap import Services
from app.command_line import app_command
from app.domain.access import LOCAL_DEVELOPER, Principal
from app.domain.errors import Unauthenticated
from app.services.api_keys import authenticate
from graphql_schema.loopback_only import network_address

MISSING = f"send an API key: the header Authorization: Bearer <key> (keys: `{app_command('keys create')}`)"


async def principal_for(
    services: Services, credentials: str | None, connection: Mapping[str, Any]
) -> tuple[Principal | None, str | None]:
    """(principal, None) for valid credentials (anything when authentication is off), else (None, why).
    `connection`: the request's ASGI scope, where it arrived and from where (a key of this machine only,
    the development key, is refused on one that came over the network, as CDP_AUTH=off is)."""
    if not services.settings.auth:
        return LOCAL_DEVELOPER, None
    if not credentials:
        return None, MISSING
    scheme, _, token = credentials.strip().partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        return None, "the Authorization header must be: Bearer <key>"
    try:
        principal = await authenticate(services.store, token, services.key_cache)
    except Unauthenticated as exc:
        return None, exc.message
    if principal.this_machine_only and (
        exposed := network_address(connection.get("server")) or network_address(connection.get("client"))
    ):
        return None, (
            f"this key (the development key) answers connections made on this machine only, and this one came "
            f"over the network ({exposed}): create a key for other machines with `{app_command('keys create')}`"
        )
    return principal, None


def connection_credentials(params: Any) -> str | None:
    """The key a WebSocket client sent in `connection_init`: {"Authorization": "Bearer <key>"}
    (as the playground's Headers tab sends it) or {"apiKey": "<key>"}."""
    if not isinstance(params, dict):
        return None
    for name in ("Authorization", "authorization"):
        if isinstance(params.get(name), str):
            return str(params[name])
    key = params.get("apiKey")
    return f"Bearer {key}" if isinstance(key, str) else None
