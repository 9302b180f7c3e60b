"""What operators see: Prometheus metrics that move with the traffic, and JSON log lines that carry
the request's id (taken from the client when sane, echoed back)."""

from __future__ import annotations

import io
import json
import logging
import re
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import httpx

from app.bootstrap import Services
from app.main import create_app
from app.observability.logs import JsonFormatter
from app.services.ingestion import IngestionPolicy
from app.settings import Settings
from app.store.sqlite.store import SQLiteStore
from tests.e2e.conftest import GraphQL

INGEST = """mutation { ingestEvents(events: [
  {messageId: "m-1", type: "page_view", channel: "web", timestamp: "2026-11-01T10:00:00Z",
   identifiers: [{type: "email", value: "ann@example.com"}], properties: {url: "/"}},
  {messageId: "m-2", type: "warp", channel: "web", timestamp: "2026-11-01T10:00:00Z",
   identifiers: [{type: "email", value: "ann@example.com"}], properties: {}}]) { accepted } }"""
SEGMENT = """mutation { createSegment(input: {name: "Anyone", condition: {hasIdentifier: {type: "email"}}}) {
  members } }"""


def _value(text: str, metric: str, **labels: str) -> float:
    for line in text.splitlines():
        if line.startswith(metric + "{") and all(f'{k}="{v}"' in line for k, v in labels.items()):
            return float(line.rsplit(" ", 1)[1])
    return 0.0


async def test_metrics_move_with_the_traffic(client: httpx.AsyncClient, gql: GraphQL) -> None:
    before = (await client.get("/metrics")).text
    await gql(INGEST)
    await gql(SEGMENT)
    await gql("query Lookup { segments { id } }")
    after = await client.get("/metrics")
    assert after.status_code == 200 and after.headers["content-type"].startswith("text/plain")
    text = after.text

    def moved(metric: str, **labels: str) -> float:
        return _value(text, metric, **labels) - _value(before, metric, **labels)

    assert moved("cdp_events_ingested_total", type="page_view", result="ACCEPTED") == 1
    assert moved("cdp_events_ingested_total", type="unknown", result="REJECTED") == 1  # not a type of ours
    assert moved("cdp_segment_membership_changes_total", change="ENTERED") == 1
    assert moved("cdp_graphql_operation_seconds_count", type="query", name="Lookup") == 1
    assert moved("cdp_http_requests_total", method="POST", route="/graphql", status="200") == 3
    assert re.search(r"^cdp_active_subscriptions 0\.0$", text, re.M)


async def test_a_batch_counts_every_event_it_answers(client: httpx.AsyncClient, gql: GraphQL) -> None:
    """A batch's results are counted and made into its answer on a worker thread (more than a few
    events): every event is still counted once, by its own result, and answered in order."""
    events = [
        {
            "messageId": f"batch-{n}",
            "type": "warp" if n % 6 == 0 else "page_view",
            "channel": "web",
            "timestamp": "2026-11-01T10:00:00Z",
            "identifiers": [{"type": "email", "value": f"b{n}@example.com"}],
            "properties": {"url": "/"},
        }
        for n in range(30)
    ]
    batch = """mutation($events: [EventInput!]!) { ingestEvents(events: $events) {
      accepted rejected results { messageId status } } }"""
    before = (await client.get("/metrics")).text
    answer = (await gql(batch, {"events": events}))["data"]["ingestEvents"]
    after = (await client.get("/metrics")).text

    def moved(**labels: str) -> float:
        return _value(after, "cdp_events_ingested_total", **labels) - _value(
            before, "cdp_events_ingested_total", **labels
        )

    assert (answer["accepted"], answer["rejected"]) == (25, 5)
    assert [r["messageId"] for r in answer["results"]] == [e["messageId"] for e in events]
    assert [r["status"] for r in answer["results"]] == ["REJECTED" if n % 6 == 0 else "ACCEPTED" for n in range(30)]
    assert moved(type="page_view", result="ACCEPTED") == 25
    assert moved(type="unknown", result="REJECTED") == 5


@contextmanager
def _access_lines(level: int) -> Iterator[list[dict[str, Any]]]:
    """The access log's lines at `level` and above written in the block, as JSON objects (on exit)."""
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(JsonFormatter())
    access = logging.getLogger("cdp.access")
    access.addHandler(handler)
    before = access.level
    access.setLevel(level)
    lines: list[dict[str, Any]] = []
    try:
        yield lines
    finally:
        access.removeHandler(handler)
        access.setLevel(before)
        lines += [json.loads(line) for line in stream.getvalue().splitlines()]


async def test_log_lines_carry_the_request_id(client: httpx.AsyncClient) -> None:
    with _access_lines(logging.DEBUG) as lines:
        given = await client.get("/healthz", headers={"x-request-id": "abc-123"})
        made = await client.get("/healthz", headers={"x-request-id": "no spaces or\nnewlines please"})
        asked = await client.post("/graphql", json={"query": "{ segments { id } }"}, headers={"x-request-id": "q-1"})
    assert given.headers["x-request-id"] == "abc-123"
    assert re.fullmatch(r"[0-9a-f]{16}", made.headers["x-request-id"])
    assert [(line["requestId"], line["path"], line["status"], line["level"]) for line in lines] == [
        ("abc-123", "/healthz", 200, "debug"),  # probes answered well: at DEBUG, not to flood the log
        (made.headers["x-request-id"], "/healthz", 200, "debug"),
        ("q-1", "/graphql", asked.status_code, "info"),
    ]
    assert all(line["durationMs"] >= 0 for line in lines)


async def test_a_probe_that_fails_is_logged_at_info(sqlite_store: SQLiteStore) -> None:
    services = Services(settings=Settings(seed_fixtures=False), store=sqlite_store, ingestion=IngestionPolicy())
    transport = httpx.ASGITransport(app=create_app(services=services))
    with _access_lines(logging.INFO) as lines:
        async with httpx.AsyncClient(transport=transport, base_url="http://t") as http:
            assert (await http.get("/readyz")).status_code == 200
            await sqlite_store.close()
            assert (await http.get("/readyz")).status_code == 503
    assert [(line["path"], line["status"], line["level"]) for line in lines] == [("/readyz", 503, "info")]


async def test_readyz_says_when_the_store_cannot_answer(sqlite_store: SQLiteStore) -> None:
    services = Services(settings=Settings(seed_fixtures=False), store=sqlite_store, ingestion=IngestionPolicy())
    transport = httpx.ASGITransport(app=create_app(services=services))
    async with httpx.AsyncClient(transport=transport, base_url="http://t") as http:
        assert (await http.get("/readyz")).json() == {"status": "ready", "store": "sqlite"}
        await sqlite_store.close()  # the database is gone from under the server
        down = await http.get("/readyz")
        assert down.status_code == 503 and down.json()["status"] == "unavailable"
        assert (await http.get("/healthz")).status_code == 200  # the process itself is fine
