"""OpenTelemetry tracing (app/tracing.py, issue 16 item 8), through HTTP and WebSocket: an operation is
a server span under the caller's `traceparent`, named as OpenTelemetry's GraphQL conventions say,
whichever executor answers it, with a span per store call under it; errors mark it failed without
their messages. Spans are caught with the SDK's own in-memory exporter. With tracing not asked for,
or OpenTelemetry not installed, the server answers with nothing of it imported and its store as it
is; an OTEL_* setting it cannot start with is one line before it starts."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import textwrap
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind, StatusCode
from websockets.asyncio.client import connect
from websockets.typing import Subprotocol

from app.bootstrap import Services
from app.main import create_app
from app.services.ingestion import IngestionPolicy
from app.services.ports import ProfileStore
from app.settings import Settings
from app.tracing import TracedStore
from tests.server_process import ROOT, free_port, serving, start_server

TRACE_ID = "0af7651916cd43dd8448eb211c80319c"
PARENT_ID = "b7ad6b7169203331"
TRACEPARENT = f"00-{TRACE_ID}-{PARENT_ID}-01"
UPSERT = """mutation($input: ProfileInput!) { upsertProfile(input: $input) { id } }"""
PERSON = """query Person($id: ID!) { profile(id: $id) { id segments identifiers { type value } } }"""
MERGE = """mutation Merge($survivor: ID!, $merged: [ID!]!) {
  mergeProfiles(survivorId: $survivor, mergedIds: $merged, reason: "same person") { merge { id } } }"""
SUBSCRIBE = """subscription Changes { segmentMembershipChanged { change } }"""


@pytest.fixture
def exported() -> InMemorySpanExporter:
    return InMemorySpanExporter()


def _services(store: ProfileStore, exported: InMemorySpanExporter, **settings: Any) -> Services:
    """Services as the composition root wires them with tracing on (app/bootstrap.py `connect`), the
    provider exporting to memory at once instead of to a collector."""
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exported))
    tracer = provider.get_tracer("cdp-core")
    return Services(
        settings=Settings(seed_fixtures=False, **settings),
        store=TracedStore(store, tracer),
        ingestion=IngestionPolicy(),
        tracer=tracer,
    )


@pytest.fixture
async def traced(
    store: ProfileStore, exported: InMemorySpanExporter, admin_key: str
) -> AsyncIterator[httpx.AsyncClient]:
    transport = httpx.ASGITransport(app=create_app(services=_services(store, exported)))
    headers = {"authorization": f"Bearer {admin_key}"}
    async with httpx.AsyncClient(transport=transport, base_url="http://test", headers=headers) as http:
        yield http


async def _post(http: httpx.AsyncClient, query: str, variables: dict[str, Any], **headers: str) -> dict[str, Any]:
    response = await http.post("/graphql", json={"query": query, "variables": variables}, headers=headers)
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


def _operations(exported: InMemorySpanExporter) -> list[ReadableSpan]:
    return [span for span in exported.get_finished_spans() if span.kind is SpanKind.SERVER]


def _children(exported: InMemorySpanExporter, parent: ReadableSpan) -> list[ReadableSpan]:
    assert parent.context is not None
    return [
        span
        for span in exported.get_finished_spans()
        if span.parent is not None and span.parent.span_id == parent.context.span_id
    ]


async def test_an_operation_is_a_span_under_the_callers_traceparent_with_its_store_calls_under_it(
    traced: httpx.AsyncClient, exported: InMemorySpanExporter, store: ProfileStore
) -> None:
    created = await _post(traced, UPSERT, {"input": {"identifiers": [{"type": "email", "value": "ann@example.com"}]}})
    profile_id = created["data"]["upsertProfile"]["id"]
    exported.clear()
    # Twice: the second time the compiled query answers by the shorter way, past Strawberry's extensions.
    for _ in range(2):
        body = await _post(traced, PERSON, {"id": profile_id}, traceparent=TRACEPARENT)
        assert body["data"]["profile"]["id"] == profile_id
    operations = _operations(exported)
    assert len(operations) == 2
    for operation in operations:
        assert operation.name == "query Person"
        assert operation.attributes is not None
        assert operation.attributes["graphql.operation.type"] == "query"
        assert operation.attributes["graphql.operation.name"] == "Person"
        assert operation.context is not None and operation.parent is not None
        assert format(operation.context.trace_id, "032x") == TRACE_ID
        assert format(operation.parent.span_id, "016x") == PARENT_ID
        assert operation.parent.is_remote
        assert operation.status.status_code is StatusCode.UNSET
        calls = _children(exported, operation)
        assert calls, "no store span under the operation"
        assert {call.name for call in calls} >= {"store.get_profile"}
        for call in calls:
            assert call.kind is SpanKind.CLIENT
            assert call.attributes is not None and call.attributes["db.system"] == store.backend
            assert call.context is not None and call.context.trace_id == operation.context.trace_id


async def test_a_mutation_without_a_traceparent_starts_its_own_trace(
    traced: httpx.AsyncClient, exported: InMemorySpanExporter
) -> None:
    await _post(traced, UPSERT, {"input": {"identifiers": [{"type": "email", "value": "bob@example.com"}]}})
    (operation,) = _operations(exported)
    assert operation.parent is None
    assert operation.name == "mutation"  # anonymous: the type alone
    assert operation.attributes is not None and "graphql.operation.name" not in operation.attributes
    assert any(call.name.startswith("store.") for call in _children(exported, operation))


async def test_an_operation_with_an_error_is_a_failed_span_saying_its_code_not_its_message(
    traced: httpx.AsyncClient, exported: InMemorySpanExporter
) -> None:
    body = await _post(traced, MERGE, {"survivor": "nobody", "merged": ["no-one"]})
    assert body["errors"][0]["extensions"]["code"] == "NOT_FOUND"
    (operation,) = _operations(exported)
    assert operation.name == "mutation Merge"
    assert operation.status.status_code is StatusCode.ERROR
    assert operation.status.description == "NOT_FOUND"
    assert not operation.events  # no exception recorded with its message


async def test_a_document_that_does_not_validate_and_a_request_refused_are_failed_spans(
    traced: httpx.AsyncClient, exported: InMemorySpanExporter
) -> None:
    body = await _post(traced, "{ profile(id: 1) { nothingHere } }", {})
    assert body["errors"][0]["extensions"]["code"] == "GRAPHQL_VALIDATION_FAILED"
    refused = await traced.post("/graphql", json={"query": "{ segments { id } }"}, headers={"authorization": ""})
    assert refused.status_code == 401
    invalid, unauthenticated = _operations(exported)
    assert invalid.name == "GraphQL Operation"  # never known which operation it was
    assert (invalid.status.status_code, invalid.status.description) == (StatusCode.ERROR, "GRAPHQL_VALIDATION_FAILED")
    assert (unauthenticated.status.status_code, unauthenticated.status.description) == (StatusCode.ERROR, "HTTP 401")
    assert not _children(exported, invalid) or all(c.name.startswith("store.") for c in _children(exported, invalid))


async def test_the_playground_page_is_not_an_operation(
    traced: httpx.AsyncClient, exported: InMemorySpanExporter
) -> None:
    page = await traced.get("/graphql", headers={"accept": "text/html"})
    assert page.status_code == 200 and "<html" in page.text.lower()
    assert _operations(exported) == []


async def test_a_subscription_is_a_span_under_the_handshakes_traceparent(
    sqlite_store: ProfileStore, exported: InMemorySpanExporter
) -> None:
    services = _services(sqlite_store, exported, auth=False)
    async with serving(services) as address:
        headers = {"traceparent": TRACEPARENT}
        subprotocols = [Subprotocol("graphql-transport-ws")]
        async with connect(f"ws://{address}/graphql", subprotocols=subprotocols, additional_headers=headers) as ws:
            await ws.send(json.dumps({"type": "connection_init", "payload": {}}))
            assert json.loads(await ws.recv())["type"] == "connection_ack"
            await ws.send(json.dumps({"id": "1", "type": "subscribe", "payload": {"query": SUBSCRIBE}}))
            await asyncio.sleep(0.2)
            await ws.send(json.dumps({"id": "1", "type": "complete"}))
            for _ in range(40):  # the operation's task ends once the server reads the complete
                if _operations(exported):
                    break
                await asyncio.sleep(0.05)
    (operation,) = _operations(exported)
    assert operation.name == "subscription Changes"
    assert operation.context is not None and operation.parent is not None
    assert format(operation.context.trace_id, "032x") == TRACE_ID
    assert operation.status.status_code is StatusCode.UNSET


# The application built as a server builds it (create_app with its lifespan, settings from the
# environment), asked one query in a fresh interpreter: what it imported and what store it wired.
SERVE_ONE_QUERY = textwrap.dedent(
    """
    import asyncio, json, sys
    if sys.argv[1] == "blocked":  # as if the extra were not installed
        sys.modules["opentelemetry"] = None
    import httpx
    from app.main import create_app
    from app.settings import Settings

    async def main():
        app = create_app(Settings(database_url=f"sqlite:///{sys.argv[2]}", seed_fixtures=False, auth=False))
        graphql = next(route.app for route in app.routes if getattr(route, "path", "") == "/graphql")
        async with app.router.lifespan_context(app):
            transport = httpx.ASGITransport(app=app)
            async with httpx.AsyncClient(transport=transport, base_url="http://test") as http:
                response = await http.post("/graphql", json={"query": "{ segments { id } }"},
                                           headers={"traceparent": sys.argv[3]})
            store = graphql._services().store
        imported = sorted(name for name, module in sys.modules.items()
                          if name.startswith("opentelemetry") and module is not None)
        print(json.dumps({"status": response.status_code, "body": response.json(),
                          "store": type(store).__name__, "tracer": graphql.tracer is not None,
                          "imported": imported}))

    asyncio.run(main())
    """
)


def _environment(**variables: str) -> dict[str, str]:
    base = {k: v for k, v in os.environ.items() if not k.startswith(("OTEL_", "CDP_"))}
    return {**base, "PYTHONPATH": str(ROOT), **variables}


@pytest.mark.parametrize(
    ("imports", "variables"),
    [
        pytest.param("allowed", {}, id="not-asked-for"),
        pytest.param("allowed", {"OTEL_TRACES_EXPORTER": "console", "OTEL_SDK_DISABLED": "true"}, id="sdk-disabled"),
        pytest.param("blocked", {"OTEL_TRACES_EXPORTER": "console"}, id="not-installed"),
    ],
)
def test_without_tracing_the_server_answers_with_nothing_of_opentelemetry_and_its_plain_store(
    tmp_path: Path, imports: str, variables: dict[str, str]
) -> None:
    done = subprocess.run(
        [sys.executable, "-c", SERVE_ONE_QUERY, imports, str(tmp_path / "cdp.sqlite3"), TRACEPARENT],
        env=_environment(**variables),
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    said = json.loads(done.stdout.strip().splitlines()[-1])
    assert (said["status"], said["body"]) == (200, {"data": {"segments": []}})
    assert said["store"] == "RetryingStore"  # the store open_store returns, not wrapped
    assert said["tracer"] is False
    assert said["imported"] == []
    if imports == "blocked":
        assert "OpenTelemetry is not installed: tracing is off" in done.stderr


def test_the_console_exporter_prints_the_servers_spans(tmp_path: Path) -> None:
    """The README's command: `OTEL_TRACES_EXPORTER=console python -m app serve`, service cdp-core."""
    port, output = free_port(), tmp_path / "output.txt"
    variables = {
        "CDP_DATABASE_URL": f"sqlite:///{tmp_path}/cdp.sqlite3",
        "CDP_SEED_FIXTURES": "false",
        "CDP_WORKERS": "1",
        "OTEL_TRACES_EXPORTER": "console",
    }
    with output.open("w") as written:
        server = start_server(_environment(**variables), port, output=written)
        try:
            token = (tmp_path / "dev-api-key").read_text().strip()
            response = httpx.post(
                f"http://127.0.0.1:{port}/graphql",
                json={"query": "query Segments { segments { id } }"},
                headers={"authorization": f"Bearer {token}", "traceparent": TRACEPARENT},
                timeout=10,
            )
            assert response.status_code == 200, response.text
        finally:
            server.terminate()
            server.wait(timeout=20)
    spans = _printed_spans(output.read_text())
    (operation,) = [span for span in spans if span["name"] == "query Segments"]
    assert operation["context"]["trace_id"] == f"0x{TRACE_ID}"
    assert operation["parent_id"] == f"0x{PARENT_ID}"
    assert operation["resource"]["attributes"]["service.name"] == "cdp-core"
    calls = [span for span in spans if span["parent_id"] == operation["context"]["span_id"]]
    # The key's check (cached afterwards) and the query's own read.
    assert [call["name"] for call in calls] == ["store.api_keys_version", "store.get_api_key", "store.list_segments"]
    assert {call["attributes"]["db.system"] for call in calls} == {"sqlite"}


