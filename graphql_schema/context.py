"""The typed per-request context every resolver receives."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from strawberry.types import Info as StrawberryInfo

from app.bootstrap import Services
from app.domain.access import Principal, Scope


@dataclass(slots=True)
class Context:
    services: Services
    request: Any = None
    response: Any = None
    # Who is calling (None: no valid key), and why not when the key was refused.
    principal: Principal | None = None
    auth_error: str | None = None
    connection_params: Any = None  # a WebSocket's connection_init payload

    @property
    def actor(self) -> str:
        """The caller as the audit log names it (merges, unmerges)."""
        return self.principal.name if self.principal else "anonymous"

    def may(self, scope: Scope) -> bool:
        return self.principal is not None and self.principal.may(scope)


Info = StrawberryInfo[Context, None]
