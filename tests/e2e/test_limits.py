"""Hostile queries and GraphQL over HTTP: each limit refuses its kind of hostile document before
execution with LIMIT_EXCEEDED; HTTP answers as the GraphQL-over-HTTP spec says."""

from __future__ import annotations

import asyncio
import gzip
import json
import re
import threading
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from graphql import TokenKind, get_introspection_query, parse, print_ast
from strawberry.schema.schema import validate_document
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed
from websockets.typing import Subprotocol

from app.bootstrap import Services
from app.main import create_app
from app.services.ingestion import IngestionPolicy
from app.settings import Settings
from app.store.sqlite.store import SQLiteStore
from graphql_schema import document_gate
from graphql_schema.document_cache import Prepared, PreparedDocuments, weight_of
from graphql_schema.document_tokens import more_tokens_than
from graphql_schema.limits import QueryLimits
from graphql_schema.page_arguments import PAGE_ARGUMENTS, page_maximum
from graphql_schema.schema import build_schema
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
    assert codes == {"BAD_USER_INPUT"} and message == "first must be between 1 and 100, got 100000"
    codes, message = await _codes(client, "{ profiles(first: 500) { edges { cursor } } }")  # cheap, still too big
    assert codes == {"BAD_USER_INPUT"} and "between 1 and 100" in message


async def test_fragment_cycles_are_refused(client: httpx.AsyncClient) -> None:
    cycle = "{ segments { ...A } } fragment A on Segment { id ...B } fragment B on Segment { name ...A }"
    codes, message = await _codes(client, cycle)
    assert codes == {"GRAPHQL_VALIDATION_FAILED"} and "Cannot spread fragment" in message


async def test_batched_operations_are_refused(client: httpx.AsyncClient) -> None:
    batch = json.dumps([{"query": "{ segments { id } }"}] * 50)
    response = await client.post("/graphql", content=batch, headers={"content-type": "application/json"})
    assert response.status_code == 400 and "batch" in response.text.lower()


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
        assert streamed.json()["errors"][0]["extensions"]["code"] == "LIMIT_EXCEEDED"  # as every limit's


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
    body = gzip.compress(json.dumps({"query": "{ segments { id } }"}).encode())
    headers = {"content-type": "application/json", "content-encoding": "gzip"}
    zipped = await client.post("/graphql", content=body, headers=headers)  # was 400 "not UTF-8 text"
    assert zipped.status_code == 415 and "without Content-Encoding (gzip)" in zipped.text, zipped.text


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
        [error] = refused["payload"]  # coded and saying the way out, as any refusal (Strawberry's said neither)
        assert error["extensions"]["code"] == "LIMIT_EXCEEDED", error
        assert error["message"].startswith("at most 2 operations at once on one connection"), error