def _printed_spans(text: str) -> list[dict[str, Any]]:
    """The console exporter's spans (indented JSON objects) among the server's log lines."""
    decoder, spans, at = json.JSONDecoder(), [], 0
    while (at := text.find('{\n    "name"', at)) >= 0:
        span, at = decoder.raw_decode(text, at)
        spans.append(span)
    return spans


@pytest.mark.parametrize(
    ("variables", "said"),
    [
        pytest.param(
            {"OTEL_TRACES_EXPORTER": "zipkin"},
            "bad setting OTEL_TRACES_EXPORTER: no trace exporter 'zipkin' is installed; installed: ",
            id="unknown-exporter",
        ),
        pytest.param(
            {"OTEL_EXPORTER_OTLP_ENDPOINT": "http://collector:4318", "OTEL_EXPORTER_OTLP_PROTOCOL": "http/json"},
            "bad setting OTEL_EXPORTER_OTLP_PROTOCOL='http/json': use http/protobuf or grpc",
            id="unknown-protocol",
        ),
        pytest.param(
            {"OTEL_TRACES_EXPORTER": "otlp", "OTEL_EXPORTER_OTLP_TRACES_PROTOCOL": "grpc"},
            "bad setting OTEL_TRACES_EXPORTER: no trace exporter 'otlp_proto_grpc' is installed (install ",
            id="grpc-not-installed",
        ),
    ],
)
def test_an_otel_setting_tracing_cannot_start_with_is_one_line(
    tmp_path: Path, variables: dict[str, str], said: str
) -> None:
    done = subprocess.run(
        [sys.executable, "-m", "app", "serve", "--host", "127.0.0.1", "--port", str(free_port())],
        cwd=tmp_path,
        env=_environment(CDP_DATABASE_URL=f"sqlite:///{tmp_path}/cdp.sqlite3", CDP_WORKERS="1", **variables),
        capture_output=True,
        text=True,
        timeout=60,
        stdin=subprocess.DEVNULL,
    )
    assert done.returncode == 2, done.stderr
    assert done.stderr.strip().splitlines() == [done.stderr.strip()]  # one line, no traceback
    assert done.stderr.startswith(said), done.stderr
    assert list(tmp_path.iterdir()) == []  # stopped before anything was opened
