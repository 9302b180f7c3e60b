"""A POST of a compiled query goes from its parsed body to its plan (issue 14).

Once the personalisation query was compiled, Strawberry's machinery around it was half of the
request's CPU: its view (request adapters, a second reading of the body), its `Schema.execute` (an
execution context, the extension runner's four context managers and their hook lookups) and the
result processing, none of which changes the answer to a query that runs without an error. For a
query that has already been prepared (its text in the document cache, valid) and compiled, this does
what those steps do to such a request, in the same order and with the same functions:
- the variables' list limit (graphql_schema/variable_limits.py) and the data-scope rule
  (graphql_schema/data_scopes.py);
- the executor graphql-core builds (variables coerced, our execution checks), from what was worked out
  once for the document when it can be (graphql_schema/prepared_operations.py), then the plan;
- the operation's latency into the same histogram as OperationMetrics, and its name on the
  operation's span when tracing (as OperationSpans does).
Anything else — a document not prepared yet or refused, a mutation (told before its variables are
coerced: an event batch is coerced on a worker thread by its own path), a refusal, a coercion error, a
plan abandoned on an error — returns None, and the full path answers, with its own words. Queries
only read, so a request answered that way after a plan was abandoned changes nothing.
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any

from graphql import ExecutionResult, OperationType, get_operation_ast, specified_rules
from strawberry.execution import optimized_is_awaitable
from strawberry.http import GraphQLRequestData

from app import tracing
from graphql_schema import compiled_queries
from graphql_schema.data_scopes import needed_scopes
from graphql_schema.variable_limits import list_refusal

if TYPE_CHECKING:
    from graphql_schema.context import Context
    from graphql_schema.schema import Schema

# The rules Strawberry validates with when no extension adds any (the document cache's key).
VALIDATION_RULES = tuple(specified_rules)


async def answer(schema: Schema, request: GraphQLRequestData, context: Context) -> ExecutionResult | None:
    """The compiled answer to `request`, or None: the full path answers it."""
    started = time.perf_counter()
    compiler, text = schema.query_compiler, request.query
    if compiler is None or not text or request.extensions or context.principal is None:
        return None
    checked = schema.gate.documents.get((text, VALIDATION_RULES))
    document = checked.document if checked is not None else None
    if document is None:
        return None
    graphql_schema = schema._schema
    name, variables = request.operation_name, request.variables
    prepared = schema.prepared_operations.of(document, name)
    operation = prepared.operation if prepared is not None else get_operation_ast(document, name)
    if operation is None or operation.operation is not OperationType.QUERY:
        return None  # before anything is coerced: a batch of events is coerced off the loop by its own path
    if list_refusal(graphql_schema, document, name, variables, schema.limits.max_list_items) is not None:
        return None
    if not all(context.principal.may(scope) for scope in needed_scopes(graphql_schema, document, name)):
        return None
    options: dict[str, Any] = {
        "root_value": None,
        "variable_values": variables,
        "operation_name": name,
        "context_value": context,
        "is_awaitable": optimized_is_awaitable,
        "executor_class": schema.execution_context_class,
    }
    built = schema.prepared_operations.executor(prepared, document, options) if prepared is not None else None
    executor = built if built is not None else compiled_queries.build_executor(graphql_schema, document, options)
    if isinstance(executor, list):
        return None
    plan = compiler.plan_for(document, executor)
    if plan is None:
        return None
    result = await compiled_queries.run(plan, executor)
    if result is None:
        return None
    compiled_queries.count(context, compiled_queries.COMPILED)
    named = name or (operation.name.value if operation.name else None)
    if schema.traced:
        tracing.describe("query", named)
    metrics = context.services.metrics
    label = metrics.operation_name(named)
    metrics.child(metrics.operation_seconds, "query", label).observe(time.perf_counter() - started)
    return result
