"""The compiled executor (graphql_schema/compiled.py) answers exactly as graphql-core does.

Two servers over two empty stores, one compiling what it can (the default), one with
CDP_COMPILED_EXECUTION off, get the same requests: generated selections over IngestResult (aliases,
repeated and merged fields, __typename), generated variables (valid, invalid and replayed events,
values graphql-core must refuse while coercing, batches over the limit), keys with and without the
scope, and documents the compiler must leave to graphql-core. Status, data and errors (message, path,
code) must be the same; profile ids are random, so each is replaced by the order it first appeared in.
"""

from __future__ import annotations

import asyncio
import tempfile
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import httpx
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from app.bootstrap import Services
from app.domain.access import Scope
from app.main import create_app
from app.services.api_keys import create_key
from app.services.ingestion import IngestionPolicy
from app.settings import Settings
from app.store.sqlite.store import SQLiteStore

RESULT_FIELDS = ["messageId", "status", "profileId", "reason", "field", "__typename"]
COUNT_FIELDS = ["accepted", "duplicates", "rejected", "__typename"]
FALLBACK_SHAPES = [
    "{ ...Counts results { messageId } } fragment Counts on IngestResult { accepted rejected }",
    "{ accepted @include(if: true) results { status } }",
    "{ ... on IngestResult { duplicates } }",
]


def _selection(draw: st.DrawFn) -> str:
    """A selection over IngestResult: aliases, repeats (merged), __typename."""
    parts = []
    for _ in range(draw(st.integers(1, 5))):
        if draw(st.booleans()):
            name = draw(st.sampled_from(COUNT_FIELDS))
            alias = draw(st.sampled_from(["", "n: ", "count: ", "accepted: "]))
            parts.append(f"{alias}{name}" if not (alias == "accepted: " and name != "accepted") else name)
        else:
            inner = " ".join(draw(st.lists(st.sampled_from(RESULT_FIELDS), min_size=1, max_size=4)))
            alias = draw(st.sampled_from(["", "items: "]))
            parts.append(f"{alias}results {{ {inner} }}")
    return "{ " + " ".join(parts) + " }"


def _events(draw: st.DrawFn) -> list[Any]:
    events: list[Any] = []
    for _ in range(draw(st.integers(0, 6))):
        number = draw(st.integers(0, 12))  # repeats: duplicates
        email = draw(st.sampled_from(["ann@example.com", "bob@example.com", "not an email", "ANN@Example.com"]))
        event: dict[str, Any] = {
            "messageId": f"m-{number}",
            "type": draw(st.sampled_from(["page_view", "identify", "order_completed", "nope"])),
            "channel": draw(st.sampled_from(["web", "email", "mars"])),
            "timestamp": draw(st.sampled_from(["2026-11-01T10:00:00Z", "2026-11-02T10:00:00.123+02:00", "yesterday"])),
            "identifiers": [{"type": "email", "value": email}],
        }
        if draw(st.booleans()):
            event["properties"] = draw(st.sampled_from([{"url": "/a"}, {"total": 12.5, "currency": "EUR"}, None, 3]))
        broken = draw(st.sampled_from([None, None, None, "missing", "wrong type", "extra"]))
        if broken == "missing":
            del event["channel"]
        elif broken == "wrong type":
            event["identifiers"] = "ann@example.com"
        elif broken == "extra":
            event["colour"] = "blue"
        events.append(event)
    if draw(st.integers(0, 20)) == 0:
        events.append(None)  # a null item of [EventInput!]!
    return events


@st.composite
def requests(draw: st.DrawFn) -> tuple[str, str, Any]:
    shape = draw(st.sampled_from(["compiled"] * 6 + ["fallback"]))
    selection = _selection(draw) if shape == "compiled" else draw(st.sampled_from(FALLBACK_SHAPES))
    alias = draw(st.sampled_from(["", "sent: "]))
    document = f"mutation Send($events: [EventInput!]!) {{ {alias}ingestEvents(events: $events) {selection} }}"
    key = draw(st.sampled_from(["writer"] * 5 + ["reader", "none"]))
    variables: Any = {"events": _events(draw)}
    if draw(st.integers(0, 15)) == 0:
        variables = {}  # the variable not given
    return key, document, variables