async def test_a_repeated_document_is_validated_once_and_refused_every_time(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    validations: list[str] = []

    def counted(schema: Any, document: Any, rules: Any) -> Any:
        validations.append(print_ast(document))
        return validate_document(schema, document, rules)

    monkeypatch.setattr(document_gate, "validate_document", counted)
    schema = build_schema(QueryLimits())
    costly = "{ profiles(first: 100) { edges { node { interactions(first: 100) { edges { cursor } } } } } }"
    for copy in range(3):
        result = await schema.execute(costly)
        assert result.errors and "query cost 20,301" in result.errors[0].message
        assert (schema.gate.documents.misses, schema.gate.documents.hits) == (1, copy)
    assert validations == []  # the limits refused it: graphql-core's rules never ran
    for _ in range(2):
        result = await schema.execute("{ __typename }")
        assert result.data == {"__typename": "Query"}
    assert len(validations) == 1
    for _ in range(2):
        result = await schema.execute("{ profile(id: ")  # a syntax error, refused from the cache the second time
        assert result.errors and result.errors[0].message.startswith("Syntax Error")
    assert (schema.gate.documents.misses, schema.gate.documents.hits) == (3, 4)


def test_the_document_cache_is_bounded_by_what_it_holds() -> None:
    documents = PreparedDocuments(budget=50_000, largest=2_000)
    texts = [f"{{ a{n}: segments {{ id name }} }}" for n in range(200)]
    for text in texts:
        document = parse(text)
        documents.put(text, text, Prepared(document, weight=weight_of(text, document)))
    assert documents.held <= 50_000 and 0 < len(documents) < 200
    assert documents.get(texts[-1]) is not None and documents.get(texts[0]) is None  # the oldest went first
    big = "{ " + "segments { id } " * 200 + "}"
    documents.put(big, big, Prepared(parse(big), weight=1))
    assert documents.get(big) is None  # over `largest` characters: never kept
    assert weight_of(texts[0], parse(texts[0])) == len(texts[0]) + 600 * 11  # 11 tokens


# -- Issue 12, item 1: fragment fan-out is checked without expanding it ------------------------------------


def _fan_out(levels: int) -> str:
    spreads = " ".join(f"fragment F{n} on Query {{ ...F{n + 1} ...F{n + 1} }}" for n in range(levels))
    return f"query {{ ...F0 }} {spreads} fragment F{levels} on Query {{ __typename }}"


async def test_a_fragment_fanning_out_within_the_limits_still_runs(client: httpx.AsyncClient) -> None:
    # 2^12 = 4,096 __typename selections, all one response field: well within cost and repetition limits
    # once fragments are counted by what they bring, not spread out.
    response = await client.post("/graphql", json={"query": _fan_out(3)})
    assert response.json() == {"data": {"__typename": "Query"}}


async def test_fragment_fan_out_over_a_websocket_is_refused_at_once(tmp_path: Path) -> None:
    # Over WebSocket, 17 levels took 2.1 s; 60 levels would never finish if spreads were expanded.
    spreads = " ".join(f"fragment S{n} on Subscription {{ ...S{n + 1} ...S{n + 1} }}" for n in range(60))
    query = (
        f"subscription {{ ...S0 }} {spreads} fragment S60 on Subscription {{ segmentMembershipChanged {{ change }} }}"
    )
    env = {"CDP_DATABASE_URL": f"sqlite:///{tmp_path}/cdp.sqlite3", "CDP_SEED_FIXTURES": "false", "CDP_AUTH": "off"}
    with running_server(env) as url:
        async with connect(
            url.replace("http", "ws") + "/graphql", subprotocols=[Subprotocol("graphql-transport-ws")]
        ) as ws:
            await ws.send(json.dumps({"type": "connection_init", "payload": {}}))
            assert json.loads(await ws.recv())["type"] == "connection_ack"
            await ws.send(json.dumps({"id": "1", "type": "subscribe", "payload": {"query": query}}))
            refused = json.loads(await asyncio.wait_for(ws.recv(), 30))
    assert refused["type"] == "error", refused
    [error] = refused["payload"]
    assert error["extensions"]["code"] == "LIMIT_EXCEEDED" and error["message"].startswith("query cost ")


async def test_several_operations_sharing_fragments_still_run(client: httpx.AsyncClient) -> None:
    operations = " ".join(f"query Q{n} {{ ...F }}" for n in range(5))
    query = f"{operations} fragment F on Query {{ segments {{ id name }} }}"
    response = await client.post("/graphql", json={"query": query, "operationName": "Q3"})
    assert response.json() == {"data": {"segments": []}}


async def test_a_document_within_every_limit_is_still_validated_by_the_standard_rules(
    client: httpx.AsyncClient,
) -> None:
    codes, message = await _codes(client, "{ segments { id nme } }")
    assert codes == {"GRAPHQL_VALIDATION_FAILED"} and "Cannot query field 'nme'" in message


async def test_a_field_selected_again_and_again_at_one_place_is_refused(client: httpx.AsyncClient) -> None:
    # graphql-core compares every pair of same-named fields: 400 copies took 1.5 s to validate.
    codes, message = await _codes(client, "{ " + "segments { id } " * 400 + "}")
    assert codes == {"LIMIT_EXCEEDED"} and "'segments' is selected 400 times" in message
    nested = "{ segments { " + "members { edges { cursor } } " * 30 + "} }"  # counted by path through the response
    codes, message = await _codes(client, nested)
    assert codes == {"LIMIT_EXCEEDED"} and "'members' is selected 30 times at segments.members" in message


# -- Issue 12, item 3: page sizes below 1 or past their field's maximum ------------------------------------

PAGES = [
    pytest.param("{ profiles(first: 0) { edges { cursor } } }", "first", 100, id="profiles first 0"),
    pytest.param("{ profiles(first: 101) { edges { cursor } } }", "first", 100, id="profiles first 101"),
    pytest.param(
        '{ profile(id: "p") { interactions(first: -100000000) { edges { cursor } } } }', "first", 100, id="negative"
    ),
    pytest.param(
        "{ segments { members(first: " + "9" * 5000 + ") { edges { cursor } } } }", "first", 100, id="5,000 digits"
    ),
    pytest.param("{ segmentHistory(last: 501) { id } }", "last", 500, id="segmentHistory last 501"),
    pytest.param('{ recommendations(profileId: "p", first: 51) { score } }', "first", 50, id="recommendations 51"),
    pytest.param("{ mergeCandidates(first: 1001) { score } }", "first", 1000, id="mergeCandidates 1001"),
    pytest.param(
        "query { segments { ...M } } fragment M on Segment { members(first: -1) { edges { cursor } } }",
        "first",
        100,
        id="in a fragment",
    ),
]


@pytest.mark.parametrize(("query", "argument", "maximum"), PAGES)
async def test_a_page_out_of_range_is_bad_user_input_before_execution(
    client: httpx.AsyncClient, query: str, argument: str, maximum: int
) -> None:
    response = await client.post("/graphql", json={"query": query})
    assert response.status_code < 500
    body = response.json()
    assert body.get("data") is None, body
    [error] = body["errors"]
    assert error["extensions"] == {"code": "BAD_USER_INPUT", "field": argument}
    assert error["message"].startswith(f"{argument} must be between 1 and {maximum}, got ")


VARIABLE_PAGES = "query($n: Int!, $m: Int = 5) { profiles(first: $n) { edges { node { interactions(first: $m) { edges { node { type } } } } } } }"  # noqa: E501


@pytest.mark.parametrize(
    ("variables", "message"),
    [
        pytest.param({"n": -5}, "first must be between 1 and 100, got -5", id="negative"),
        pytest.param({"n": 101}, "first must be between 1 and 100, got 101", id="over the limit"),
        pytest.param({"n": 1, "m": 0}, "first must be between 1 and 100, got 0", id="nested"),
    ],
)
async def test_a_page_given_as_a_variable_is_checked_before_any_resolver(
    sqlite_store: SQLiteStore, variables: dict[str, int], message: str
) -> None:
    statements: list[str] = []
    sqlite_store.trace(statements.append)
    async with _client(sqlite_store) as client:
        response = await client.post("/graphql", json={"query": VARIABLE_PAGES, "variables": variables})
    body = response.json()
    assert body.get("data") is None and [e["message"] for e in body["errors"]] == [message], body
    assert body["errors"][0]["extensions"] == {"code": "BAD_USER_INPUT", "field": "first"}
    assert statements == []


async def test_variable_pages_cost_what_they_ask_for(client: httpx.AsyncClient) -> None:
    small = await client.post("/graphql", json={"query": VARIABLE_PAGES, "variables": {"n": 5, "m": 5}})
    assert small.json() == {"data": {"profiles": {"edges": []}}}
    big = await client.post("/graphql", json={"query": VARIABLE_PAGES, "variables": {"n": 100, "m": 100}})
    [error] = big.json()["errors"]
    assert error["extensions"]["code"] == "LIMIT_EXCEEDED" and error["message"].startswith("query cost 30,301 ")
    default = await client.post("/graphql", json={"query": VARIABLE_PAGES, "variables": {"n": 100}})  # m: 5
    assert default.json() == {"data": {"profiles": {"edges": []}}}


async def test_the_largest_pages_each_field_allows_are_accepted(client: httpx.AsyncClient) -> None:
    for query in (
        "{ profiles(first: 100) { edges { cursor } } }",
        "{ segmentHistory(last: 500) { id } }",
        '{ recommendations(profileId: "p", first: 50) { score } }',  # NOT_FOUND: there is no profile p
        "{ mergeCandidates(first: 1000) { score } }",
    ):
        errors = (await client.post("/graphql", json={"query": query})).json().get("errors", [])
        assert {error["extensions"]["code"] for error in errors} <= {"NOT_FOUND"}, (query, errors)


def test_every_paged_field_has_a_maximum() -> None:
    for type_name, graphql_type in build_schema(QueryLimits())._schema.type_map.items():
        for field_name, definition in getattr(graphql_type, "fields", {}).items():
            for argument in PAGE_ARGUMENTS:
                if argument in getattr(definition, "args", {}):
                    assert page_maximum(type_name, field_name, argument, page_limit=100) is not None, (
                        f"{type_name}.{field_name}({argument}) has no maximum in graphql_schema/page_arguments.py"
                    )


# -- Issue 12, item 10: no "did you mean" with introspection off --------------------------------------------

SUGGESTED = [
    pytest.param({"query": "{ segmnts { id } }"}, id="a field"),
    pytest.param({"query": '{ profile(idd: "p") { id } }'}, id="an argument"),
    pytest.param({"query": "{ segmentHistory { chang } }"}, id="a field of a nested type"),
    pytest.param(
        {"query": "subscription { segmentMembershipChanged { change @skip(iff: true) } }"}, id="a directive argument"
    ),
    pytest.param(
        {"query": "{ profiles(filter: {stats: [{field: ORDRS, min: 1}]}) { edges { cursor } } }"},
        id="an enum value",
    ),
    pytest.param({"query": '{ profiles(filter: {nam: "x"}) { edges { cursor } } }'}, id="an input field"),
    pytest.param({"query": "query($f: ProfileFiltrInput) { profiles(filter: $f) { edges { cursor } } }"}, id="a type"),
    pytest.param(
        {
            "query": "query($f: ProfileFilterInput) { profiles(filter: $f) { edges { cursor } } }",
            "variables": {"f": {"nam": "x"}},
        },
        id="a variable's input field",
    ),
    pytest.param(
        {
            "query": "query($f: ProfileFilterInput) { profiles(filter: $f) { edges { cursor } } }",
            "variables": {"f": {"stats": [{"field": "ORDRS"}]}},
        },
        id="a variable's enum value",
    ),
]


@pytest.mark.parametrize("body", SUGGESTED)
async def test_production_suggests_no_names(sqlite_store: SQLiteStore, body: dict[str, Any]) -> None:
    async with _client(sqlite_store) as development:  # the same mistake in development gets a suggestion
        said = (await development.post("/graphql", json=body)).json()["errors"]
    assert any("Did you mean" in error["message"] for error in said), said
    async with _client(sqlite_store, environment="production") as production:
        response = await production.post("/graphql", json=body)
    errors = response.json()["errors"]
    assert errors and not any("Did you mean" in error["message"] for error in errors), errors
    # Nothing else is taken out (a value the client sent may be quoted back).
    assert {re.sub(r" Did you mean [^?]*\?", "", error["message"]) for error in said} == {e["message"] for e in errors}


async def test_the_document_length_limit_is_configured(sqlite_store: SQLiteStore) -> None:
    query = "{ segments { id } }" + " " * 3000
    async with _client(sqlite_store, max_query_length=2048) as client:
        codes, message = await _codes(client, query)
    assert codes == {"LIMIT_EXCEEDED"} and message.startswith("document of 3,019 characters exceeds the limit of 2,048")
    async with _client(sqlite_store) as client:
        assert await _codes(client, query) == (set(), "")


async def test_a_new_document_is_prepared_off_the_event_loop_once(monkeypatch: pytest.MonkeyPatch) -> None:
    schema = build_schema(QueryLimits())
    threads: list[str] = []
    prepare_now = schema.gate.prepare_now

    def recorded(text: str, rules: Any) -> Any:
        threads.append(threading.current_thread().name)
        return prepare_now(text, rules)

    monkeypatch.setattr(schema.gate, "prepare_now", recorded)
    long = "{ " + " ".join(f"a{n}: __typename" for n in range(20)) + " }"  # over INLINE_LENGTH characters
    results = await asyncio.gather(*(schema.execute(long) for _ in range(5)))  # five clients at once
    assert all(result.data == {f"a{n}": "Query" for n in range(20)} for result in results)
    assert len(threads) == 1 and threads[0].startswith("graphql-documents")  # one preparation, not on the loop
    assert (await schema.execute("{ __typename }")).data == {"__typename": "Query"}
    assert threads[1] == threading.current_thread().name  # a tiny one: prepared where it arrived


TOKEN_SAMPLES = [
    '{ a b(x: 1.5e10, y: -3, z: "s\\"t \\u00e9 ü", w: """bl\\"""ock "q" ""x""") ...F @skip(if: $v) } # c {\n',
    'query Q($a: [Int!]! = [1, 2]) { x(o: {k: "v", l: [true, null, ENUM]}) @include(if: true) { ... on T { y } } }',
    "#c1\n#c2\r\n{a}",
    '\ufeff{ a, b,,, c }\n"""\n  a description\n"""\nquery Q { a }',
    get_introspection_query(descriptions=True),
    Path(__file__).parents[2].joinpath("graphql_schema", "schema.graphql").read_text(),
]


@pytest.mark.parametrize("document", TOKEN_SAMPLES)
def test_tokens_are_counted_as_graphql_core_counts_them(document: str) -> None:
    token = parse(document).loc.start_token.next  # type: ignore[union-attr]
    count = 0
    while token is not None and token.kind is not TokenKind.EOF:
        count, token = count + 1, token.next
    assert not more_tokens_than(document, count) and more_tokens_than(document, count - 1)


HISTORY = """query($types: [String!], $channels: [String!]) { profiles(first: 1) { edges { node {
  interactions(first: 1, types: $types, channels: $channels) { totalCount } } } } }"""


async def test_history_filters_name_known_event_types_and_channels_only(client: httpx.AsyncClient) -> None:
    """Any list was taken: each length of it made a new SQL text the embedded store kept prepared on
    each connection, and thousands of names grew the server by hundreds of MB that never came back.
    A name that is no event type or channel is now refused by name, as a typo should be."""
    event = {"type": "page_view", "messageId": "m-1", "channel": "web", "timestamp": "2026-01-01T10:00:00Z",
             "identifiers": [{"type": "email", "value": "ada@example.com"}], "properties": {"url": "/"}}  # fmt: skip
    ingest = "mutation($events: [EventInput!]!) { ingestEvents(events: $events) { accepted } }"
    sent = await client.post("/graphql", json={"query": ingest, "variables": {"events": [event]}})
    assert sent.json()["data"]["ingestEvents"]["accepted"] == 1, sent.json()

    async def ask(**variables: list[str]) -> dict[str, Any]:
        response = await client.post("/graphql", json={"query": HISTORY, "variables": variables})
        body: dict[str, Any] = response.json()
        return body

    found = await ask(types=["page_view", "order_completed"], channels=["web"])
    assert found["data"]["profiles"]["edges"][0]["node"]["interactions"]["totalCount"] == 1, found
    for variables, message in (
        ({"types": ["page_view", "warp"]}, "types: unknown event type 'warp'"),
        ({"channels": ["carrier pigeon"]}, "channels: unknown channel 'carrier pigeon'"),
        ({"types": [f"type{n}" for n in range(9_000)]}, "types: unknown event type"),
    ):
        refused = await ask(**variables)
        assert {e["extensions"]["code"] for e in refused["errors"]} == {"BAD_USER_INPUT"}, refused
        assert refused["errors"][0]["message"].startswith(message), refused


@pytest.mark.parametrize(
    "document",
    [
        pytest.param(
            "{ segments { members(first: 30) { edges { node { segmentMemberships { segment {"
            " members(first: 30) { edges { node { id firstName lastName stats { orders revenue } } } } } } } } } } }",
            id="members-of-the-segments-of-members",
        ),
        pytest.param(
            "{ segmentHistory(last: 500) { profile { recommendations(first: 1) { score } } } }",
            id="recommendations-for-500-profiles",
        ),
    ],
)
async def test_unpaged_lists_and_expensive_fields_count_for_what_they_cost(
    client: httpx.AsyncClient, document: str
) -> None:
    """Both were within the cost limit: an unpaged list counted as one item, a recommendation (the
    catalogue scored for one profile) as one field. They took 2.6 s and 2.7 s of the server's CPU."""
    codes, message = await _codes(client, document)
    assert codes == {"LIMIT_EXCEEDED"} and "cost" in message, message


@pytest.mark.parametrize(
    "document",
    [
        """{ segments { name count members(first: 100) { edges { node { id firstName
          interactions(first: 10) { edges { node { type timestamp } } } } } } } }""",
        """{ profileByIdentifier(type: "email", value: "ada@example.com") { id firstName
          segmentMemberships { segment { name } since } consentHistory { purpose granted at }
          identifiers { type value } recommendations(first: 10) { score product { id name } } } }""",
    ],
    ids=["dashboard-members-and-their-history", "profile-page"],
)
async def test_what_a_dashboard_and_a_profile_page_ask_is_still_within_the_cost_limit(
    client: httpx.AsyncClient, document: str
) -> None:
    codes, message = await _codes(client, document)
    assert codes == set(), message


async def test_a_page_size_limit_below_the_default_page_bounds_the_pages_asked_for_none(
    sqlite_store: SQLiteStore,
) -> None:
    """With CDP_MAX_PAGE_SIZE=10, every connection asked without first or last was refused: "first must
    be between 1 and 10, got 20", for an argument the client never sent."""
    async with _client(sqlite_store, max_page_size=10) as client:
        events = [
            {"messageId": f"m{n}", "type": "page_view", "channel": "web", "timestamp": "2026-01-01T10:00:00Z",
             "identifiers": [{"type": "email", "value": f"p{n}@example.com"}], "properties": {"url": "/"}}
            for n in range(12)
        ]  # fmt: skip
        ingest = "mutation($events: [EventInput!]!) { ingestEvents(events: $events) { accepted } }"
        assert (await client.post("/graphql", json={"query": ingest, "variables": {"events": events}})).json()["data"][
            "ingestEvents"
        ]["accepted"] == 12
        answer = (await client.post("/graphql", json={"query": "{ profiles { totalCount edges { cursor } } }"})).json()
        assert "errors" not in answer, answer
        assert (answer["data"]["profiles"]["totalCount"], len(answer["data"]["profiles"]["edges"])) == (12, 10)
