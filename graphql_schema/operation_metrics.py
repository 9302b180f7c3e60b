"""Latency of every GraphQL operation, by type and name, into the server's Prometheus histogram."""

from __future__ import annotations

import time
from collections.abc import Iterator

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
        # A document that did not parse has no operation type (asking for it would raise).
        kind = execution.operation_type.value if execution.graphql_document is not None else "unparsed"
        name = metrics.operation_name(execution.operation_name)
        metrics.child(metrics.operation_seconds, kind, name).observe(time.perf_counter() - started)
