"""Prometheus metrics beyond requests and events (tests/e2e/test_observability.py): merges and unmerges
that happened (not the ones refused), and open WebSocket connections and subscriptions, which go back
down when the client leaves. Counters are read as differences: other servers in this test process
have their own registries, but a difference also says exactly what one request did."""

from __future__ import annotations

import asyncio
import json
import re
from collections.abc import AsyncIterator

import httpx
import pytest
from websockets.asyncio.client import connect
from websockets.typing import Subprotocol

from app.arrival_order import ArrivalQueue
from app.bootstrap import Services
from app.services.ingestion import IngestionPolicy
from app.settings import Settings
from app.store.sqlite.store import SQLiteStore
from tests.e2e.conftest import GraphQL
from tests.server_process import serving

UPSERT = """mutation($input: ProfileInput!) { upsertProfile(input: $input) { id } }"""
MERGE = """mutation($survivor: ID!, $merged: [ID!]!) {
  mergeProfiles(survivorId: $survivor, mergedIds: $merged, reason: "same person") { merge { id } } }"""
UNMERGE = """mutation($id: ID!) { unmergeProfile(mergeId: $id) { merge { status } } }"""


def _sample(text: str, metric: str) -> float:
    """The value of one sample line, e.g. `cdp_merges_total{kind="merge"}`; 0 when not yet exposed."""
    for line in text.splitlines():
        name, _, value = line.rpartition(" ")
        if name == metric:
            return float(value)
    return 0.0


async def test_merges_and_unmerges_that_happened_are_counted(client: httpx.AsyncClient, gql: GraphQL) -> None:
    ids = [
        (await gql(UPSERT, {"input": {"identifiers": [{"type": "email", "value": email}]}}))["data"]["upsertProfile"]
        for email in ("emma@example.com", "e.martin@example.com")
    ]
    before = (await client.get("/metrics")).text
    refused = await gql(MERGE, {"survivor": ids[0]["id"], "merged": ["nobody"]})
    assert refused["errors"][0]["extensions"]["code"] == "NOT_FOUND"
    merge_id = (await gql(MERGE, {"survivor": ids[0]["id"], "merged": [ids[1]["id"]]}))["data"]["mergeProfiles"]
    assert (await gql(UNMERGE, {"id": merge_id["merge"]["id"]}))["data"]["unmergeProfile"]["merge"]["status"] == (
        "UNMERGED"
    )
    after = (await client.get("/metrics")).text
    for kind in ("merge", "unmerge"):
        metric = f'cdp_merges_total{{kind="{kind}"}}'
        assert _sample(after, metric) - _sample(before, metric) == 1, kind


@pytest.fixture
async def served(sqlite_store: SQLiteStore) -> AsyncIterator[str]:
    services = Services(
        settings=Settings(seed_fixtures=False, auth=False), store=sqlite_store, ingestion=IngestionPolicy()
    )
    async with serving(services) as address:
        yield address


async def _gauges(http: httpx.AsyncClient, until: tuple[float, float]) -> tuple[float, float]:
    """(connections, subscriptions), once they read `until` (the server registers and drops them
    asynchronously) or after two seconds."""
    for _ in range(40):
        text = (await http.get("/metrics")).text
        seen = (_sample(text, "cdp_websocket_connections"), _sample(text, "cdp_active_subscriptions"))
        if seen == until:
            break
        await asyncio.sleep(0.05)
    return seen


async def test_open_subscriptions_show_in_the_gauges_and_leave_them_when_the_client_goes(served: str) -> None:
    async with httpx.AsyncClient(base_url=f"http://{served}") as http:
        assert re.search(r"^# TYPE cdp_active_subscriptions gauge$", (await http.get("/metrics")).text, re.M)
        assert await _gauges(http, (0, 0)) == (0, 0)
        ws = await connect(f"ws://{served}/graphql", subprotocols=[Subprotocol("graphql-transport-ws")])
        try:
            await ws.send(json.dumps({"type": "connection_init", "payload": {}}))
            assert json.loads(await ws.recv())["type"] == "connection_ack"
            assert await _gauges(http, (1, 0)) == (1, 0)  # connected, nothing subscribed yet
            for n in ("1", "2"):
                payload = {"query": "subscription { segmentMembershipChanged { change } }"}
                await ws.send(json.dumps({"id": n, "type": "subscribe", "payload": payload}))
            assert await _gauges(http, (1, 2)) == (1, 2)
            await ws.send(json.dumps({"id": "1", "type": "complete"}))
            assert await _gauges(http, (1, 1)) == (1, 1)
        finally:
            await ws.close()
        assert await _gauges(http, (0, 0)) == (0, 0)


