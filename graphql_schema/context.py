"""The typed per-request context every resolver receives."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from graphql import OperationType
from starlette.websockets import WebSocket
from strawberry.types import Info as StrawberryInfo

from app.bootstrap import Services
from app.domain.access import Principal, Scope
from graphql_schema.loaders import Loaders


@dataclass(slots=True)
class Context:
    services: Services
    request: Any = None
    response: Any = None
    # Who is calling (None: no valid key), and why not when the key was refused.
    principal: Principal | None = None
    auth_error: str | None = None
    connection_params: Any = None  # a WebSocket's connection_init payload
    _loaders: dict[bool, Loaders] = field(default_factory=dict, repr=False)  # cached or not → the set

    def loaders(self, info: Info) -> Loaders:
        """This request's DataLoaders (graphql_schema/loaders.py), made at first use. Within a query they
        keep what they read; a mutation's fields run one after another and may change what an earlier
        one read, and a WebSocket's context lasts as long as the connection (a subscription runs once
        per event): there they batch but never cache."""
        cache = info.operation.operation is OperationType.QUERY and not isinstance(self.request, WebSocket)
        found = self._loaders.get(cache)
        if found is None:
            found = self._loaders[cache] = Loaders(self.services, cache=cache)
        return found

    @property
    def actor(self) -> str:
        """The caller as the audit log names it (merges, unmerges)."""
        return self.principal.name if self.principal else "anonymous"

    def may(self, scope: Scope) -> bool:
        return self.principal is not None and self.principal.may(scope)


Info = StrawberryInfo[Context, None]
