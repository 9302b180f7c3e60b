"""The executor: Strawberry's, sharing a subscription event's execution among subscribers
(graphql_schema/shared_events.py), and refusing what a document's variables make out of bounds
before any resolver runs: a page given as a variable below 1 or past its field's maximum, and a
cost that only the variables' values could bound (graphql_schema/limits.py, ExecutionChecks).

The checks run right after graphql-core coerces the variables (`build`), so their refusals are
returned as coercion errors are: the request's errors, no data, nothing executed. The checks a
document needs are registered by graphql_schema/document_gate.py when it checks the document, and
forgotten with the document.
"""

from __future__ import annotations

import weakref
from collections.abc import Awaitable, Mapping, Sequence
from typing import Any

from graphql import DocumentNode, GraphQLError, GraphQLSchema, OperationDefinitionNode
from graphql.execution.executor import Executor
from graphql.type.definition import GraphQLResolveInfoHelpers

from graphql_schema.document_memo import DocumentMemo
from graphql_schema.limits import ExecutionChecks
from graphql_schema.shared_events import SharedEventExecution

_expected: DocumentMemo[Mapping[str | None, ExecutionChecks]] = DocumentMemo()


def expect(document: DocumentNode, checks: Mapping[str | None, ExecutionChecks]) -> None:
    """Run `checks` (by operation name) whenever `document` is executed, for as long as it lives."""
    if checks:
        _expected.put(document, checks)


def helpers_without_cycle(executor: Executor[Any]) -> GraphQLResolveInfoHelpers:
    """The executor's helpers for resolvers (`info.async_helpers`), reaching it through a weak reference.

    graphql-core's hold its bound methods: the executor refers to itself, so each request's executor,
    context, variables, request and answer were left for the cycle collector, which found ~9,000 such
    objects every 45 requests and took 3-14 ms to free them, pauses that made the personalisation
    query's p99 three times its p50 (bench/execution.py). Without the cycle, they are freed as soon
    as the request is done with them."""
    executor_ref = weakref.ref(executor)

    def gather(values: Sequence[Awaitable[Any]]) -> Awaitable[list[Any]]:
        return _alive(executor_ref).gather_async_work(values)

    def track(values: Sequence[Any]) -> None:
        _alive(executor_ref).track_async_work(values)

    return GraphQLResolveInfoHelpers(gather=gather, track=track)


def _alive(executor_ref: weakref.ref[Executor[Any]]) -> Executor[Any]:
    executor = executor_ref()
    if executor is None:  # a resolver's helper called after its execution was done with and dropped
        raise RuntimeError("the execution this resolver belonged to has ended")
    return executor


def refusals(
    document: DocumentNode, operation: OperationDefinitionNode, coerced: Mapping[str, Any]
) -> list[GraphQLError]:
    """What the operation's checks refuse in its coerced variables (none: it may run)."""
    checks = (_expected.get(document) or {}).get(operation.name.value if operation.name else None)
    return checks.refusals(operation, coerced) if checks is not None else []


class CheckedExecution(SharedEventExecution):
    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.async_helpers = helpers_without_cycle(self)

    def build_per_event_executor(self, payload: Any) -> Any:
        executor = super().build_per_event_executor(payload)
        if isinstance(executor, Executor):  # a copy of this one: its helpers its own, not this one's
            executor.async_helpers = helpers_without_cycle(executor)
        return executor

    @classmethod
    def build(cls, schema: GraphQLSchema, document: DocumentNode, *args: Any, **kwargs: Any) -> Any:
        built = super().build(schema, document, *args, **kwargs)
        if isinstance(built, list):  # the variables did not coerce: graphql-core's errors
            return built
        return refusals(document, built.operation, built.variable_values.coerced) or built
