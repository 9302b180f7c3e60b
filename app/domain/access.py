"""Who may do what: API-key scopes and the principal a request acts as.

Keys are random 256-bit secrets shown once at creation; only their SHA-256 is stored (a key is
high-entropy, so a slow password hash would add nothing but latency to every request).
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum

from pydantic import Field

from app.domain.profile import StoredModel

TOKEN_PREFIX = "cdp"


class Scope(StrEnum):
    """What a key may do; README "Access control" says exactly what each one allows."""

    READ_PROFILES = "read:profiles"
    READ_PII = "read:pii"
    WRITE_EVENTS = "write:events"
    WRITE_PROFILES = "write:profiles"
    WRITE_CONSENT = "write:consent"
    PRIVACY_ERASE = "privacy:erase"
    MERGE_PROFILES = "merge:profiles"
    ADMIN_SEGMENTS = "admin:segments"
    ADMIN_KEYS = "admin:keys"
    SUBSCRIBE = "subscribe"


class ApiKey(StoredModel):
    id: str = Field(alias="_id")
    name: str
    scopes: list[Scope]
    secret_hash: str
    created_at: datetime
    revoked_at: datetime | None = None
    # The development key: answered on connections made on this machine only (graphql_schema/auth.py).
    this_machine_only: bool = False

    def to_document(self) -> dict[str, object]:
        document = self.model_dump(by_alias=True, exclude_none=True)
        document["scopes"] = [str(scope) for scope in self.scopes]
        return document


@dataclass(frozen=True, slots=True)
class Principal:
    """The caller of one request: a key's name (for audit logs) and what it may do."""

    name: str
    scopes: frozenset[Scope]
    key_id: str | None = None
    this_machine_only: bool = False

    def may(self, scope: Scope) -> bool:
        return scope in self.scopes


# Authentication switched off (CDP_AUTH=off, loopback only): the local developer may do anything.
LOCAL_DEVELOPER = Principal(name="local", scopes=frozenset(Scope))


def new_secret() -> tuple[str, str, str]:
    """(key id, token to hand out once, hash to store). The token carries the id: cdp_<id>_<secret>."""
    key_id = secrets.token_hex(6)
    secret = secrets.token_urlsafe(32)
    return key_id, f"{TOKEN_PREFIX}_{key_id}_{secret}", secret_hash(secret)


def secret_hash(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


def split_token(token: str) -> tuple[str, str] | None:
    prefix, _, rest = token.partition("_")
    key_id, _, secret = rest.partition("_")
    if prefix != TOKEN_PREFIX or not key_id or not secret:
        return None
    return key_id, secret


def secret_matches(key: ApiKey, secret: str) -> bool:
    return hmac.compare_digest(key.secret_hash, secret_hash(secret))
