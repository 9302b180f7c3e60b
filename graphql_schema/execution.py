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

from collections.abc import Mapping
from typing import Any

from graphql import DocumentNode, GraphQLError, GraphQLSchema

from graphql_schema.document_memo import DocumentMemo
from graphql_schema.limits import ExecutionChecks
from graphql_schema.shared_events import SharedEventExecution

_expected: DocumentMemo[Mapping[str | None, ExecutionChecks]] = DocumentMemo()


def expect(document: DocumentNode, checks: Mapping[str | None, ExecutionChecks]) -> None:
    """Run `checks` (by operation name) whenever `document` is executed, for as long as it lives."""
    if checks:
        _expected.put(document, checks)


def expected(document: DocumentNode) -> Mapping[str | None, ExecutionChecks]:
    return _expected.get(document) or {}


class CheckedExecution(SharedEventExecution):
    @classmethod
    def build(cls, schema: GraphQLSchema, document: DocumentNode, *args: Any, **kwargs: Any) -> Any:
        built = super().build(schema, document, *args, **kwargs)
        if isinstance(built, list):  # the variables did not coerce: graphql-core's errors
            return built
        operation = built.operation
        checks = expected(document).get(operation.name.value if operation.name else None)
        if checks is None:
            return built
        refusals: list[GraphQLError] = checks.refusals(operation, built.variable_values.coerced)
        return refusals or built
