"""The edges of /graphql under hostile or broken clients (issue 12): the key is checked before a request
is read (item 2), authentication switched off is refused beyond loopback whatever the server was told
(item 11), malformed requests and frames get a GraphQL error with a code, never `500 text/plain` or a
dropped socket (item 14), and one message-size limit holds for HTTP and WebSocket (item 4)."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import json
import re
import socket
import sys
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager, contextmanager, suppress
from pathlib import Path
from typing import Any

import httpx
import pytest
import uvicorn
from starlette.responses import Response
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed, InvalidStatus
from websockets.typing import Subprotocol

from app import bounded_http
from app.bootstrap import Services
from app.domain.access import Scope
from app.main import create_app
from app.services import api_keys
from app.services.ingestion import IngestionPolicy, ingest_events
from app.settings import Settings
from app.store.sqlite.store import SQLiteStore
from graphql_schema.http import GraphQLApp
from tests.builders import event
from tests.interleaving import StandIn
from tests.server_process import free_port, running_server, serving, start_server

GRAPHQL_RESPONSE = "application/graphql-response+json"
TRANSPORT_WS = [Subprotocol("graphql-transport-ws")]
PROFILES = "{ profiles(first: 1) { edges { cursor } } }"


def _services(store: SQLiteStore, **settings: Any) -> Services:
    return Services(settings=Settings(seed_fixtures=False, **settings), store=store, ingestion=IngestionPolicy())


def _client(services: Services, key: str | None = None, *, base_url: str = "http://127.0.0.1") -> httpx.AsyncClient:
    """The application in this process; `base_url`'s host is the local address the request arrives on
    (what an ASGI server reports as scope["server"])."""
    headers = {"authorization": f"Bearer {key}"} if key else {}
    transport = httpx.ASGITransport(app=create_app(services=services))
    return httpx.AsyncClient(transport=transport, base_url=base_url, headers=headers)


@pytest.fixture
async def key(sqlite_store: SQLiteStore) -> str:
    _, token = await api_keys.create_key(sqlite_store, "edge tests", list(Scope))
    return token


def _error(response: httpx.Response) -> dict[str, Any]:
    """The one GraphQL error of a refused request, after checking the response is GraphQL-shaped JSON."""
    assert response.headers["content-type"].startswith(("application/json", GRAPHQL_RESPONSE)), response.text
    body = response.json()
    assert isinstance(body, dict) and "data" not in body, body
    [error] = body["errors"]
    assert error["message"] and error["extensions"]["code"], error
    return dict(error)


# -- Item 2: authentication before any work ------------------------------------------------------------


class WatchedBody:
    """A request body that records whether the server ever asked for it."""

    def __init__(self, content: bytes) -> None:
        self.content = content
        self.read = False

    async def __aiter__(self) -> AsyncIterator[bytes]:
        self.read = True
        yield self.content


REFUSED_CREDENTIALS = [
    pytest.param(None, "send an API key", id="no key"),
    pytest.param("Basic dXNlcjpwYXNz", "Bearer <key>", id="not a bearer token"),
    pytest.param("Bearer hunter2", "expected cdp_", id="not a key of this server"),
    pytest.param("Bearer {wrong secret}", "unknown API key", id="a wrong secret"),
    pytest.param("Bearer {revoked}", "revoked", id="a revoked key"),
]


@pytest.mark.parametrize(("credentials", "reason"), REFUSED_CREDENTIALS)
async def test_a_request_without_a_valid_key_is_refused_with_401_before_its_body_is_read(
    sqlite_store: SQLiteStore, credentials: str | None, reason: str
) -> None:
    revoked, token = await api_keys.create_key(sqlite_store, "revoked", [Scope.READ_PROFILES])
    await api_keys.revoke_key(sqlite_store, revoked.id)
    _, valid = await api_keys.create_key(sqlite_store, "valid", [Scope.READ_PROFILES])
    wrong = valid[:-4] + ("AAAA" if not valid.endswith("AAAA") else "BBBB")
    headers = {"content-type": "application/json"}
    if credentials:
        headers["authorization"] = credentials.replace("{wrong secret}", wrong).replace("{revoked}", token)
    body = WatchedBody(json.dumps({"query": PROFILES}).encode())
    async with _client(_services(sqlite_store)) as client:
        response = await client.post("/graphql", content=body, headers=headers)
    assert response.status_code == 401
    assert response.headers["www-authenticate"].startswith("Bearer")
    error = _error(response)
    assert error["extensions"]["code"] == "UNAUTHENTICATED" and reason in error["message"]
    assert not body.read


KEYLESS_WORK = [
    pytest.param({"query": PROFILES}, id="a query"),
    pytest.param({"query": "{ __schema { types { name } } }"}, id="introspection"),
    pytest.param({"query": "{ __typename }"}, id="a field without a scope"),
    pytest.param({"query": "{ profiles(first: "}, id="a syntax error"),
    pytest.param({"query": "{ __typename }", "variables": {"v": "x" * 1_000_000}}, id="a 1 MB string"),
    pytest.param({"query": 'mutation { deleteSegment(id: "s") }'}, id="a mutation"),
]


@pytest.mark.parametrize("payload", KEYLESS_WORK)
async def test_an_anonymous_document_is_never_parsed(sqlite_store: SQLiteStore, payload: dict[str, Any]) -> None:
    body = WatchedBody(json.dumps(payload).encode())
    async with _client(_services(sqlite_store)) as client:
        response = await client.post("/graphql", content=body, headers={"content-type": "application/json"})
    assert response.status_code == 401 and _error(response)["extensions"]["code"] == "UNAUTHENTICATED"
    assert not body.read


ANONYMOUS_GETS = [
    pytest.param("/graphql", {"accept": "text/html"}, 200, id="the playground page"),
    pytest.param("/healthz", {}, 200, id="the liveness probe"),
    pytest.param("/readyz", {}, 200, id="the readiness probe"),
    pytest.param("/metrics", {}, 200, id="the metrics"),
    pytest.param("/graphql?query=%7B__typename%7D", {"accept": "application/json"}, 401, id="a query over GET"),
    pytest.param("/graphql?query=%7B__schema%7BqueryType%7Bname%7D%7D%7D", {}, 401, id="introspection over GET"),
    pytest.param("/graphql?query=%7B", {"accept": "text/html"}, 401, id="a syntax error over GET"),
]


@pytest.mark.parametrize(("path", "headers", "status"), ANONYMOUS_GETS)
async def test_an_anonymous_client_reaches_the_playground_page_and_the_probes_only(
    sqlite_store: SQLiteStore, path: str, headers: dict[str, str], status: int
) -> None:
    async with _client(_services(sqlite_store)) as client:
        response = await client.get(path, headers=headers)
    assert response.status_code == status, response.text
    if status == 401:
        assert _error(response)["extensions"]["code"] == "UNAUTHENTICATED"


async def test_no_other_site_may_frame_the_playground(sqlite_store: SQLiteStore) -> None:
    """Found by an audit: the page keeps the key in the browser's storage, and any site could show it
    in a frame (clickjacking)."""
    async with _client(_services(sqlite_store)) as client:
        response = await client.get("/graphql", headers={"accept": "text/html"})
    assert response.status_code == 200 and response.headers["content-type"].startswith("text/html")
    assert response.headers["x-frame-options"] == "DENY"
    policy = dict(directive.split(" ", 1) for directive in response.headers["content-security-policy"].split("; "))
    assert policy["frame-ancestors"] == "'none'" and policy["default-src"] == "'none'"
    [inline] = re.findall(r"<script>(.*?)</script>", response.text, re.DOTALL)  # its own, by its hash only
    digest = base64.b64encode(hashlib.sha256(inline.encode()).digest()).decode()
    assert policy["script-src"] == f"'self' 'sha256-{digest}'" and policy["connect-src"] == "'self'"


async def test_with_authentication_off_a_request_needs_no_key(sqlite_store: SQLiteStore) -> None:
    async with _client(_services(sqlite_store, auth=False)) as client:
        response = await client.post("/graphql", json={"query": "{ __typename }"})
    assert response.status_code == 200 and response.json() == {"data": {"__typename": "Query"}}


async def test_the_key_is_looked_up_once_per_request_and_then_remembered(sqlite_store: SQLiteStore, key: str) -> None:
    statements: list[str] = []
    sqlite_store.trace(statements.append)
    async with _client(_services(sqlite_store), key) as client:
        for key_reads in (1, 0):  # the second request: only the keys version (app/services/key_cache.py)
            statements.clear()
            response = await client.post("/graphql", json={"query": PROFILES})
            assert response.status_code == 200 and "errors" not in response.json(), response.text
            assert len([s for s in statements if "FROM api_keys WHERE" in s]) == key_reads, statements
            assert len([s for s in statements if "FROM api_keys_version" in s]) == 1, statements


@asynccontextmanager
async def _socket(services: Services) -> AsyncIterator[ClientConnection]:
    async with serving(services) as address, connect(f"ws://{address}/graphql", subprotocols=TRANSPORT_WS) as ws:
        yield ws


async def _close_of(ws: ClientConnection) -> tuple[int | None, str]:
    """How the server ended the connection: (close code, reason); (None, "") when it dropped the
    connection without a close frame. Messages before the close (an ack, a pong) are skipped."""
    with pytest.raises(ConnectionClosed) as closed:
        async with asyncio.timeout(20):  # a guard against a hang, not a timing assertion
            while True:
                await ws.recv()
    received = closed.value.rcvd
    return (received.code, received.reason) if received else (None, "")


async def _acknowledged(ws: ClientConnection, key: str) -> None:
    await ws.send(json.dumps({"type": "connection_init", "payload": {"Authorization": f"Bearer {key}"}}))
    assert json.loads(await ws.recv())["type"] == "connection_ack"


async def test_a_websocket_document_sent_before_the_key_is_refused_unparsed(sqlite_store: SQLiteStore) -> None:
    async with _socket(_services(sqlite_store)) as ws:
        await ws.send(json.dumps({"type": "subscribe", "id": "1", "payload": {"query": "subscription {"}}))
        code, _ = await _close_of(ws)
    assert code == 4401  # not 4400 for the syntax error: the document was never read


# -- Item 11: CDP_AUTH=off beyond loopback ----------------------------------------------------------------

LOCAL = "http://127.0.0.1:8000"
LOCAL_ADDRESSES = [
    pytest.param("http://10.0.0.5:8000", None, 403, id="a private IPv4 address"),
    pytest.param("http://192.0.2.7:8000", None, 403, id="a public IPv4 address"),
    pytest.param("http://[fd00::5]:8000", None, 403, id="an IPv6 address"),
    pytest.param("http://[::ffff:10.0.0.5]:8000", None, 403, id="an IPv4-mapped IPv6 address"),
    pytest.param(LOCAL, None, 200, id="IPv4 loopback"),
    pytest.param("http://127.8.9.10:8000", None, 200, id="elsewhere in 127/8"),
    pytest.param("http://[::1]:8000", None, 200, id="IPv6 loopback"),
    # Found by an audit of browser-borne attacks: a page that points its own name at 127.0.0.1 (DNS
    # rebinding) is the server's origin to the browser, so it read every profile with CDP_AUTH=off. Its
    # requests arrive on loopback, naming the page's host in their Host header.
    pytest.param(LOCAL, "evil.example:8000", 403, id="naming a page's own name pointed at 127.0.0.1"),
    pytest.param(LOCAL, "localhost.evil.example", 403, id="naming a host that begins like localhost"),
    pytest.param(LOCAL, "10.0.0.5:8000", 403, id="naming a network address"),
    pytest.param(LOCAL, "localhost:8000", 200, id="naming localhost"),
    pytest.param(LOCAL, "LOCALHOST.", 200, id="naming localhost in capitals, fully qualified"),
    pytest.param(LOCAL, "app.localhost:8000", 200, id="naming a name under .localhost"),
    pytest.param(LOCAL, "[::1]:8000", 200, id="naming IPv6 loopback"),
    pytest.param(LOCAL, "0.0.0.0:8000", 200, id="naming every interface, as uvicorn prints it"),
    pytest.param(LOCAL, "[::]:8000", 200, id="naming every IPv6 interface"),
]


@pytest.mark.parametrize(("base_url", "host", "status"), LOCAL_ADDRESSES)
async def test_with_authentication_off_a_request_from_beyond_this_machine_is_refused(
    sqlite_store: SQLiteStore, base_url: str, host: str | None, status: int
) -> None:
    headers = {"host": host} if host else {}
    async with _client(_services(sqlite_store, auth=False), base_url=base_url) as client:
        graphql = await client.post("/graphql", json={"query": "{ __typename }"}, headers=headers)
        metrics = await client.get("/metrics", headers=headers)
    assert (graphql.status_code, metrics.status_code) == (status, status), graphql.text
    if status == 403:
        error = _error(graphql)
        assert error["extensions"]["code"] == "FORBIDDEN" and "CDP_AUTH=off" in error["message"]
        assert ("Host header" in error["message"]) == (host is not None)


async def test_with_authentication_off_a_websocket_naming_another_host_is_refused(sqlite_store: SQLiteStore) -> None:
    """The same page's WebSocket handshake names its host, and its origin, which then matches the Host
    (Strawberry's check of the origin passes it). Written by hand: a client library sends its own Host."""

    async def handshake(address: str, host: str) -> bytes:
        reader, writer = await asyncio.open_connection(*address.rsplit(":", 1))
        writer.write(
            f"GET /graphql HTTP/1.1\r\nHost: {host}\r\nOrigin: http://{host}\r\nUpgrade: websocket\r\n"
            "Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n"
            "Sec-WebSocket-Protocol: graphql-transport-ws\r\n\r\n".encode()
        )
        status = await reader.readline()
        writer.close()
        return status

    async with serving(_services(sqlite_store, auth=False)) as address:
        port = address.rsplit(":", 1)[1]
        assert b" 403 " in await handshake(address, f"evil.example:{port}")
        assert b" 101 " in await handshake(address, f"localhost:{port}")


async def test_with_authentication_on_a_network_address_serves_as_usual(sqlite_store: SQLiteStore, key: str) -> None:
    async with _client(_services(sqlite_store), key, base_url="http://10.0.0.5:8000") as client:
        response = await client.post("/graphql", json={"query": "{ __typename }"})
    assert response.status_code == 200 and response.json() == {"data": {"__typename": "Query"}}


def _own_network_address() -> str | None:
    """A non-loopback IPv4 address of this machine (one a socket can bind to), if it has one."""
    candidates = set()
    with suppress(OSError):
        candidates |= {info[4][0] for info in socket.getaddrinfo(socket.gethostname(), None, socket.AF_INET)}
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
        try:
            probe.connect(("192.0.2.1", 9))  # UDP: picks the outgoing interface, sends nothing
            candidates.add(probe.getsockname()[0])
        except OSError:
            pass
    for address in sorted(candidates):
        if address.startswith("127.") or address == "0.0.0.0":
            continue
        with socket.socket() as sock:
            try:
                sock.bind((address, 0))
            except OSError:
                continue
        return str(address)
    return None


@contextmanager
def _uvicorn_factory_on_every_interface(tmp_path: Path, log: Path) -> Iterator[int]:
    """`uvicorn app.main:create_app --factory --host 0.0.0.0` with CDP_AUTH=off and CDP_HOST unset: the
    issue's reproduction, where the configuration check saw 127.0.0.1."""
    port = free_port()
    env = {"CDP_DATABASE_URL": f"sqlite:///{tmp_path}/cdp.sqlite3", "CDP_SEED_FIXTURES": "false", "CDP_AUTH": "off"}
    command = [sys.executable, "-m", "uvicorn", "app.main:create_app", "--factory", "--host", "0.0.0.0"]
    with log.open("w") as output:
        process = start_server(env, port, output=output, command=[*command, "--port", str(port)])
        try:
            yield port
        finally:
            process.terminate()
            process.wait(timeout=10)


async def test_uvicorn_on_every_interface_with_authentication_off_answers_loopback_only(tmp_path: Path) -> None:
    address = _own_network_address()
    if address is None:
        pytest.skip("this machine has no non-loopback address: the in-process table above covers the rule")
    log = tmp_path / "server.log"
    with _uvicorn_factory_on_every_interface(tmp_path, log) as port:
        async with httpx.AsyncClient(timeout=10) as http:
            local = await http.post(f"http://127.0.0.1:{port}/graphql", json={"query": "{ __typename }"})
            assert local.status_code == 200 and local.json() == {"data": {"__typename": "Query"}}
            for _ in range(2):
                exposed = await http.post(f"http://{address}:{port}/graphql", json={"query": "{ __typename }"})
                assert exposed.status_code == 403 and "CDP_AUTH=off" in _error(exposed)["message"]
        with pytest.raises(InvalidStatus) as refused:
            async with connect(f"ws://{address}:{port}/graphql", subprotocols=TRANSPORT_WS):
                pass
        assert refused.value.response.status_code == 403
        async with connect(f"ws://127.0.0.1:{port}/graphql", subprotocols=TRANSPORT_WS) as ws:
            await ws.send(json.dumps({"type": "connection_init", "payload": {}}))
            assert json.loads(await ws.recv())["type"] == "connection_ack"
    said = log.read_text()
    assert said.count("CDP_AUTH=off") == 1, said  # said loudly, once


# -- Item 14: malformed requests -------------------------------------------------------------------------

JSON = "application/json"
DEEP = b"[" * 10_000 + b"]" * 10_000
MALFORMED = [
    pytest.param(b"null", JSON, 400, id="null"),
    pytest.param(b"42", JSON, 400, id="a number"),
    pytest.param(b'"x"', JSON, 400, id="a string"),
    pytest.param(b"[]", JSON, 400, id="an empty batch"),
    pytest.param(b'[{"query": "{ __typename }"}]', JSON, 400, id="a batch"),
    pytest.param(b"", JSON, 400, id="no body"),
    pytest.param(b'{"query": ', JSON, 400, id="truncated JSON"),
    pytest.param(b'\xff\xfe{\x00"\x00q\x00', JSON, 400, id="bytes that are not UTF-8"),
    pytest.param(b'{"query": "{ __typename }", "variables": ' + DEEP + b"}", JSON, 400, id="nested 10,000 levels"),
    pytest.param(b'{"query": "{ __typename }", "variables": [1, 2]}', JSON, 400, id="variables not an object"),
    pytest.param(b'{"query": "{ __typename }", "extensions": "x"}', JSON, 400, id="extensions not an object"),
    pytest.param(b'{"query": 42}', JSON, 400, id="query not a string"),
    pytest.param(b'{"variables": {}}', JSON, 400, id="no query"),
    pytest.param(b'{"query": "{ __typename }", "operationName": 7}', JSON, 400, id="operationName not a string"),
    pytest.param(
        b'{"query": "query($n: Int!) { profiles(first: $n) { edges { cursor } } }", "variables": {"n": '
        + b"9" * 5000
        + b"}}",
        JSON,
        400,
        id="a 5,000-digit integer",
    ),
    pytest.param(b'{"query": "{ __typename }"}', "text/plain", 415, id="not JSON by its content type"),
    pytest.param(b'{"query": "{ __typename }"}', None, 415, id="no content type"),
    pytest.param(
        b'{"query": "subscription { segmentMembershipChanged { change } }"}', JSON, 400, id="a subscription over POST"
    ),
]


@pytest.mark.parametrize(("body", "content_type", "status"), MALFORMED)
async def test_a_malformed_request_gets_a_graphql_error_with_a_code(
    sqlite_store: SQLiteStore, key: str, body: bytes, content_type: str | None, status: int
) -> None:
    headers = {"content-type": content_type} if content_type else {}
    async with _client(_services(sqlite_store), key) as client:
        response = await client.post("/graphql", content=body, headers=headers)
    assert response.status_code == status, response.text
    assert _error(response)["extensions"]["code"] in {"BAD_REQUEST", "BAD_USER_INPUT"}


async def test_a_subscription_over_post_says_where_subscriptions_are_served(
    sqlite_store: SQLiteStore, key: str
) -> None:
    async with _client(_services(sqlite_store), key) as client:
        response = await client.post("/graphql", json={"query": "subscription { segmentMembershipChanged { change } }"})
    assert "WebSocket" in _error(response)["message"]


async def test_a_mutation_over_get_is_405_after_the_key_is_checked(sqlite_store: SQLiteStore, key: str) -> None:
    async with _client(_services(sqlite_store), key) as client:
        response = await client.get("/graphql", params={"query": 'mutation { deleteSegment(id: "s") }'})
        anonymous = await client.get(
            "/graphql", params={"query": 'mutation { deleteSegment(id: "s") }'}, headers={"authorization": ""}
        )
    assert response.status_code == 405 and response.headers["allow"] == "POST"
    assert _error(response)["extensions"]["code"] == "BAD_REQUEST"
    assert anonymous.status_code == 401


@pytest.mark.parametrize(
    ("field", "value"),
    [
        pytest.param("name", "a" * 100_000, id="a 100,000-character name"),
        pytest.param("city", "L" * 300, id="a 300-character city"),
        pytest.param("identifierType", "t" * 300, id="a 300-character identifier type"),
        pytest.param("segment", "s" * 300, id="a 300-character segment id"),
    ],
)
async def test_an_overlong_filter_string_is_the_clients_mistake_naming_the_field(
    sqlite_store: SQLiteStore, key: str, field: str, value: str
) -> None:
    await ingest_events(sqlite_store, [event("identify")])  # a row for the database to compare with
    query = "query($f: ProfileFilterInput) { profiles(first: 5, filter: $f) { edges { cursor } } }"
    async with _client(_services(sqlite_store), key) as client:
        response = await client.post("/graphql", json={"query": query, "variables": {"f": {field: value}}})
    [error] = response.json()["errors"]
    assert error["extensions"] == {"code": "BAD_USER_INPUT", "field": f"filter.{field}"}, error


def _nested(levels: int) -> Any:
    value: Any = "bottom"
    for _ in range(levels):
        value = [value]
    return value


@pytest.mark.parametrize(
    "value",
    [
        pytest.param(_nested(300), id="nested past orjson's 255 levels"),
        pytest.param(2**70, id="an integer past 64 bits"),
        pytest.param("lone \ud800 surrogate", id="a lone surrogate"),
    ],
)
def test_an_answer_the_fast_encoder_refuses_is_encoded_all_the_same(sqlite_store: SQLiteStore, value: Any) -> None:
    # Stored data cannot reach these any more (ingestion bounds them, reads cut what is deeper), so the
    # view's encoding is checked itself: the last step of every answer, HTTP and WebSocket.
    view = GraphQLApp(lambda: _services(sqlite_store), Settings(seed_fixtures=False))
    response = view.create_response({"data": {"traits": value}}, Response())
    assert response.status_code == 200 and response.headers["content-type"] == "application/json"
    assert json.loads(response.body) == {"data": {"traits": value}}


def test_an_answer_no_encoder_can_write_is_a_graphql_error_not_text(sqlite_store: SQLiteStore) -> None:
    view = GraphQLApp(lambda: _services(sqlite_store), Settings(seed_fixtures=False))
    response = view.create_response({"data": {"traits": _nested(5000)}}, Response())
    assert response.status_code == 500 and response.headers["content-type"] == "application/json"
    [error] = json.loads(response.body)["errors"]
    assert error["extensions"]["code"] == "INTERNAL_SERVER_ERROR" and error["extensions"]["errorId"]
    message = json.loads(view.encode_json({"id": "7", "type": "next", "payload": {"data": _nested(5000)}}))
    assert (message["id"], message["type"], message["payload"]["data"]) == ("7", "next", None)
    assert message["payload"]["errors"][0]["extensions"]["code"] == "INTERNAL_SERVER_ERROR"


# -- Item 14: malformed WebSocket frames ----------------------------------------------------------------

SUBSCRIBE = {
    "type": "subscribe",
    "id": "1",
    "payload": {"query": "subscription { segmentMembershipChanged { change } }"},
}
BAD_FRAMES = [
    pytest.param("[1, 2]", id="a JSON array"),
    pytest.param("null", id="JSON null"),
    pytest.param("42", id="a JSON number"),
    pytest.param('"connection_init"', id="a JSON string"),
    pytest.param("{not json", id="not JSON"),
    pytest.param(b"\x00\x01binary", id="a binary frame"),
    pytest.param('{"type": 5}', id="a type that is not a string"),
    pytest.param('{"id": "1"}', id="no type"),
    pytest.param("[" * 10_000 + "]" * 10_000, id="nested 10,000 levels"),
    pytest.param('{"type": "ping", "payload": {"n": ' + "9" * 5000 + "}}", id="a 5,000-digit number"),
    pytest.param(json.dumps({**SUBSCRIBE, "payload": [1]}), id="a subscribe whose payload is a list"),
    pytest.param(json.dumps({**SUBSCRIBE, "payload": {"query": 42}}), id="a subscribe whose query is a number"),
    pytest.param(json.dumps({**SUBSCRIBE, "id": 1}), id="a subscribe whose id is a number"),
    pytest.param(
        json.dumps({**SUBSCRIBE, "payload": {**SUBSCRIBE["payload"], "variables": [1]}}),  # type: ignore[dict-item]
        id="a subscribe whose variables are a list",
    ),
]


@pytest.mark.parametrize("frame", BAD_FRAMES)
async def test_a_malformed_frame_closes_the_connection_with_4400_and_a_reason(
    sqlite_store: SQLiteStore, key: str, frame: str | bytes
) -> None:
    async with _socket(_services(sqlite_store)) as ws:
        await _acknowledged(ws, key)
        await ws.send(frame)
        code, reason = await _close_of(ws)
    assert (code, bool(reason)) == (4400, True), reason


# -- Item 4: one message-size limit for HTTP and WebSocket -----------------------------------------------

LIMIT = 2048


def _ping(size: int) -> str:
    """A ping message of exactly `size` bytes."""
    frame = json.dumps({"type": "ping", "payload": {"pad": ""}})
    return frame.replace('"pad": ""', '"pad": "' + "x" * (size - len(frame)) + '"')


async def test_a_websocket_message_up_to_the_body_limit_is_read(sqlite_store: SQLiteStore, key: str) -> None:
    async with _socket(_services(sqlite_store, max_body_bytes=LIMIT)) as ws:
        await _acknowledged(ws, key)
        await ws.send(_ping(LIMIT))
        assert json.loads(await ws.recv())["type"] == "pong"


@pytest.mark.parametrize(
    ("frame", "authenticated"),
    [
        pytest.param(_ping(LIMIT + 1), True, id="a text frame one byte over"),
        pytest.param(_ping(LIMIT - 100).replace("x", "é"), True, id="characters under, UTF-8 bytes over"),
        pytest.param(b"\x00" * (LIMIT + 1), True, id="a binary frame one byte over"),
        pytest.param(_ping(LIMIT * 4), False, id="before connection_init"),
    ],
)
async def test_a_websocket_message_over_the_body_limit_closes_the_connection_with_1009(
    sqlite_store: SQLiteStore, key: str, frame: str | bytes, authenticated: bool
) -> None:
    async with _socket(_services(sqlite_store, max_body_bytes=LIMIT)) as ws:
        if authenticated:
            await _acknowledged(ws, key)
        await ws.send(frame)
        code, reason = await _close_of(ws)
    assert code == 1009 and f"{LIMIT:,} bytes" in reason, reason


async def test_the_served_application_refuses_a_websocket_message_over_one_mebibyte(tmp_path: Path) -> None:
    env = {"CDP_DATABASE_URL": f"sqlite:///{tmp_path}/cdp.sqlite3", "CDP_SEED_FIXTURES": "false"}
    limit = Settings().max_body_bytes
    with running_server(env) as url:
        async with connect(url.replace("http", "ws") + "/graphql", subprotocols=TRANSPORT_WS) as ws:
            await ws.send(_ping(limit + 1))
            code, _ = await _close_of(ws)
        key = (tmp_path / "dev-api-key").read_text().strip()
        async with httpx.AsyncClient(headers={"authorization": f"Bearer {key}"}) as http:
            body = await http.post(f"{url}/graphql", content=b" " * (limit + 1), headers={"content-type": JSON})
    assert (code, body.status_code) == (1009, 413)


# -- A request's head: bounded in size and in time (app/bounded_http.py) -----------------------------------
@asynccontextmanager
async def _served_as_configured(services: Services) -> AsyncIterator[int]:
    """The application under uvicorn with the options `python -m app serve` gives it; yields the port."""
    from app import workers

    port = free_port()
    options = {**workers._server_options(services.settings), "port": port, "host": "127.0.0.1", "lifespan": "off"}
    server = uvicorn.Server(uvicorn.Config(create_app(services=services), **options))
    task = asyncio.create_task(server.serve())
    while not server.started:
        await asyncio.sleep(0.05)
    try:
        yield port
    finally:
        server.should_exit = True
        await task


async def _exchange(port: int, sent: bytes, *, then_wait: float = 10) -> bytes:
    """What the server answers to `sent` on a new connection, up to its closing it."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        writer.write(sent)
        await writer.drain()
        return await asyncio.wait_for(reader.read(), then_wait)
    finally:
        writer.close()


async def test_a_head_over_its_bound_is_431_and_other_clients_are_served(sqlite_store: SQLiteStore) -> None:
    """A 100 MiB URL grew by copying itself on the event loop: /healthz waited 5.8 s behind it."""
    services = _services(sqlite_store, auth=False, max_query_length=1024)
    async with _served_as_configured(services) as port:
        bound = bounded_http.head_bytes(1024)
        answer = await _exchange(port, b"GET /healthz?q=" + b"a" * (bound + 1) + b" HTTP/1.1\r\nHost: x\r\n\r\n")
        assert answer.startswith(b"HTTP/1.1 431 "), answer[:100]
        headers = await _exchange(port, b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-Big: " + b"b" * bound + b"\r\n\r\n")
        assert headers.startswith(b"HTTP/1.1 431 "), headers[:100]
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}") as client:
            within = await client.get("/graphql", params={"query": "{ __typename }" + " " * 900})
            assert within.status_code == 200, within.text  # a GET document up to the length limit fits
            assert (await client.get("/healthz")).status_code == 200


async def test_a_head_of_too_many_headers_is_431_and_other_clients_are_served(sqlite_store: SQLiteStore) -> None:
    """Found by an audit of the transport: 200,000 headers of one byte (800 KB, within the head's size
    as it was counted) held the event loop 250 ms a request, every header look-up walking them all."""
    async with _served_as_configured(_services(sqlite_store, auth=False)) as port:
        many = b"GET /healthz HTTP/1.1\r\nHost: localhost\r\n" + b"a:\r\n" * 150 + b"\r\n"
        answer = await _exchange(port, many)
        assert answer.startswith(b"HTTP/1.1 431 ") and answer.endswith(b"more than 100 headers"), answer[:200]
        within = b"GET /healthz HTTP/1.1\r\nHost: localhost\r\n" + b"a:\r\n" * 98 + b"Connection: close\r\n\r\n"
        assert (await _exchange(port, within)).startswith(b"HTTP/1.1 200 ")


async def test_a_head_not_sent_in_time_is_408_and_the_connection_closed(
    sqlite_store: SQLiteStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A client that sent half a request line and stopped held its connection for ever: 20,000 such
    and the server took no other client."""
    monkeypatch.setattr(bounded_http, "HEAD_TIMEOUT_SECONDS", 0.5)
    async with _served_as_configured(_services(sqlite_store, auth=False)) as port:
        for sent in (b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-Slow: ", b""):
            answer = await _exchange(port, sent)
            assert answer.startswith(b"HTTP/1.1 408 "), answer[:100]
        kept = await _exchange(port, b"GET /healthz HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n")
        assert kept.startswith(b"HTTP/1.1 200 "), kept[:100]  # a whole head in time is served as before
        async with connect(f"ws://127.0.0.1:{port}/graphql", subprotocols=TRANSPORT_WS) as ws:
            await asyncio.sleep(1.0)  # past the head's time: an upgraded connection is not a head
            await ws.send(json.dumps({"type": "connection_init"}))
            assert json.loads(await asyncio.wait_for(ws.recv(), 5))["type"] == "connection_ack"


async def test_a_frame_of_too_many_json_values_closes_with_the_limit_as_its_reason(
    sqlite_store: SQLiteStore, key: str
) -> None:
    """Over HTTP such a body answers 413 saying the limit; the socket closed with Strawberry's
    "WebSocket message must be valid JSON", which the frame was."""
    many = json.dumps({"type": "ping", "payload": {"values": [1] * 60_000}})
    async with _socket(_services(sqlite_store)) as ws:
        await _acknowledged(ws, key)
        await ws.send(many)
        code, reason = await _close_of(ws)
    assert (code, reason) == (4400, "more than 50,000 JSON values: send smaller batches")


# -- Which operation runs: a document of several needs operationName, one it does not hold is refused ------
CHOICES = [
    pytest.param("query Q { segments { id } } query R { segments { name } }", None, "(Q, R): name", id="two-unnamed"),
    pytest.param("query Q { segments { id } }", "Nope", 'Unknown operation named "Nope"', id="unknown-name"),
]


@pytest.mark.parametrize(("document", "name", "said"), CHOICES)
async def test_a_request_that_chooses_no_operation_of_its_document_is_refused_over_http(
    sqlite_store: SQLiteStore, key: str, document: str, name: str | None, said: str
) -> None:
    async with _client(_services(sqlite_store), key) as client:
        response = await client.post("/graphql", json={"query": document, "operationName": name})
    error = _error(response)
    assert (response.status_code, error["extensions"]["code"]) == (400, "BAD_REQUEST"), response.text
    assert said in error["message"], error


@pytest.mark.parametrize(("document", "name", "said"), CHOICES)
async def test_a_request_that_chooses_no_operation_of_its_document_is_refused_over_websocket(
    sqlite_store: SQLiteStore, key: str, document: str, name: str | None, said: str
) -> None:
    async with _socket(_services(sqlite_store)) as ws:
        await _acknowledged(ws, key)
        payload = {"query": document, **({"operationName": name} if name else {})}
        await ws.send(json.dumps({"type": "subscribe", "id": "1", "payload": payload}))
        async with asyncio.timeout(20):  # a guard against a hang, not a timing assertion
            answer = json.loads(await ws.recv())
        assert answer["type"] == "error", answer  # not the first operation's data
        [error] = answer["payload"]
        assert error["extensions"]["code"] == "BAD_REQUEST" and said in error["message"], error
        await ws.send(json.dumps({"type": "subscribe", "id": "2", "payload": {"query": "{ segments { id } }"}}))
        async with asyncio.timeout(20):
            assert json.loads(await ws.recv()) == {"id": "2", "type": "next", "payload": {"data": {"segments": []}}}


# -- A time or a date written in the document: refused with its place, as any other literal of a wrong type
UPSERT_L1 = 'mutation {{ upsertProfile(input: {{identifiers: [{{type: "customerId", value: "L1"}}], {}}}) {{ id }} }}'
INLINE_EVENT = (
    'mutation { ingestEvents(events: [{messageId: "m", type: "page_view", channel: "web", timestamp: 12, '
    "identifiers: []}]) { accepted } }"
)


@pytest.mark.parametrize(
    ("document", "value", "said"),
    [
        pytest.param(UPSERT_L1.format('birthDate: "1987-02-30"'), '"1987', "day is out of range", id="no-such-day"),
        pytest.param(UPSERT_L1.format("birthDate: 7"), "7}", "Expected a string", id="a-number-for-a-date"),
        pytest.param(INLINE_EVENT, "12", "cannot represent a DateTime", id="a-number-for-a-time"),
    ],
)
async def test_a_wrong_date_or_time_in_the_document_is_refused_with_its_location(
    sqlite_store: SQLiteStore, key: str, document: str, value: str, said: str
) -> None:
    async with _client(_services(sqlite_store), key) as client:
        [error] = (await client.post("/graphql", json={"query": document})).json()["errors"]
    assert error["extensions"]["code"] == "GRAPHQL_VALIDATION_FAILED" and said in error["message"], error
    assert error["locations"] == [{"line": 1, "column": document.index(value) + 1}], error
    assert await sqlite_store.count_profiles() == 0


async def test_a_key_runs_a_bounded_number_of_different_documents_at_once(sqlite_store: SQLiteStore, key: str) -> None:
    """Found by an audit of what a subscribe key can do: each subscription told apart by an alias is
    executed for every change (1,000 of them kept the server busy 69 s for one segment update, 17 s
    with one document). Any number of operations of the documents a key runs; a new one past the
    limit is refused until one of them ends, on whichever connection."""
    services = _services(sqlite_store, max_subscription_documents_per_key=2)

    def subscribe(operation_id: str, alias: str) -> str:
        document = f"subscription {{ {alias}: segmentMembershipChanged {{ change }} }}"
        return json.dumps({"id": operation_id, "type": "subscribe", "payload": {"query": document}})

    async with serving(services) as address:
        url = f"ws://{address}/graphql"
        async with connect(url, subprotocols=TRANSPORT_WS) as first, connect(url, subprotocols=TRANSPORT_WS) as second:
            await _acknowledged(first, key)
            await _acknowledged(second, key)
            for operation_id, alias in (("1", "a"), ("2", "b"), ("3", "a")):
                await first.send(subscribe(operation_id, alias))
            await second.send(subscribe("4", "c"))
            refused = json.loads(await asyncio.wait_for(second.recv(), 10))
            assert (refused["id"], refused["type"]) == ("4", "error"), refused
            assert refused["payload"][0]["extensions"]["code"] == "LIMIT_EXCEEDED", refused
            assert "at most 2 different documents at once for one key" in refused["payload"][0]["message"]
            await first.send(json.dumps({"id": "2", "type": "complete"}))
            await first.send(json.dumps({"type": "ping"}))  # answered once the completion is handled
            assert json.loads(await asyncio.wait_for(first.recv(), 10))["type"] == "pong"
            await second.send(subscribe("5", "c"))
            await second.send(json.dumps({"type": "ping"}))
            assert json.loads(await asyncio.wait_for(second.recv(), 10))["type"] == "pong"  # no error before it


async def test_a_key_runs_a_bounded_number_of_different_variables_for_one_thing_watched(
    sqlite_store: SQLiteStore, key: str
) -> None:
    """Found by a review: one document under 1,000 values of a variable that does not choose what is
    watched was 1,000 executions of every change, past the documents' limit. Subscriptions each
    watching their own profile with one document stay any number."""
    people = [event("page_view", email=f"p{i}@example.com", message_id=f"p{i}") for i in range(3)]
    profile_ids = [o.profile_id for o in await ingest_events(sqlite_store, people)]
    services = _services(sqlite_store, max_subscription_documents_per_key=2)
    document = (
        "subscription($n: Int!, $p: ID) { segmentMembershipChanged(profileId: $p) { change "
        "profile { interactions(first: $n) { edges { node { type } } } } } }"
    )

    def subscribe(operation_id: str, **variables: object) -> str:
        payload = {"query": document, "variables": variables}
        return json.dumps({"id": operation_id, "type": "subscribe", "payload": payload})

    async def quiet(ws: ClientConnection) -> None:  # every operation sent so far handled, none refused
        await ws.send(json.dumps({"type": "ping"}))
        message = json.loads(await asyncio.wait_for(ws.recv(), 10))
        assert message["type"] == "pong", message

    async with serving(services) as address, connect(f"ws://{address}/graphql", subprotocols=TRANSPORT_WS) as ws:
        await _acknowledged(ws, key)
        for operation_id, n in (("1", 1), ("2", 2), ("3", 1)):
            await ws.send(subscribe(operation_id, n=n))
        await quiet(ws)
        await ws.send(subscribe("4", n=3))
        refused = json.loads(await asyncio.wait_for(ws.recv(), 10))
        # The third different one to reach its resolver: 4, or 2 when its task ran after 4's (each
        # operation runs as a task of its own, and the pong above does not wait for them; seen once
        # in a full run under load). Never 1 or 3, which share their variables.
        assert refused["id"] in ("2", "4") and (refused["type"], refused["payload"]["data"]) == ("next", None), refused
        [error] = refused["payload"]["errors"]
        assert error["extensions"]["code"] == "LIMIT_EXCEEDED", refused
        assert json.loads(await asyncio.wait_for(ws.recv(), 10)) == {"id": refused["id"], "type": "complete"}
        assert "at most 2 different documents and variables at once for one key watching" in error["message"]
        await ws.send(json.dumps({"id": "2", "type": "complete"}))  # n=2 gone (if it ran): n=3 may run
        await quiet(ws)
        await ws.send(subscribe("5", n=3))
        for index, profile_id in enumerate(profile_ids):  # one document, each its own profile: all run
            await ws.send(subscribe(f"own-{index}", n=3, p=profile_id))
        await quiet(ws)


class _HeldHistories(StandIn):
    """The store, where reading a history waits for the test's `go`: how many exports read at once."""

    def __init__(self, inner: SQLiteStore) -> None:
        super().__init__(inner)  # type: ignore[arg-type]
        self.reading = self.most = 0
        self.two, self.go = asyncio.Event(), asyncio.Event()

    async def list_interactions(self, *args: Any, **kwargs: Any) -> Any:
        self.reading += 1
        self.most = max(self.most, self.reading)
        if self.reading == 2:
            self.two.set()
        try:
            await self.go.wait()
            return await self._inner.list_interactions(*args, **kwargs)
        finally:
            self.reading -= 1


async def test_exports_run_a_few_at_once_and_the_others_wait_their_turn(sqlite_store: SQLiteStore, key: str) -> None:
    """Found by an audit: each export holds a whole history in memory (55,400 interactions: +200 MB),
    and four at once took the process to 805 MB."""
    [landed] = await ingest_events(sqlite_store, [event("page_view", email="ann@example.com")])
    held = _HeldHistories(sqlite_store)
    services = Services(settings=Settings(seed_fixtures=False), store=held, ingestion=IngestionPolicy())  # type: ignore[arg-type]
    document = {"query": "query($id: ID!) { exportProfile(id: $id) }", "variables": {"id": landed.profile_id}}
    async with _client(services, key) as client:
        asking = [asyncio.create_task(client.post("/graphql", json=document)) for _ in range(3)]
        await asyncio.wait_for(held.two.wait(), 10)
        for _ in range(50):  # the third has every chance to start reading: it waits for a turn instead
            await asyncio.sleep(0)
        assert held.reading == 2
        held.go.set()
        answers = await asyncio.gather(*asking)
    assert held.most == 2
    assert all(a.json()["data"]["exportProfile"]["profile"]["_id"] == landed.profile_id for a in answers)
