"""The Strawberry schema. `schema.graphql` beside this file is its exported SDL (kept in sync by a test;
regenerate with `python -m graphql_schema.export`). The server builds its own with the configured
query limits (`build_schema`); the types are the same."""

from __future__ import annotations

from typing import Any

import strawberry
from graphql import GraphQLError
from strawberry.extensions.runner import SchemaExtensionsRunner
from strawberry.types import ExecutionContext
from strawberry.types.execution import PreExecutionError

from graphql_schema.data_scopes import DataScopes
from graphql_schema.document_gate import DocumentGate
from graphql_schema.errors import ErrorCodes
from graphql_schema.execution import CheckedExecution
from graphql_schema.limits import QueryLimits
from graphql_schema.mutations import Mutation
from graphql_schema.operation_metrics import OperationMetrics
from graphql_schema.queries import Query
from graphql_schema.subscriptions import Subscription
from graphql_schema.variable_limits import list_refusal


class Schema(strawberry.Schema):
    def __init__(self, *, limits: QueryLimits, **options: Any) -> None:
        super().__init__(**options)
        self.limits = limits
        self.gate = DocumentGate(self._schema, limits)

    def process_errors(self, errors: list[GraphQLError], execution_context: ExecutionContext | None = None) -> None:
        """Client mistakes are not server errors: ErrorCodes logs the unexpected ones, with their id."""

    async def _prepare_operation_async(
        self, context: ExecutionContext, extensions_runner: SchemaExtensionsRunner
    ) -> PreExecutionError | None:
        """Parse, check and validate through the gate (graphql_schema/document_gate.py) before Strawberry's
        own steps, which then find the document parsed and validated. Overridden because no extension hook
        comes before parsing and can answer with an error: one raised in `on_parse` escapes Strawberry's
        error handling (over WebSocket it ends the operation's task)."""
        text = context.query
        if context.graphql_document is None and isinstance(text, str) and text:
            prepared = await self.gate.prepare(text, context.validation_rules)
            errors = list(prepared.errors)
            if prepared.document is not None:
                context.graphql_document = prepared.document
                variables = context.variables
                too_long = list_refusal(
                    self._schema, prepared.document, context.operation_name, variables, self.limits.max_list_items
                )
                errors += [too_long] if too_long is not None else []
            if errors:
                context.graphql_document = None
                context.pre_execution_errors = errors
                return PreExecutionError(data=None, errors=errors)
            context.pre_execution_errors = []  # validated: Strawberry's validation step has nothing left to do
        return await super()._prepare_operation_async(context, extensions_runner)


def build_schema(limits: QueryLimits) -> Schema:
    return Schema(
        query=Query,
        mutation=Mutation,
        subscription=Subscription,
        limits=limits,
        # "Did you mean …?" would spell out the schema that switching introspection off hides.
        extensions=[DataScopes, OperationMetrics, lambda: ErrorCodes(hide_suggestions=not limits.introspection)],
        # Page variables checked once coerced; a subscription event executed once for every subscriber
        # asking the same (execution.py, shared_events.py).
        execution_context_class=CheckedExecution,
    )


schema = build_schema(QueryLimits())
