"""Every root field declares the scope it needs: `permission_classes=[requires(Scope.X)]`.
A test walks the schema and fails when a field has none."""

from __future__ import annotations

from functools import cache
from typing import Any, ClassVar

from strawberry.permission import BasePermission

from app.domain.access import Scope
from app.domain.errors import Forbidden, Unauthenticated
from graphql_schema.auth import MISSING
from graphql_schema.context import Info


class ScopeRequired(BasePermission):
    scope: ClassVar[Scope]

    def has_permission(self, source: Any, info: Info, **kwargs: Any) -> bool:
        context = info.context
        if context.principal is None:
            raise Unauthenticated(context.auth_error or MISSING)
        if not context.principal.may(self.scope):
            raise Forbidden(f"{info.field_name} needs the scope {self.scope}; this key has {_listed(context)}")
        return True


def _listed(context: Any) -> str:
    scopes = sorted(context.principal.scopes)
    return ", ".join(scopes) if scopes else "none"


@cache
def requires(scope: Scope) -> type[BasePermission]:
    return type(f"Requires_{scope.replace(':', '_')}", (ScopeRequired,), {"scope": scope})
