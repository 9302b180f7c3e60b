"""Hostile queries and GraphQL over HTTP: each limit refuses its kind of hostile document before
execution with LIMIT_EXCEEDED; HTTP answers as the GraphQL-over-HTTP spec says."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from strawberry.extensions.validation_cache import _get_validate_cache
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed
from websockets.typing import Subprotocol

from app.bootstrap import Services
from app.main import create_app
from app.services.ingestion import IngestionPolicy
from app.settings import Settings
from app.store.sqlite.store import SQLiteStore
from graphql_schema.document_cache import DOCUMENTS_CACHED
from tests.server_process import running_server


def _client(store: SQLiteStore, **settings: Any) -> httpx.AsyncClient:
    services = Services(
        settings=Settings(seed_fixtures=False, auth=False, **settings), store=store, ingestion=IngestionPolicy()
    )
    return httpx.AsyncClient(transport=httpx.ASGITransport(app=create_app(services=services)), base_url="http://t")


@pytest.fixture
async def client(sqlite_store: SQLiteStore) -> AsyncIterator[httpx.AsyncClient]:
    async with _client(sqlite_store) as http:
        yield http


async def _codes(client: httpx.AsyncClient, query: str) -> tuple[set[str], str]:
    response = await client.post("/graphql", json={"query": query})
    errors = response.json().get("errors", [])
    return {e["extensions"]["code"] for e in errors}, (errors[0]["message"] if errors else "")


async def test_deep_nesting_is_refused(sqlite_store: SQLiteStore) -> None:
    deep = "{ segments { members { edges { node { interactions { edges { node { type } } } } } } } }"
    async with _client(sqlite_store, max_query_depth=5) as client:
        codes, message = await _codes(client, deep)
    assert codes == {"LIMIT_EXCEEDED"} and "depth" in message


async def test_a_thousand_aliases_are_refused(sqlite_store: SQLiteStore) -> None:
    aliases = "{ " + " ".join(f"a{n}: segments {{ id }}" for n in range(1000)) + " }"
    async with _client(sqlite_store, max_query_tokens=100_000) as client:  # so the alias limit is what refuses
        codes, message = await _codes(client, aliases)
    assert codes == {"LIMIT_EXCEEDED"} and "1000 aliases" in message


async def test_a_flood_of_tokens_is_refused(client: httpx.AsyncClient) -> None:
    codes, message = await _codes(client, "{ " + "segments { id } " * 1000 + "}")
    assert codes == {"LIMIT_EXCEEDED"} and "tokens" in message


async def test_huge_pages_are_refused_before_execution(client: httpx.AsyncClient) -> None:
    nested = """{ profiles(first: 100) { edges { node { interactions(first: 100) { edges { node {
      type channel timestamp } } } } } } }"""
    codes, message = await _codes(client, nested)
    assert codes == {"LIMIT_EXCEEDED"} and "query cost" in message
    codes, message = await _codes(client, "{ profiles(first: 100000) { edges { cursor } } }")
    assert codes == {"LIMIT_EXCEEDED"} and "query cost" in message
    codes, message = await _codes(client, "{ profiles(first: 500) { edges { cursor } } }")  # cheap, still too big
    assert codes == {"BAD_USER_INPUT"} and "between 1 and 100" in message


async def test_fragment_cycles_are_refused(client: httpx.AsyncClient) -> None:
    cycle = "{ segments { ...A } } fragment A on Segment { id ...B } fragment B on Segment { name ...A }"
    codes, message = await _codes(client, cycle)
    assert codes == {"GRAPHQL_VALIDATION_FAILED"} and "Cannot spread fragment" in message


async def test_batched_operations_are_refused(client: httpx.AsyncClient) -> None:
    batch = json.dumps([{"query": "{ segments { id } }"}] * 50)
    response = await client.post("/graphql", content=batch, headers={"content-type": "application/json"})
    assert response.status_code == 400 and "Batching is not enabled" in response.text


async def test_production_hides_the_schema(sqlite_store: SQLiteStore) -> None:
    async with _client(sqlite_store, environment="production") as client:
        codes, message = await _codes(client, "{ __schema { types { name } } }")
        assert codes == {"GRAPHQL_VALIDATION_FAILED"} and "introspection" in message.lower()
        codes, message = await _codes(client, "{ segmnts { id } }")
        assert "Did you mean" not in message
    async with _client(sqlite_store) as client:  # development: on, with suggestions
        assert (await _codes(client, "{ __schema { queryType { name } } }"))[0] == set()
        assert "Did you mean" in (await _codes(client, "{ segmnts { id } }"))[1]


async def test_bodies_over_the_limit_get_413(sqlite_store: SQLiteStore) -> None:
    big = json.dumps({"query": "{ segments { id } }", "variables": {"pad": "x" * 5000}})
    async with _client(sqlite_store, max_body_bytes=4096) as client:
        assert (
            await client.post("/graphql", content=big, headers={"content-type": "application/json"})
        ).status_code == 413

        async def chunks() -> AsyncIterator[bytes]:  # no Content-Length: counted as it arrives
            for start in range(0, len(big), 1000):
                yield big[start : start + 1000].encode()

        streamed = await client.post("/graphql", content=chunks(), headers={"content-type": "application/json"})
        assert streamed.status_code == 413 and "4,096 bytes" in streamed.text


async def test_graphql_over_http(client: httpx.AsyncClient) -> None:
    mutation = 'mutation { deleteSegment(id: "x") }'
    over_get = await client.get("/graphql", params={"query": mutation}, headers={"accept": "application/json"})
    assert over_get.status_code == 405 and over_get.headers["allow"] == "POST"
    assert (await client.get("/graphql", params={"query": "{ segments { id } }"})).status_code == 200
    xml = await client.post("/graphql", json={"query": "{ segments { id } }"}, headers={"accept": "application/xml"})
    assert xml.status_code == 406
    spec = await client.post(
        "/graphql", json={"query": "{ segments { id } }"}, headers={"accept": "application/graphql-response+json"}
    )
    assert spec.status_code == 200 and spec.headers["content-type"] == "application/graphql-response+json"
    plain = await client.post("/graphql", json={"query": "{ segments { id } }"})
    assert plain.headers["content-type"].startswith("application/json")


async def test_websocket_init_timeout_and_subscription_cap(tmp_path: Path) -> None:
    env = {
        "CDP_DATABASE_URL": f"sqlite:///{tmp_path}/cdp.sqlite3",
        "CDP_SEED_FIXTURES": "false",
        "CDP_AUTH": "off",
        "CDP_WS_INIT_TIMEOUT_SECONDS": "0.5",
        "CDP_MAX_SUBSCRIPTIONS_PER_CONNECTION": "2",
    }
    protocol = [Subprotocol("graphql-transport-ws")]
    subscription = {"query": "subscription { segmentMembershipChanged { change } }"}
    with running_server(env) as url:
        socket_url = url.replace("http", "ws") + "/graphql"
        async with connect(socket_url, subprotocols=protocol) as ws:
            with pytest.raises(ConnectionClosed) as silent:
                await asyncio.wait_for(ws.recv(), 5)  # never sends connection_init
        assert silent.value.rcvd is not None and silent.value.rcvd.code == 4408

        async with connect(socket_url, subprotocols=protocol) as ws:
            await ws.send(json.dumps({"type": "connection_init", "payload": {}}))
            assert json.loads(await ws.recv())["type"] == "connection_ack"
            for number in range(3):
                await ws.send(json.dumps({"id": str(number), "type": "subscribe", "payload": subscription}))
            refused = json.loads(await asyncio.wait_for(ws.recv(), 5))
        assert refused["id"] == "2" and refused["type"] == "error", refused


async def test_a_repeated_document_is_validated_once_and_refused_every_time(client: httpx.AsyncClient) -> None:
    # The validation cache is keyed by the rule classes: limiters rebuilt per request would never hit it.
    validations = _get_validate_cache(DOCUMENTS_CACHED)
    costly = "{ profiles(first: 100000) { edges { cursor } } } # sent only by this test"
    for copy in range(3):
        misses = validations.cache_info().misses
        codes, message = await _codes(client, costly)
        assert codes == {"LIMIT_EXCEEDED"} and "query cost" in message
        assert validations.cache_info().misses == misses + (1 if copy == 0 else 0)
    for _ in range(2):
        misses = validations.cache_info().misses
        codes, _message = await _codes(client, "{ profile(id: ")  # a syntax error each time, nothing to validate
        assert codes == {"GRAPHQL_PARSE_FAILED"}
        assert validations.cache_info().misses == misses
