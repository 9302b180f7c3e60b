"""The typed per-request context every resolver receives."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from strawberry.types import Info as StrawberryInfo

from app.bootstrap import Services


@dataclass(slots=True)
class Context:
    services: Services
    request: Any = None
    response: Any = None
    # Who is acting, for the audit log (merges). API keys will name the caller; until then, "api".
    actor: str = "api"


Info = StrawberryInfo[Context, None]
