"""The Strawberry schema. `schema.graphql` beside this file is its exported SDL (kept in sync by a test;
regenerate with `python -m graphql_schema.export`). The server builds its own with the configured
query limits (`build_schema`); the types are the same."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from datetime import date, datetime
from typing import Any

import strawberry
from graphql import DocumentNode, ExecutionResult, GraphQLError, OperationDefinitionNode
from strawberry.extensions.runner import SchemaExtensionsRunner
from strawberry.schema.exceptions import CannotGetOperationTypeError
from strawberry.types import ExecutionContext
from strawberry.types.execution import PreExecutionError

from app.domain.access import Scope
from app.off_loop import off_loop
from app.thread_priority import bulk_work
from graphql_schema import compiled, compiled_queries
from graphql_schema.compiled_queries import QueryCompiler
from graphql_schema.data_scopes import DataScopes
from graphql_schema.datetime_scalar import DATE, DATETIME
from graphql_schema.document_gate import DocumentGate
from graphql_schema.errors import ErrorCodes
from graphql_schema.execution import CheckedExecution
from graphql_schema.id_scalar import refuse_invalid_unicode_ids
from graphql_schema.inputs import raw_events
from graphql_schema.limits import QueryLimits
from graphql_schema.mutations import Mutation, ingest
from graphql_schema.operation_metrics import OperationMetrics
from graphql_schema.operation_spans import OperationSpans
from graphql_schema.prepared_operations import PreparedOperations
from graphql_schema.queries import Query
from graphql_schema.subscriptions import Subscription
from graphql_schema.variable_limits import list_refusal


class Schema(strawberry.Schema):
    def __init__(
        self,
        *,
        limits: QueryLimits,
        compiled_fields: Mapping[str, compiled.RootField],
        compiled_queries: bool,
        traced: bool = False,
        **options: Any,
    ) -> None:
        super().__init__(**options)
        self.limits = limits
        self.traced = traced  # operations are spans (app/tracing.py)
        self.gate = DocumentGate(self._schema, limits)
        self.compiler = compiled.Compiler(self, compiled_fields)
        self.query_compiler = QueryCompiler(self) if compiled_queries else None
        self.prepared_operations = PreparedOperations(self._schema)

    def _get_execute_function(self) -> Callable[..., Any]:
        """graphql-core's `execute`, or the compiled plan of the document when it has one."""
        core = super()._get_execute_function()

        def execute(schema: Any, document: DocumentNode, **options: Any) -> Any:
            context = options.get("context_value")
            plan = self.compiler.plan_for(document, options.get("operation_name"))
            if plan is not None and compiled.allowed(plan, context):
                compiled_queries.count(context, compiled_queries.COMPILED)
                return compiled.run(plan, schema, document, options)
            if self.query_compiler is not None:
                return self._execute(schema, document, options)
            compiled_queries.count(context, compiled_queries.INTERPRETED)
            return core(schema, document, **options)

        return execute

    async def _execute(self, schema: Any, document: DocumentNode, options: dict[str, Any]) -> ExecutionResult:
        """graphql-core's `execute` (build the executor, then run its operation), with a query's
        compiled plan run instead when there is one."""
        context = options.get("context_value")
        executor = compiled_queries.build_executor(schema, document, options)
        if isinstance(executor, list):
            return ExecutionResult(None, errors=executor)
        assert self.query_compiler is not None
        plan = self.query_compiler.plan_for(document, executor)
        result = await compiled_queries.run(plan, executor) if plan is not None else None
        if result is not None:
            compiled_queries.count(context, compiled_queries.COMPILED)
            return result
        compiled_queries.count(
            context, compiled_queries.INTERPRETED
        )  # no plan, or the plan met an error: graphql-core says what
        interpreted: Any = executor.execute_operation()
        return await interpreted if executor.is_awaitable(interpreted) else interpreted  # type: ignore[no-any-return]

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
                # The request's own operationName (Strawberry's `operation_name` falls back to the first one's).
                unchosen = OperationNotChosen.of(prepared.document, context._provided_operation_name)
                if unchosen is not None:
                    raise unchosen
                context.graphql_document = prepared.document
                too_long = await self._list_refusal(prepared.document, context.operation_name, context.variables)
                errors += [too_long] if too_long is not None else []
            if errors:
                context.graphql_document = None
                context.pre_execution_errors = errors
                return PreExecutionError(data=None, errors=errors)
            context.pre_execution_errors = []  # validated: Strawberry's validation step has nothing left to do
        return await super()._prepare_operation_async(context, extensions_runner)

    async def _list_refusal(
        self, document: DocumentNode, operation_name: str | None, variables: dict[str, Any] | None
    ) -> GraphQLError | None:
        """`list_refusal` of the variables; a batch's (a thousand events and their identifiers: ~5 ms of
        walking) on a worker thread, as its coercion is, so that the loop is not held for it."""
        check = (self._schema, document, operation_name, variables, self.limits.max_list_items)
        large = compiled.list_items(variables) > compiled.INLINE_ITEMS
        with bulk_work(large):
            return await off_loop(large, list_refusal, *check)


class OperationNotChosen(CannotGetOperationTypeError):
    """A document of several operations sent without `operationName`: a request error (the spec's
    GetOperation), answered as an unknown operation name is. Strawberry ran the first one instead."""

    def __init__(self, names: list[str]) -> None:
        super().__init__(None)
        self.names = names

    @classmethod
    def of(cls, document: DocumentNode, operation_name: str | None) -> OperationNotChosen | None:
        operations = [d for d in document.definitions if isinstance(d, OperationDefinitionNode)]
        if operation_name is not None or len(operations) < 2:
            return None
        return cls([o.name.value if o.name else "(anonymous)" for o in operations])

    def as_http_error_reason(self) -> str:
        return f"the document holds {len(self.names)} operations ({', '.join(self.names)}): name one in operationName"


# Root fields executed without graphql-core when their document allows (graphql_schema/compiled.py).
COMPILED_ROOT_FIELDS = {
    "ingestEvents": compiled.RootField(Scope.WRITE_EVENTS, lambda arguments: raw_events(arguments["events"]), ingest),
}


def build_schema(limits: QueryLimits, *, compiled_execution: bool = True, traced: bool = False) -> Schema:
    refuse_invalid_unicode_ids()
    return Schema(
        query=Query,
        mutation=Mutation,
        subscription=Subscription,
        limits=limits,
        compiled_fields=COMPILED_ROOT_FIELDS if compiled_execution else {},
        compiled_queries=compiled_execution,
        traced=traced,
        # "Did you mean …?" would spell out the schema that switching introspection off hides.
        extensions=[
            DataScopes,
            OperationMetrics,
            lambda: ErrorCodes(hide_suggestions=not limits.introspection),
            *([OperationSpans] if traced else []),
        ],
        # Page variables checked once coerced; a subscription event executed once for every subscriber
        # asking the same (execution.py, shared_events.py).
        execution_context_class=CheckedExecution,
        scalar_overrides={datetime: DATETIME, date: DATE},
    )


schema = build_schema(QueryLimits())
