"""Latency of every GraphQL operation, by type and name, into the server's Prometheus histogram."""

from __future__ import annotations

import time
from collections.abc import Iterator

from graphql import OperationDefinitionNode
from strawberry.extensions import SchemaExtension


class OperationMetrics(SchemaExtension):
    def on_operation(self) -> Iterator[None]:
        started = time.perf_counter()
        yield
        context = self.execution_context.context
        metrics = getattr(getattr(context, "services", None), "metrics", None)
        if metrics is None:
            return
        execution = self.execution_context
        document = execution.graphql_document
        # The name of an operation of the document, or none: the request's operationName is any text a
        # client sends (an email, a newline), which /metrics showed to anyone, and a hundred of them
        # left every real operation counted as "other".
        operations = [d for d in getattr(document, "definitions", ()) if isinstance(d, OperationDefinitionNode)]
        names = {d.name.value for d in operations if d.name}
        asked = execution.operation_name
        try:  # a document that did not parse, or has no such operation, has no type (asking would raise)
            kind = execution.operation_type.value if document is not None else "unparsed"
        except Exception:
            kind = "unknown"
        name = metrics.operation_name(asked if asked in names else None)
        metrics.child(metrics.operation_seconds, kind, name).observe(time.perf_counter() - started)
