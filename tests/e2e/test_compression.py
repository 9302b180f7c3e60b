"""Response compression over a real socket (issue 16 item 6): brotli or gzip as the client asks, for
answers of 1 KB or more and the playground's assets; nothing encoded for a client that does not ask."""

from __future__ import annotations

import gzip
import json
from collections.abc import AsyncIterator
from typing import Any

import brotli
import httpx
import pytest
from websockets.asyncio.client import connect
from websockets.typing import Subprotocol

from app.bootstrap import Services
from app.compression import preferred_coding
from app.domain.access import Scope
from app.services.api_keys import create_key
from app.services.ingestion import IngestionPolicy
from app.settings import Settings
from app.store.sqlite.store import SQLiteStore
from graphql_schema.playground import ASSETS_PATH
from tests.server_process import serving

LARGE = "{ __schema { types { name description } } }"  # several KB of JSON
SMALL = "{ __typename }"
SCRIPT = f"{ASSETS_PATH}/graphiql.min.js"


@pytest.fixture
async def server(sqlite_store: SQLiteStore) -> AsyncIterator[tuple[str, str]]:
    _, token = await create_key(sqlite_store, "compression", list(Scope))
    services = Services(settings=Settings(seed_fixtures=False), store=sqlite_store, ingestion=IngestionPolicy())
    async with serving(services) as host:
        yield f"http://{host}", token


async def _raw(url: str, token: str, method: str, path: str, accept: str | None, **kw: Any) -> httpx.Response:
    """The response with its body as sent on the wire (httpx would otherwise decode it)."""
    async with httpx.AsyncClient(base_url=url, headers={"authorization": f"Bearer {token}"}) as http:
        if accept is None:
            del http.headers["accept-encoding"]
        else:
            http.headers["accept-encoding"] = accept
        async with http.stream(method, path, **kw) as response:
            response._content = b"".join([chunk async for chunk in response.aiter_raw()])
            return response


def _decoded(response: httpx.Response) -> bytes:
    coding = response.headers.get("content-encoding")
    if coding == "br":
        return bytes(brotli.decompress(response.content))
    if coding == "gzip":
        return gzip.decompress(response.content)
    assert coding is None
    return response.content


@pytest.mark.parametrize("accept", ["br", "gzip", "gzip, deflate, br", "br;q=0.5, gzip"])
async def test_a_large_answer_comes_encoded_as_asked_and_decodes_to_the_plain_one(
    server: tuple[str, str], accept: str
) -> None:
    url, token = server
    plain = await _raw(url, token, "POST", "/graphql", None, json={"query": LARGE})
    encoded = await _raw(url, token, "POST", "/graphql", accept, json={"query": LARGE})
    assert plain.status_code == encoded.status_code == 200
    assert "content-encoding" not in plain.headers and len(plain.content) > 4096
    assert encoded.headers["content-encoding"] == preferred_coding(accept.encode())
    assert "accept-encoding" in encoded.headers["vary"].lower()
    assert int(encoded.headers["content-length"]) == len(encoded.content) < len(plain.content) / 2
    assert _decoded(encoded) == plain.content


@pytest.mark.parametrize("accept", ["br", "gzip"])
async def test_a_batch_answer_of_tens_of_kilobytes_is_compressed_whole(server: tuple[str, str], accept: str) -> None:
    """An answer between 32 and 128 KiB (a 500-event batch's results) is compressed off the event loop
    in one piece: it decodes to every result, in order."""
    url, token = server
    events = [
        {
            "messageId": f"{accept}-{n}",
            "type": "page_view",
            "channel": "web",
            "timestamp": "2026-11-01T10:00:00Z",
            "identifiers": [{"type": "email", "value": f"z{n}@example.com"}],
            "properties": {"url": "/"},
        }
        for n in range(500)
    ]
    query = "mutation($e: [EventInput!]!) { ingestEvents(events: $e) { results { messageId status profileId } } }"
    encoded = await _raw(url, token, "POST", "/graphql", accept, json={"query": query, "variables": {"e": events}})
    assert encoded.status_code == 200 and encoded.headers["content-encoding"] == accept
    body = _decoded(encoded)
    assert 32 * 1024 <= len(body) < 128 * 1024
    results = json.loads(body)["data"]["ingestEvents"]["results"]
    assert [(r["messageId"], r["status"]) for r in results] == [(e["messageId"], "ACCEPTED") for e in events]


