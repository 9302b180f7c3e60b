"""API keys and scopes over HTTP and WebSocket: every root field needs its scope, personal data is
masked without read:pii, and authentication cannot be switched off beyond this machine."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import httpx
import pytest
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed
from websockets.typing import Subprotocol

from app.bootstrap import Services, development_key
from app.domain.access import Scope
from app.main import create_app
from app.services import api_keys
from app.services.ingestion import IngestionPolicy
from app.settings import Settings
from app.store.sqlite.store import SQLiteStore
from graphql_schema.mutations import Mutation
from graphql_schema.permissions import ScopeRequired
from graphql_schema.queries import Query
from graphql_schema.subscriptions import Subscription
from tests.server_process import running_server

# Every root field, the scope it needs, and a document that calls it. A new field without an entry
# here fails `test_every_root_field_declares_its_scope`.
OPERATIONS: dict[str, tuple[Scope | tuple[Scope, ...], str]] = {
    "profile": (Scope.READ_PROFILES, '{ profile(id: "x") { id } }'),
    "node": (Scope.READ_PROFILES, '{ node(id: "x") { id } }'),
    "profileByIdentifier": (
        Scope.READ_PROFILES,
        '{ profileByIdentifier(type: "email", value: "a@example.com") { id } }',
    ),
    "profiles": (Scope.READ_PROFILES, "{ profiles(first: 1) { edges { cursor } } }"),
    "mergeCandidates": ((Scope.READ_PROFILES, Scope.READ_PII), "{ mergeCandidates { score } }"),
    "mergeCandidatePairs": (
        (Scope.READ_PROFILES, Scope.READ_PII),
        "{ mergeCandidatePairs(first: 1) { totalCount edges { cursor } } }",
    ),
    "ingestEvents": (Scope.WRITE_EVENTS, "mutation { ingestEvents(events: []) { accepted } }"),
    "upsertProfile": (
        Scope.WRITE_PROFILES,
        'mutation { upsertProfile(input: {identifiers: [{type: "email", value: "u@example.com"}]}) { id } }',
    ),
    "mergeProfiles": (
        Scope.MERGE_PROFILES,
        'mutation { mergeProfiles(survivorId: "a", mergedIds: ["b"], reason: "r") { merge { id } } }',
    ),
    "unmergeProfile": (Scope.MERGE_PROFILES, 'mutation { unmergeProfile(mergeId: "m") { merge { id } } }'),
    "setConsent": (
        Scope.WRITE_CONSENT,
        'mutation { setConsent(profileId: "p", purpose: "analytics", granted: true, source: "form") { id } }',
    ),
    "deleteProfile": (Scope.PRIVACY_ERASE, 'mutation { deleteProfile(id: "p") { id } }'),
    "exportProfile": ((Scope.READ_PROFILES, Scope.READ_PII), '{ exportProfile(id: "p") }'),
    "segment": (Scope.READ_PROFILES, '{ segment(id: "s") { id } }'),
    "segments": (Scope.READ_PROFILES, "{ segments { id } }"),
    "segmentHistory": (Scope.READ_PROFILES, "{ segmentHistory { id } }"),
    "createSegment": (
        Scope.ADMIN_SEGMENTS,
        'mutation { createSegment(input: {name: "Buyers", condition: {compare: {path: "stats.orders", op: "gte", '
        "value: 1}}}) { members } }",
    ),
    "updateSegment": (
        Scope.ADMIN_SEGMENTS,
        'mutation { updateSegment(id: "s", input: {name: "x", condition: {hasIdentifier: {type: "email"}}}) '
        "{ members } }",
    ),
    "deleteSegment": (Scope.ADMIN_SEGMENTS, 'mutation { deleteSegment(id: "s") }'),
    "recomputeTraits": (Scope.ADMIN_SEGMENTS, "mutation { recomputeTraits { processed } }"),
    "upsertProducts": (
        Scope.WRITE_PROFILES,
        'mutation { upsertProducts(products: [{id: "sku-1", name: "Boot", category: "shoes", price: 80, stock: 2}]) '
        "{ id } }",
    ),
    "recommendations": (Scope.READ_PROFILES, '{ recommendations(profileId: "p") { score } }'),
    "apiKeys": (Scope.ADMIN_KEYS, "{ apiKeys { id name scopes } }"),
    "createApiKey": (
        Scope.ADMIN_KEYS,
        'mutation { createApiKey(name: "crm sync", scopes: ["write:profiles"]) { key { id scopes } token } }',
    ),
    "revokeApiKey": (Scope.ADMIN_KEYS, 'mutation { revokeApiKey(id: "k") { id revokedAt } }'),
}
# Subscriptions run over WebSocket only; their scope is checked in tests/e2e/test_segment_subscriptions.py.
SUBSCRIPTIONS: dict[str, Scope] = {"segmentMembershipChanged": Scope.SUBSCRIBE}


def _root_fields() -> dict[str, list[type]]:
    found: dict[str, list[type]] = {}
    for root in (Query, Mutation, Subscription):
        for field in root.__strawberry_definition__.fields:  # type: ignore[attr-defined]
            name = field.graphql_name or _camel(field.python_name)
            found[name] = [p for p in field.permission_classes if issubclass(p, ScopeRequired)]
    return found


def _camel(name: str) -> str:
    head, *rest = name.split("_")
    return head + "".join(part.capitalize() for part in rest)


def _needed(field: str) -> tuple[Scope, ...]:
    scopes = OPERATIONS[field][0]
    return scopes if isinstance(scopes, tuple) else (scopes,)


def test_every_root_field_declares_its_scope() -> None:
    fields = _root_fields()
    declared = {name: _needed(name) for name in OPERATIONS} | {n: (s,) for n, s in SUBSCRIPTIONS.items()}
    assert set(fields) == set(declared), "add the new field to OPERATIONS (or SUBSCRIPTIONS) with its scope"
    for name, permissions in fields.items():
        assert tuple(p.scope for p in permissions) == declared[name], name  # type: ignore[attr-defined]


@pytest.fixture
def app_services(sqlite_store: SQLiteStore) -> Services:
    return Services(settings=Settings(seed_fixtures=False), store=sqlite_store, ingestion=IngestionPolicy())


async def _call(services: Services, document: str, key: str | None) -> dict[str, Any]:
    headers = {"authorization": f"Bearer {key}"} if key else {}
    transport = httpx.ASGITransport(app=create_app(services=services))
    async with httpx.AsyncClient(transport=transport, base_url="http://t", headers=headers) as client:
        response = await client.post("/graphql", json={"query": document})
    body: dict[str, Any] = response.json()
    # Without a valid key the request is refused before it is read (401); anything else is answered.
    assert response.status_code == (401 if _codes(body) == {"UNAUTHENTICATED"} else 200), response.text
    return body


def _codes(body: dict[str, Any]) -> set[str]:
    return {e["extensions"]["code"] for e in body.get("errors", [])}


@pytest.mark.parametrize("field", sorted(OPERATIONS))
async def test_each_operation_needs_its_scope(app_services: Services, field: str) -> None:
    needed, document = _needed(field), OPERATIONS[field][1]
    for scope in needed:
        _, without = await api_keys.create_key(app_services.store, "without", [s for s in Scope if s != scope])
        refused = await _call(app_services, document, without)
        assert _codes(refused) == {"FORBIDDEN"}
        assert f"needs the scope {scope}" in refused["errors"][0]["message"]
    _, only = await api_keys.create_key(app_services.store, "only", list(needed))
    assert _codes(await _call(app_services, document, None)) == {"UNAUTHENTICATED"}
    allowed = await _call(app_services, document, only)
    assert not _codes(allowed) & {"FORBIDDEN", "UNAUTHENTICATED"}, allowed


async def test_forbidden_writes_write_nothing(app_services: Services) -> None:
    _, reader = await api_keys.create_key(app_services.store, "reader", [Scope.READ_PROFILES])
    body = await _call(app_services, OPERATIONS["upsertProfile"][1], reader)
    assert _codes(body) == {"FORBIDDEN"}
    assert await app_services.store.count_profiles() == 0


async def test_bad_and_revoked_keys_are_refused_with_the_reason(app_services: Services) -> None:
    document = OPERATIONS["profiles"][1]
    key, token = await api_keys.create_key(app_services.store, "soon revoked", [Scope.READ_PROFILES])
    assert not _codes(await _call(app_services, document, token))
    wrong_secret = token[:-4] + ("AAAA" if not token.endswith("AAAA") else "BBBB")
    assert (await _call(app_services, document, wrong_secret))["errors"][0]["message"] == "unknown API key"
    assert "expected cdp_" in (await _call(app_services, document, "hunter2"))["errors"][0]["message"]
    await api_keys.revoke_key(app_services.store, key.id)
    revoked = await _call(app_services, document, token)
    assert _codes(revoked) == {"UNAUTHENTICATED"} and "revoked" in revoked["errors"][0]["message"]


async def test_revoking_a_key_nobody_has_names_the_argument(app_services: Services) -> None:
    _, admin = await api_keys.create_key(app_services.store, "admin", [Scope.ADMIN_KEYS])
    [error] = (await _call(app_services, 'mutation { revokeApiKey(id: "nope") { id } }', admin))["errors"]
    assert (error["extensions"]["code"], error["extensions"]["field"]) == ("NOT_FOUND", "id"), error


PERSON = """mutation { upsertProfile(input: {
  identifiers: [{type: "email", value: "jeanne.dupont@example.com"}, {type: "phone", value: "+33 6 12 34 56 78"},
                {type: "customerId", value: "C42"}],
  firstName: "Jeanne", lastName: "Dupont", birthDate: "1980-03-12",
  addresses: [{street: "12 rue Victor Hugo", line2: "Bat B", city: "Lyon", postcode: "69002",
               country: "FR"}]}) { id } }"""
READ = """{ profileByIdentifier(type: "customerId", value: "C42") {
  piiMasked firstName lastName birthDate identifiers { type value } addresses { street line2 city postcode country }
  stats { eventsTotal } } }"""


async def test_personal_data_is_masked_without_read_pii(app_services: Services) -> None:
    _, writer = await api_keys.create_key(app_services.store, "writer", [Scope.WRITE_PROFILES])
    _, reader = await api_keys.create_key(app_services.store, "reader", [Scope.READ_PROFILES])
    _, pii = await api_keys.create_key(app_services.store, "pii", [Scope.READ_PROFILES, Scope.READ_PII])
    assert not _codes(await _call(app_services, PERSON, writer))

    masked = (await _call(app_services, READ, reader))["data"]["profileByIdentifier"]
    assert masked["piiMasked"] is True
    assert (masked["firstName"], masked["lastName"], masked["birthDate"]) == ("J***", "D***", None)
    assert {i["type"]: i["value"] for i in masked["identifiers"]} == {
        "email": "j***@example.com",
        "phone": "+33*******78",
        "customerId": "C42",
    }
    assert masked["addresses"] == [
        {"street": "1***", "line2": "B***", "city": "Lyon", "postcode": "6***", "country": "FR"}
    ]

    clear = (await _call(app_services, READ, pii))["data"]["profileByIdentifier"]
    assert clear["piiMasked"] is False
    assert (clear["firstName"], clear["birthDate"]) == ("Jeanne", "1980-03-12")
    assert "jeanne.dupont@example.com" in {i["value"] for i in clear["identifiers"]}


def test_authentication_off_is_refused_beyond_loopback(sqlite_store: SQLiteStore) -> None:
    exposed = Settings(seed_fixtures=False, auth=False, host="0.0.0.0")
    with pytest.raises(ValueError, match="CDP_AUTH=off is for local use only"):
        create_app(services=Services(settings=exposed, store=sqlite_store, ingestion=IngestionPolicy()))
    assert Settings(auth=False, host="127.0.0.1").binding_problem() is None
    assert Settings(auth=True, host="0.0.0.0").binding_problem() is None


async def test_websocket_connection_init_needs_a_valid_key(tmp_path: Path) -> None:
    env = {"CDP_DATABASE_URL": f"sqlite:///{tmp_path}/cdp.sqlite3", "CDP_SEED_FIXTURES": "false"}
    query = {"query": "{ profiles { edges { cursor } } }"}
    with running_server(env) as url:
        token = (tmp_path / "dev-api-key").read_text().strip()
        socket_url = url.replace("http", "ws") + "/graphql"
        async with connect(socket_url, subprotocols=[Subprotocol("graphql-transport-ws")]) as ws:
            await ws.send(json.dumps({"type": "connection_init", "payload": {}}))
            with pytest.raises(ConnectionClosed) as refused:
                await ws.recv()
        assert refused.value.rcvd is not None and refused.value.rcvd.code == 4403

        async with connect(socket_url, subprotocols=[Subprotocol("graphql-transport-ws")]) as ws:
            await ws.send(json.dumps({"type": "subscribe", "id": "1", "payload": query}))
            with pytest.raises(ConnectionClosed) as early:
                await ws.recv()
        assert early.value.rcvd is not None and early.value.rcvd.code == 4401  # subscribe before the ack

        async with connect(socket_url, subprotocols=[Subprotocol("graphql-transport-ws")]) as ws:
            await ws.send(json.dumps({"type": "connection_init", "payload": {"Authorization": f"Bearer {token}"}}))
            assert json.loads(await ws.recv())["type"] == "connection_ack"
            await ws.send(json.dumps({"type": "subscribe", "id": "1", "payload": query}))
            answer = json.loads(await ws.recv())
            assert answer["type"] == "next" and answer["payload"]["data"] == {"profiles": {"edges": []}}


async def test_the_development_key_answers_this_machine_only(app_services: Services, tmp_path: Path) -> None:
    """Found by an audit: `uvicorn app.main:create_app --factory --host 0.0.0.0` made the all-scopes
    development key (CDP_HOST says loopback) and answered it from another machine."""
    token = await development_key(app_services.store, tmp_path / "dev-api-key")
    _, other = await api_keys.create_key(app_services.store, "network client", [Scope.READ_PROFILES])
    document = OPERATIONS["profiles"][1]

    async def call(client: tuple[str, int], key: str) -> httpx.Response:
        transport = httpx.ASGITransport(app=create_app(services=app_services), client=client)
        headers = {"authorization": f"Bearer {key}"}
        async with httpx.AsyncClient(transport=transport, base_url="http://t", headers=headers) as http:
            return await http.post("/graphql", json={"query": document})

    refused = await call(("192.0.2.2", 50000), token)
    assert refused.status_code == 401 and _codes(refused.json()) == {"UNAUTHENTICATED"}
    assert "this machine only" in refused.json()["errors"][0]["message"]
    assert (await call(("127.0.0.1", 50000), token)).status_code == 200
    assert (await call(("192.0.2.2", 50000), other)).status_code == 200  # other keys answer the network
    # A development key made before it was this machine's only is replaced by one that is.
    _, older = await api_keys.create_key(app_services.store, "local-development", list(Scope))
    (tmp_path / "older-key").write_text(older)
    assert await development_key(app_services.store, tmp_path / "older-key") != older
    assert (await call(("192.0.2.2", 50000), older)).status_code == 401  # revoked
