"""OpenTelemetry tracing, an optional extra (`pip install 'cdp-core[otel]'`, README: Tracing).

On when the extra is installed and the standard variables ask for it: an exporter named in
OTEL_TRACES_EXPORTER (not `none`), or an OTLP endpoint (OTEL_EXPORTER_OTLP_ENDPOINT or
OTEL_EXPORTER_OTLP_TRACES_ENDPOINT, exported over OTLP/HTTP); never with OTEL_SDK_DISABLED=true. Then
each GraphQL operation is a server span, a child of the caller's W3C `traceparent` (the transport
opens it: graphql_schema/http.py, graphql_schema/transport_ws.py), and each store call made within
one is a client span `store.<method>` (TracedStore, put around the store by the composition root).

Why it looks like this: without the extra nothing of OpenTelemetry is imported (INSTALLED is found
without importing it), and while tracing is off nothing is wrapped and no span object is made, so a
request costs what it cost before. Only this module imports OpenTelemetry, and only once tracing is
on. The SDK reads its own variables (service name and resource, sampler, batching, the exporter's
endpoint, headers, timeout); this module decides only whether to trace and which exporters, found by
their registered names as the SDK finds them. Store calls outside any traced operation (the segment
checks, the revocation poll, the change feed) make no spans: they would be a root trace a second.
"""

from __future__ import annotations

import importlib.util
import inspect
import logging
import os
import threading
from collections.abc import Awaitable, Callable, Iterator, Mapping
from contextlib import contextmanager
from importlib.metadata import PackageNotFoundError, entry_points, version
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import SpanExporter
    from opentelemetry.trace import Span, Tracer

    from app.services.ports import ProfileStore

log = logging.getLogger("cdp")

SERVICE_NAME = "cdp-core"  # the resource's service.name unless OTEL_SERVICE_NAME or OTEL_RESOURCE_ATTRIBUTES say
UNNAMED_OPERATION = "GraphQL Operation"  # the semantic conventions' name while the type is not known
EXPORTER_GROUP = "opentelemetry_traces_exporter"  # the entry points the SDK finds exporters by
# OTLP by its protocol; OTLP/HTTP when none is set (the OpenTelemetry specification's default, and
# the exporter the extra installs; the Python SDK alone would pick gRPC).
OTLP_EXPORTERS = {"http/protobuf": "otlp_proto_http", "grpc": "otlp_proto_grpc"}


def _installed() -> bool:
    """The SDK's distribution is there (the API alone would trace nothing), found without importing
    any of it; and its package is importable (not blocked in sys.modules)."""
    try:
        version("opentelemetry-sdk")
        return importlib.util.find_spec("opentelemetry") is not None
    except (PackageNotFoundError, ValueError):
        return False


INSTALLED = _installed()


class TracingSettingError(ValueError):
    """An OTEL_* variable tracing cannot start with; its message is one line for an operator."""


def asked_for(environ: Mapping[str, str] = os.environ) -> bool:
    """Whether the standard variables ask for traces, installed or not."""
    if environ.get("OTEL_SDK_DISABLED", "").strip().lower() == "true":
        return False
    named = environ.get("OTEL_TRACES_EXPORTER", "").strip().lower()
    if named:
        return named != "none"
    return bool(environ.get("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT") or environ.get("OTEL_EXPORTER_OTLP_ENDPOINT"))


def exporter_names(environ: Mapping[str, str] = os.environ) -> list[str]:
    """The registered names of the exporters asked for (`otlp` resolved by its protocol)."""
    if not asked_for(environ):
        return []
    names = [name.strip() for name in environ.get("OTEL_TRACES_EXPORTER", "otlp").split(",") if name.strip()]
    protocol_variable = next(
        (name for name in ("OTEL_EXPORTER_OTLP_TRACES_PROTOCOL", "OTEL_EXPORTER_OTLP_PROTOCOL") if environ.get(name)),
        None,
    )
    protocol = environ[protocol_variable].strip() if protocol_variable else "http/protobuf"
    if "otlp" in names and protocol not in OTLP_EXPORTERS:
        raise TracingSettingError(
            f"bad setting {protocol_variable}={protocol!r}: use {' or '.join(OTLP_EXPORTERS)} (traces)"
        )
    return [OTLP_EXPORTERS[protocol] if name == "otlp" else name for name in names]


def _exporters(environ: Mapping[str, str]) -> list[SpanExporter]:
    exporters = []
    for name in exporter_names(environ):
        found = entry_points(group=EXPORTER_GROUP, name=name)
        if not found:
            known = sorted(point.name for point in entry_points(group=EXPORTER_GROUP))
            hint = " (install opentelemetry-exporter-otlp-proto-grpc)" if name == OTLP_EXPORTERS["grpc"] else ""
            raise TracingSettingError(
                f"bad setting OTEL_TRACES_EXPORTER: no trace exporter {name!r} is installed{hint}; "
                f"installed: {', '.join(known)}, otlp, none"
            )
        try:
            exporters.append(next(iter(found)).load()())  # it reads its own OTEL_EXPORTER_* variables
        except Exception as exc:
            raise TracingSettingError(f"the {name} trace exporter cannot start: {type(exc).__name__}: {exc}") from exc
    return exporters


def problem(environ: Mapping[str, str] = os.environ) -> str | None:
    """Why tracing cannot start with these variables, in one line; None when it can or is not asked
    for (`serve` says it before starting any worker)."""
    if not INSTALLED or not asked_for(environ):
        return None
    try:
        for exporter in _exporters(environ):
            exporter.shutdown()
    except TracingSettingError as exc:
        return str(exc)
    return None


