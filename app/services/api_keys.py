"""API keys: created (the token is shown once), listed, revoked, and checked on every request."""

from __future__ import annotations

import re
from collections.abc import Iterable

from app.domain import clock
from app.domain.access import ApiKey, Principal, Scope, new_secret, secret_matches, split_token
from app.domain.errors import InvalidInput, NotFound, Unauthenticated
from app.services.key_cache import KeyCache, token_digest
from app.services.ports import ProfileStore

NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9 ._-]{0,63}\Z")


def parse_scopes(values: Iterable[str]) -> list[Scope]:
    scopes: list[Scope] = []
    for value in values:
        try:
            scopes.append(Scope(value))
        except ValueError:
            raise InvalidInput(
                f"unknown scope {value!r}; expected some of {', '.join(Scope)}", field="scopes"
            ) from None
    if not scopes:
        raise InvalidInput("a key needs at least one scope", field="scopes")
    return sorted(set(scopes))


async def create_key(
    store: ProfileStore, name: str, scopes: Iterable[str], *, this_machine_only: bool = False
) -> tuple[ApiKey, str]:
    """Store a new key; returns it and its token, which is not kept anywhere and cannot be shown again.
    `this_machine_only`: the key is refused on connections that came over the network."""
    if not NAME.match(name):
        raise InvalidInput("name: 1-64 letters, digits, spaces, dots, dashes or underscores", field="name")
    key_id, token, hashed = new_secret()
    key = ApiKey(
        _id=key_id,
        name=name,
        scopes=parse_scopes(scopes),
        secret_hash=hashed,
        created_at=clock.now(),
        this_machine_only=this_machine_only,
    )
    await store.insert_api_key(key)
    return key, token


async def revoke_key(store: ProfileStore, key_id: str) -> ApiKey:
    """Revoke the key at once: it is refused on its next request in every process (the keys version
    this moves empties their caches, app/services/key_cache.py), and its open subscriptions are
    closed within seconds (app/services/key_revocations.py)."""
    if not await store.revoke_api_key(key_id, clock.now()):
        raise NotFound(f"no active key {key_id}", field="id")  # revokeApiKey(id)
    revoked = await store.get_api_key(key_id)
    assert revoked is not None  # revoked, not deleted
    return revoked


async def list_keys(store: ProfileStore) -> list[ApiKey]:
    return await store.list_api_keys()


async def authenticate(store: ProfileStore, token: str, cache: KeyCache | None = None) -> Principal:
    """The principal a token stands for; Unauthenticated for a malformed, unknown or revoked one.
    With `cache`, a token verified before at the store's current keys version is not checked again."""
    token = token.strip()
    parts = split_token(token)
    if parts is None:
        raise Unauthenticated("not an API key of this server (expected cdp_<id>_<secret>)")
    if cache is not None:
        version, digest = await store.api_keys_version(), token_digest(token)  # the version before the key
        if (known := cache.get(digest, version)) is not None:
            return known
    key = await store.get_api_key(parts[0])
    if key is None or not secret_matches(key, parts[1]):
        raise Unauthenticated("unknown API key")
    if key.revoked_at is not None:
        raise Unauthenticated(f"API key {key.id} was revoked at {key.revoked_at.isoformat()}")
    principal = Principal(
        name=f"key:{key.name}", scopes=frozenset(key.scopes), key_id=key.id, this_machine_only=key.this_machine_only
    )
    if cache is not None:
        cache.put(digest, principal, version)
    return principal
