"""The operation's span (app/tracing.py) as GraphQL fills it in: the transport opens it before the
document is read (graphql_schema/http.py, transport_ws.py); OperationSpans names it once the document
says which operation it is (in the schema only while tracing is on; the compiled queries' shorter
way names it itself), and a response's errors mark it failed (`errors_described`)."""

from __future__ import annotations

from collections.abc import Iterator, Sequence

from strawberry.extensions import SchemaExtension

from app import tracing


class OperationSpans(SchemaExtension):
    def on_execute(self) -> Iterator[None]:
        execution = self.execution_context
        tracing.describe(execution.operation_type.value, execution.operation_name)
        yield


def errors_described(errors: Sequence[object]) -> str:
    """A response's errors as a span's status says them: their codes, and the errorId that finds an
    internal error's log line; never their messages (an internal one is masked for the client)."""
    described = []
    for error in errors:
        extensions = (error.get("extensions") if isinstance(error, dict) else None) or {}
        code, error_id = extensions.get("code", "ERROR"), extensions.get("errorId")
        described.append(f"{code} errorId={error_id}" if error_id else str(code))
    return ", ".join(dict.fromkeys(described))
