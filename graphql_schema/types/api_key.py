"""GraphQL types of API keys, for the key administration behind the `admin:keys` scope."""

from __future__ import annotations

from datetime import datetime

import strawberry

from app.domain import access as domain


@strawberry.type(description="An API key as stored: its secret is kept only as a hash and never shown again.")
class ApiKey:
    id: strawberry.ID
    name: str
    scopes: list[str]
    created_at: datetime
    revoked_at: datetime | None

    @classmethod
    def from_domain(cls, key: domain.ApiKey) -> ApiKey:
        return cls(
            id=strawberry.ID(key.id),
            name=key.name,
            scopes=[str(scope) for scope in key.scopes],
            created_at=key.created_at,
            revoked_at=key.revoked_at,
        )


@strawberry.type(description="A new key and its token: the token is shown here once and cannot be shown again.")
class CreatedApiKey:
    key: ApiKey
    token: str = strawberry.field(description="Send it as the header Authorization: Bearer <token>.")
