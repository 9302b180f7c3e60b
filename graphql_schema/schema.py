"""The Strawberry schema. `schema.graphql` beside this file is its exported SDL (kept in sync by a test;
regenerate with `python -m graphql_schema.export`). The server builds its own with the configured
query limits (`build_schema`); the types are the same."""

from __future__ import annotations

import strawberry
from graphql import GraphQLError
from strawberry.schema.config import StrawberryConfig
from strawberry.types import ExecutionContext

from graphql_schema.data_scopes import DataScopes
from graphql_schema.document_cache import document_caches
from graphql_schema.errors import ErrorCodes
from graphql_schema.limits import QueryLimits, limit_extensions
from graphql_schema.mutations import Mutation
from graphql_schema.operation_metrics import OperationMetrics
from graphql_schema.queries import Query
from graphql_schema.shared_events import SharedEventExecution
from graphql_schema.subscriptions import Subscription


class Schema(strawberry.Schema):
    def process_errors(self, errors: list[GraphQLError], execution_context: ExecutionContext | None = None) -> None:
        """Client mistakes are not server errors: ErrorCodes logs the unexpected ones, with their id."""


def build_schema(limits: QueryLimits) -> Schema:
    return Schema(
        query=Query,
        mutation=Mutation,
        subscription=Subscription,
        extensions=[*limit_extensions(limits), *document_caches(), DataScopes, OperationMetrics, ErrorCodes],
        # A subscription event is executed once for every subscriber asking the same (shared_events.py).
        execution_context_class=SharedEventExecution,
        # "Did you mean …?" would spell out the schema that switching introspection off hides.
        config=StrawberryConfig(disable_field_suggestions=not limits.introspection),
    )


schema = build_schema(QueryLimits())