async def test_operation_names_chosen_by_clients_do_not_grow_the_metrics_for_ever(client: httpx.AsyncClient) -> None:
    """Each operation name was a new series kept for ever; past the first hundred, they count as "other"."""
    for n in range(120):
        response = await client.post("/graphql", json={"query": f"query Name{n} {{ segments {{ id }} }}"})
        assert response.status_code == 200 and "errors" not in response.json(), response.text
    names = set(re.findall(r'cdp_graphql_operation_seconds_count\{name="([^"]+)"', (await client.get("/metrics")).text))
    assert len(names) <= 101 and "other" in names and "Name0" in names, sorted(names)
    assert "Name119" not in names


async def test_requests_waiting_for_their_turn_are_exposed(
    client: httpx.AsyncClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The arrival queue's length (app/arrival_order.py), read when scraped: a scrape that waited behind
    another request sees the one still waiting behind it; an idle server has none. Turns without time
    to spare start one request each: these quick ones would otherwise start in one turn."""
    monkeypatch.setattr(ArrivalQueue, "turn_seconds", 0)
    answers = await asyncio.gather(client.get("/readyz"), client.get("/metrics"), client.get("/readyz"))
    idle = (await client.get("/metrics")).text

    assert "# TYPE cdp_http_requests_waiting gauge" in idle
    assert _sample(answers[1].text, "cdp_http_requests_waiting") == 1
    assert _sample(idle, "cdp_http_requests_waiting") == 0


async def test_event_types_sent_by_clients_are_labelled_unknown_unless_they_are_ours(
    client: httpx.AsyncClient, gql: GraphQL
) -> None:
    """/metrics answers without a key: a type sent as an email address was published as a label, and
    each new text made a series kept for good."""
    ingest = "mutation($events: [EventInput!]!) { ingestEvents(events: $events) { rejected } }"
    events = [
        {"messageId": f"m{n}", "type": text, "channel": "web", "timestamp": "2026-01-01T10:00:00Z",
         "identifiers": [{"type": "email", "value": "ada@example.com"}], "properties": {"url": "/"}}
        for n, text in enumerate(["jane.doe@example.com", "page_view", "x" * 20])
    ]  # fmt: skip
    assert (await gql(ingest, {"events": events}))["data"]["ingestEvents"]["rejected"] == 2
    text = (await client.get("/metrics")).text
    assert "jane.doe" not in text and "xxxxx" not in text
    assert re.search(r'cdp_events_ingested_total\{result="REJECTED",type="unknown"\} 2\.0', text), text
    assert re.search(r'cdp_events_ingested_total\{result="ACCEPTED",type="page_view"\} 1\.0', text), text


async def test_an_operation_name_is_a_label_only_when_the_document_holds_that_operation(
    client: httpx.AsyncClient,
) -> None:
    """Found by an audit: the request's operationName became the label of /metrics (readable without a
    key) whatever it was: an email with a newline, for a document that did not even parse."""
    for query, name in [
        ("query A { segments { id } ", "jane.doe@example.com\nfoo"),
        ("query A { segments { id } }", "B"),
    ]:
        await client.post("/graphql", json={"query": query, "operationName": name})
    await client.post("/graphql", json={"query": "query Real { segments { id } }", "operationName": "Real"})
    names = set(re.findall(r'cdp_graphql_operation_seconds_count\{name="([^"]+)"', (await client.get("/metrics")).text))
    assert "Real" in names and not any("@" in n or "\\n" in n or n == "B" for n in names), names