async def test_brotli_is_chosen_when_the_client_offers_both(server: tuple[str, str]) -> None:
    url, token = server
    response = await _raw(url, token, "POST", "/graphql", "gzip, deflate, br", json={"query": LARGE})
    assert response.headers["content-encoding"] == "br"


@pytest.mark.parametrize("accept", [None, "identity", "deflate", "br;q=0, gzip;q=0"])
async def test_nothing_is_encoded_for_a_client_that_does_not_ask(server: tuple[str, str], accept: str | None) -> None:
    url, token = server
    response = await _raw(url, token, "POST", "/graphql", accept, json={"query": LARGE})
    assert response.status_code == 200
    assert "content-encoding" not in response.headers
    assert int(response.headers["content-length"]) == len(response.content) > 4096
    assert response.json()["data"]["__schema"]["types"]


async def test_an_answer_under_a_kilobyte_is_sent_as_it_is(server: tuple[str, str]) -> None:
    url, token = server
    response = await _raw(url, token, "POST", "/graphql", "br, gzip", json={"query": SMALL})
    assert "content-encoding" not in response.headers
    assert response.json() == {"data": {"__typename": "Query"}}


@pytest.mark.parametrize("accept", ["br", "gzip"])
async def test_the_playground_script_streams_compressed(server: tuple[str, str], accept: str) -> None:
    url, token = server
    plain = await _raw(url, token, "GET", SCRIPT, None)
    encoded = await _raw(url, token, "GET", SCRIPT, accept)
    assert int(plain.headers["content-length"]) == len(plain.content) > 900_000
    assert encoded.headers["content-encoding"] == accept
    assert "content-length" not in encoded.headers  # sent as it is compressed, chunk by chunk
    assert len(encoded.content) < len(plain.content) / 2
    assert _decoded(encoded) == plain.content


@pytest.mark.parametrize("accept", ["br", "gzip"])
async def test_metrics_still_read_when_compressed(server: tuple[str, str], accept: str) -> None:
    url, token = server
    response = await _raw(url, token, "GET", "/metrics", accept)
    assert response.status_code == 200
    assert response.headers["content-encoding"] == accept
    assert b"# TYPE cdp_http_requests_total counter" in _decoded(response)


async def test_a_websocket_handshake_offering_encodings_is_untouched(server: tuple[str, str]) -> None:
    url, token = server
    headers = {"accept-encoding": "br, gzip"}
    async with connect(
        url.replace("http", "ws") + "/graphql",
        subprotocols=[Subprotocol("graphql-transport-ws")],
        additional_headers=headers,
        compression=None,
    ) as socket:
        await socket.send(json.dumps({"type": "connection_init", "payload": {"Authorization": f"Bearer {token}"}}))
        assert '"connection_ack"' in str(await socket.recv())


@pytest.mark.parametrize(
    ("accept", "chosen"),
    [
        (b"gzip", "gzip"),
        (b"br", "br"),
        (b"gzip;q=1.0, br;q=0.9", "gzip"),
        (b"*", "br"),
        (b"*;q=0.5, gzip", "gzip"),
        (b"br;q=0, *", "gzip"),
        (b"identity", None),
        (b"gzip;q=zero", None),
        (b"", None),
    ],
)
def test_the_coding_follows_the_clients_weights(accept: bytes, chosen: str | None) -> None:
    assert preferred_coding(accept) == chosen