_lock = threading.Lock()
_decided: list[Tracer | None] = []  # the process's tracer once decided (or None: off)
_providers: list[TracerProvider] = []  # the process's provider, once set up
FLUSH_MILLISECONDS = 5000


def tracer() -> Tracer | None:
    """This process's tracer, None when tracing is off. The first call sets up the SDK from the
    variables (the provider, also the global one that other libraries' instrumentation finds, and
    one batching thread per exporter); every worker process does this once, when it builds its
    application. Raises TracingSettingError for a setting it cannot start with."""
    with _lock:
        if not _decided:
            _decided.append(_set_up() if asked_for() else None)
        return _decided[0]


def _set_up() -> Tracer | None:
    if not INSTALLED:
        log.warning(
            "OTEL_* variables ask for traces but OpenTelemetry is not installed: tracing is off "
            "(pip install 'cdp-core[otel]')"
        )
        return None
    from opentelemetry import trace
    from opentelemetry.sdk.resources import SERVICE_NAME as SERVICE_NAME_KEY
    from opentelemetry.sdk.resources import Resource
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import BatchSpanProcessor

    exporters = _exporters(os.environ)
    resource = Resource.create()  # OTEL_SERVICE_NAME, OTEL_RESOURCE_ATTRIBUTES
    if str(resource.attributes.get(SERVICE_NAME_KEY, "")).startswith("unknown_service"):
        resource = resource.merge(Resource({SERVICE_NAME_KEY: SERVICE_NAME}))
    provider = TracerProvider(resource=resource)  # the sampler from OTEL_TRACES_SAMPLER(_ARG)
    for exporter in exporters:
        provider.add_span_processor(BatchSpanProcessor(exporter))  # OTEL_BSP_*
    trace.set_tracer_provider(provider)
    _providers.append(provider)
    names = ", ".join(exporter_names())
    log.info("tracing on: service %s, exporting with %s", resource.attributes.get(SERVICE_NAME_KEY), names)
    return provider.get_tracer(SERVICE_NAME)


def flush() -> None:
    """Exports the spans still batched, waiting FLUSH_MILLISECONDS at most. Called when the server's
    application stops: uvicorn then ends the process by raising the stop signal again, so the SDK's
    own flush at exit never runs."""
    for provider in _providers:
        provider.force_flush(FLUSH_MILLISECONDS)


@contextmanager
def operation_span(tracer: Tracer, headers: Mapping[str, str]) -> Iterator[Span]:
    """The server span of one GraphQL operation, current while it runs, a child of the trace that the
    caller's `traceparent` header names (if any). `describe` names it once the operation is known."""
    from opentelemetry import propagate
    from opentelemetry.trace import SpanKind

    with tracer.start_as_current_span(
        UNNAMED_OPERATION,
        context=propagate.extract(headers),
        kind=SpanKind.SERVER,
        record_exception=False,  # an exception's message may hold what the client was not told
        set_status_on_exception=False,
    ) as span:
        try:
            yield span
        except Exception as exc:
            failed(span, type(exc).__name__)
            raise


def describe(kind: str, name: str | None) -> None:
    """Names the current operation span as OpenTelemetry's GraphQL conventions say: `query
    personalisation`, or `query` for an anonymous operation."""
    from opentelemetry import trace

    span = trace.get_current_span()
    if not span.is_recording():
        return
    span.update_name(f"{kind} {name}" if name else kind)
    span.set_attribute("graphql.operation.type", kind)
    if name:
        span.set_attribute("graphql.operation.name", name)


def failed(span: Span | None, why: str) -> None:
    """Marks `span` (None: the current span) as failed, saying why in a few words (codes, never a
    masked message). The first reason given stays."""
    from opentelemetry import trace
    from opentelemetry.trace import Status, StatusCode

    span = span or trace.get_current_span()
    status = getattr(span, "status", None)  # the SDK's spans have one; the API's non-recording span not
    if not span.is_recording() or (status is not None and status.status_code is StatusCode.ERROR):
        return
    span.set_status(Status(StatusCode.ERROR, why))


class TracedStore:
    """A store whose calls made within a traced operation are client spans `store.<method>` with
    `db.system` (sqlite or mongodb). The span is opened on the event loop around the awaited call,
    so whatever thread the store hands its work to, it measures the call as its caller waits for it.
    A failed call's span says the error's type, not its message. Attributes and streams pass through."""

    def __init__(self, inner: ProfileStore, tracer: Tracer) -> None:
        self.inner = inner
        self._tracer = tracer
        self._system = inner.backend

    def __getattr__(self, name: str) -> Any:
        attribute = getattr(self.inner, name)
        if not inspect.iscoroutinefunction(attribute):  # `backend`, `batch()`, streams: as they are
            return attribute
        traced = self._traced(name, attribute)
        setattr(self, name, traced)  # wrapped once, not per call
        return traced

    def _traced(self, name: str, call: Callable[..., Awaitable[Any]]) -> Callable[..., Awaitable[Any]]:
        from opentelemetry import trace
        from opentelemetry.trace import SpanKind

        span_name = f"store.{name}"
        attributes = {"db.system": self._system, "db.operation.name": name}
        current_span, tracer = trace.get_current_span, self._tracer

        async def traced(*args: Any, **kwargs: Any) -> Any:
            if not current_span().is_recording():  # outside an operation, or one not sampled
                return await call(*args, **kwargs)
            with tracer.start_as_current_span(
                span_name,
                kind=SpanKind.CLIENT,
                attributes=attributes,
                record_exception=False,
                set_status_on_exception=False,
            ) as span:
                try:
                    return await call(*args, **kwargs)
                except Exception as exc:
                    span.set_attribute("error.type", type(exc).__name__)
                    failed(span, type(exc).__name__)
                    raise

        return traced