class _Ids:
    """Profile ids by first appearance, per server."""

    def __init__(self) -> None:
        self.seen: dict[str, str] = {}

    def __call__(self, value: Any) -> Any:
        if isinstance(value, dict):
            return {k: (self._id(v) if k == "profileId" else self(v)) for k, v in value.items()}
        if isinstance(value, list):
            return [self(v) for v in value]
        return value

    def _id(self, value: Any) -> Any:
        if value is None:
            return None
        return self.seen.setdefault(value, f"profile-{len(self.seen)}")


class _Server:
    def __init__(self, client: httpx.AsyncClient, keys: dict[str, str]) -> None:
        self.client, self.keys, self.ids = client, keys, _Ids()

    async def answer(self, key: str, document: str, variables: Any) -> tuple[int, Any, Any]:
        headers = {"authorization": f"Bearer {self.keys[key]}"} if key in self.keys else {}
        response = await self.client.post("/graphql", json={"query": document, "variables": variables}, headers=headers)
        body = response.json()
        errors = [(e["message"], e.get("path"), e.get("extensions", {}).get("code")) for e in body.get("errors", [])]
        return response.status_code, self.ids(body.get("data")), errors


@asynccontextmanager
async def _server(root: Path, name: str, *, compiled: bool) -> AsyncIterator[_Server]:
    store = SQLiteStore(root / f"{name}.sqlite3")
    settings_ = Settings(seed_fixtures=False, compiled_execution=compiled)
    services = Services(settings=settings_, store=store, ingestion=IngestionPolicy(max_batch_size=5))
    keys = {
        "writer": (await create_key(store, "writer", [Scope.WRITE_EVENTS]))[1],
        "reader": (await create_key(store, "reader", [Scope.READ_PROFILES]))[1],
    }
    transport = httpx.ASGITransport(app=create_app(services=services))
    try:
        async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
            yield _Server(client, keys)
    finally:
        await store.close()


async def _compare(sequence: list[tuple[str, str, Any]], root: Path) -> None:
    async with _server(root, "compiled", compiled=True) as fast, _server(root, "core", compiled=False) as core:
        for key, document, variables in sequence:
            assert await fast.answer(key, document, variables) == await core.answer(key, document, variables)


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(requests(), min_size=1, max_size=5))
@example(
    [
        (
            "writer",
            "mutation Send($events: [EventInput!]!) { ingestEvents(events: $events) "
            "{ accepted a: accepted __typename results { messageId status } items: results { profileId } "
            "results { reason field __typename } } }",
            {
                "events": [
                    {
                        "messageId": "m-1",
                        "type": "page_view",
                        "channel": "web",
                        "timestamp": "2026-11-01T10:00:00Z",
                        "identifiers": [{"type": "email", "value": "ann@example.com"}],
                    },
                    {
                        "messageId": "m-2",
                        "type": "page_view",
                        "channel": "web",
                        "timestamp": "2026-11-01T10:00:00Z",
                        "identifiers": [{"type": "email", "value": "not an email"}],
                    },
                ]
            },
        )
    ]
)
def test_the_compiled_executor_answers_as_graphql_core(sequence: list[tuple[str, str, Any]]) -> None:
    with tempfile.TemporaryDirectory() as root:
        asyncio.run(_compare(sequence, Path(root)))


async def test_the_executor_that_ran_is_counted(tmp_path: Path) -> None:
    """A plain ingest document is compiled; one with a fragment falls back to graphql-core, visibly."""
    async with _server(tmp_path, "counted", compiled=True) as server:
        plain = "mutation { ingestEvents(events: []) { accepted } }"  # a literal: graphql-core
        variable = "mutation M($e: [EventInput!]!) { ingestEvents(events: $e) { accepted } }"
        for document, variables in ((plain, {}), (variable, {"e": []}), (variable, {"e": []})):
            status, data, errors = await server.answer("writer", document, variables)
            assert (status, errors) == (200, []) and data == {"ingestEvents": {"accepted": 0}}
        metrics = (await server.client.get("/metrics")).text
    assert 'cdp_graphql_executions_total{executor="compiled"} 2.0' in metrics
    assert 'cdp_graphql_executions_total{executor="graphql-core"} 1.0' in metrics
