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


Info = StrawberryInfo[Context, None]
