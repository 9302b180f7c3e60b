"""Persisted queries over HTTP (issue 16 item 7): Apollo's automatic persisted queries (a hash the
server does not know is answered PersistedQueryNotFound, the document sent with its hash is checked
and remembered, then the hash alone works, over GET too) and the trusted-documents mode (only the
manifest's documents run; anything else is refused before it runs)."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from pydantic import ValidationError
from websockets.asyncio.client import connect
from websockets.typing import Subprotocol

from app.bootstrap import Services
from app.domain.access import Scope
from app.main import create_app
from app.services import api_keys
from app.services.ingestion import IngestionPolicy
from app.services.ports import ProfileStore
from app.settings import Settings, invalid_settings
from app.trusted_documents import document_hash
from tests.server_process import serving

CUSTOMER = 'query Customer($email: String!) { profileByIdentifier(type: "email", value: $email) { id firstName } }'
UPSERT = (
    'mutation Upsert($email: String!) { upsertProfile(input: {identifiers: [{type: "email", value: $email}], '
    'firstName: "Ann"}) { id } }'
)
SEGMENTS = "query Segments { segments { id name } }"
NOT_FOUND = {"errors": [{"message": "PersistedQueryNotFound", "extensions": {"code": "PERSISTED_QUERY_NOT_FOUND"}}]}


def _persisted(text: str) -> dict[str, Any]:
    return {"persistedQuery": {"version": 1, "sha256Hash": document_hash(text)}}


def _get_params(text: str, variables: dict[str, Any], name: str) -> dict[str, str]:
    """What Apollo Client sends over GET for a hashed query: no document, JSON in the query string."""
    return {
        "operationName": name,
        "variables": json.dumps(variables),
        "extensions": json.dumps(_persisted(text)),
    }


@pytest.fixture
async def app_with(store: ProfileStore) -> AsyncIterator[Any]:
    """A client of an application over `store` with the given settings, and a key with every scope."""
    clients: list[httpx.AsyncClient] = []
    _, token = await api_keys.create_key(store, "tests", list(Scope))

    async def make(**settings: Any) -> httpx.AsyncClient:
        configured = Settings(seed_fixtures=False, **settings)
        services = Services(settings=configured, store=store, ingestion=IngestionPolicy())
        transport = httpx.ASGITransport(app=create_app(services=services))
        client = httpx.AsyncClient(
            transport=transport, base_url="http://test", headers={"authorization": f"Bearer {token}"}
        )
        clients.append(client)
        return client

    yield make
    for client in clients:
        await client.aclose()


async def _upsert(client: httpx.AsyncClient, email: str) -> str:
    body = (await client.post("/graphql", json={"query": UPSERT, "variables": {"email": email}})).json()
    return str(body["data"]["upsertProfile"]["id"])


def _compiled_count(metrics: str) -> float:
    for line in metrics.splitlines():
        if line.startswith('cdp_graphql_executions_total{executor="compiled"}'):
            return float(line.rsplit(" ", 1)[1])
    return 0.0


# -- automatic persisted queries ------------------------------------------------------------------
async def test_an_unknown_hash_is_not_found_then_registered_then_answered_by_hash_over_get(app_with: Any) -> None:
    client = await app_with()
    ann = await _upsert(client, "ann@example.com")
    variables = {"email": "ann@example.com"}
    by_hash = {"operationName": "Customer", "variables": variables, "extensions": _persisted(CUSTOMER)}

    missing = await client.post("/graphql", json=by_hash)
    assert (missing.status_code, missing.json()) == (200, NOT_FOUND)
    # Apollo Client retries with the document and the same hash: checked, run and remembered.
    registered = await client.post("/graphql", json={"query": CUSTOMER, **by_hash})
    expected = {"data": {"profileByIdentifier": {"id": ann, "firstName": "Ann"}}}
    assert (registered.status_code, registered.json()) == (200, expected)

    compiled_before = _compiled_count((await client.get("/metrics")).text)
    for _ in range(2):  # the second GET of a known, compiled document takes the compiled plan
        answered = await client.get("/graphql", params=_get_params(CUSTOMER, variables, "Customer"))
        assert (answered.status_code, answered.json()) == (200, expected)
    assert _compiled_count((await client.get("/metrics")).text) > compiled_before
    posted = await client.post("/graphql", json=by_hash)
    assert posted.json() == expected


async def test_not_found_is_200_even_for_the_graphql_response_media_type(app_with: Any) -> None:
    client = await app_with()
    missing = await client.post(
        "/graphql",
        json={"extensions": _persisted(SEGMENTS)},
        headers={"accept": "application/graphql-response+json"},
    )
    assert (missing.status_code, missing.json()) == (200, NOT_FOUND)


async def test_a_hash_that_is_not_the_documents_is_refused_and_nothing_is_remembered(app_with: Any) -> None:
    client = await app_with()
    wrong = {"query": SEGMENTS, "extensions": _persisted(CUSTOMER)}
    refused = await client.post("/graphql", json=wrong)
    assert refused.status_code == 400
    error = refused.json()["errors"][0]
    assert error["extensions"]["code"] == "BAD_REQUEST"
    assert "not the SHA-256 of the document sent" in error["message"] and document_hash(SEGMENTS) in error["message"]
    assert (await client.post("/graphql", json={"extensions": _persisted(CUSTOMER)})).json() == NOT_FOUND


@pytest.mark.parametrize(
    "extension",
    [
        pytest.param({"version": 2, "sha256Hash": "a" * 64}, id="another version"),
        pytest.param({"version": 1, "sha256Hash": "not-a-hash"}, id="not hexadecimal"),
        pytest.param({"version": 1}, id="no hash"),
        pytest.param("abc", id="not an object"),
    ],
)
async def test_a_malformed_persisted_query_is_refused(app_with: Any, extension: object) -> None:
    client = await app_with()
    refused = await client.post("/graphql", json={"extensions": {"persistedQuery": extension}})
    assert refused.status_code == 400
    assert "persistedQuery" in refused.json()["errors"][0]["message"]


async def test_a_mutation_named_by_its_hash_is_still_refused_over_get(app_with: Any, store: ProfileStore) -> None:
    client = await app_with()
    await _upsert(client, "first@example.com")
    registered = await client.post(
        "/graphql",
        json={"query": UPSERT, "variables": {"email": "ann@example.com"}, "extensions": _persisted(UPSERT)},
    )
    assert "errors" not in registered.json()
    profiles = await store.count_profiles()
    refused = await client.get("/graphql", params=_get_params(UPSERT, {"email": "bob@example.com"}, "Upsert"))
    assert (refused.status_code, refused.headers["allow"]) == (405, "POST")
    assert await store.count_profiles() == profiles  # nothing written


async def test_each_process_remembers_a_bounded_number_of_documents(app_with: Any) -> None:
    client = await app_with(apq_cache_size=2)
    documents = [f"query Q{n} {{ segments {{ id }} }}" for n in range(3)]
    for text in documents:
        registered = await client.post("/graphql", json={"query": text, "extensions": _persisted(text)})
        assert "errors" not in registered.json()
    answers = [(await client.post("/graphql", json={"extensions": _persisted(t)})).json() for t in documents]
    assert answers == [NOT_FOUND, {"data": {"segments": []}}, {"data": {"segments": []}}]  # the oldest went
    other = await app_with()  # another process (a worker, a replica) learns for itself
    assert (await other.post("/graphql", json={"extensions": _persisted(documents[2])})).json() == NOT_FOUND


async def test_with_persisted_queries_off_a_hash_is_not_supported(app_with: Any) -> None:
    client = await app_with(apq_cache_size=0)
    answer = await client.post("/graphql", json={"extensions": _persisted(SEGMENTS)})
    assert answer.status_code == 200
    assert answer.json()["errors"][0]["extensions"]["code"] == "PERSISTED_QUERY_NOT_SUPPORTED"
    assert "errors" not in (await client.post("/graphql", json={"query": SEGMENTS})).json()


# -- trusted documents -------------------------------------------------------------------------------
def _apollo_manifest(path: Path, *documents: str) -> Path:
    operations = [{"id": document_hash(text), "name": f"Op{n}", "type": "query", "body": text}
                  for n, text in enumerate(documents)]  # fmt: skip
    path.write_text(json.dumps({"format": "apollo-persisted-query-manifest", "version": 1, "operations": operations}))
    return path


async def test_trusted_documents_run_by_text_or_hash_and_nothing_else_runs(
    app_with: Any, store: ProfileStore, tmp_path: Path
) -> None:
    manifest = _apollo_manifest(tmp_path / "manifest.json", CUSTOMER, SEGMENTS)
    client = await app_with(trusted_documents=manifest)
    variables = {"email": "ann@example.com"}
    expected = {"data": {"profileByIdentifier": None}}
    assert (await client.post("/graphql", json={"query": CUSTOMER, "variables": variables})).json() == expected
    by_hash = {"variables": variables, "extensions": _persisted(CUSTOMER)}
    assert (await client.post("/graphql", json=by_hash)).json() == expected
    by_get = await client.get("/graphql", params=_get_params(CUSTOMER, variables, "Customer"))
    assert (by_get.status_code, by_get.json()) == (200, expected)

    for request in (
        {"query": UPSERT, "variables": variables},  # a write not in the manifest
        {"query": UPSERT, "variables": variables, "extensions": _persisted(UPSERT)},  # nor learned by APQ
        {"query": CUSTOMER + " "},  # the exact text only
        {"query": "{ __schema { types { name } } }"},
    ):
        refused = await client.post("/graphql", json=request)
        assert refused.status_code == 403, request
        error = refused.json()["errors"][0]
        assert error["extensions"]["code"] == "PERSISTED_QUERY_NOT_IN_LIST"
        assert "CDP_TRUSTED_DOCUMENTS" in error["message"]
    assert await store.count_profiles() == 0  # the refused write wrote nothing
    unknown = await client.post("/graphql", json={"extensions": _persisted(UPSERT)})
    assert unknown.status_code == 404
    assert unknown.json()["errors"][0]["extensions"]["code"] == "PERSISTED_QUERY_NOT_IN_LIST"


async def test_a_relay_manifest_of_ids_is_read_too(app_with: Any, tmp_path: Path) -> None:
    manifest = tmp_path / "queries.json"
    manifest.write_text(json.dumps({"0f1e2d3c4b5a69788796a5b4c3d2e1f0": SEGMENTS}))
    client = await app_with(trusted_documents=manifest)
    assert (await client.post("/graphql", json={"query": SEGMENTS})).json() == {"data": {"segments": []}}
    assert (await client.post("/graphql", json={"extensions": _persisted(SEGMENTS)})).json() == {
        "data": {"segments": []}
    }
    assert (await client.post("/graphql", json={"query": CUSTOMER})).status_code == 403


@pytest.mark.parametrize(
    ("content", "reason"),
    [
        pytest.param(None, "cannot read the manifest", id="missing"),
        pytest.param("{", "is not JSON", id="not JSON"),
        pytest.param("[]", "expected an apollo-persisted-query-manifest", id="a list"),
        pytest.param("{}", "holds no documents", id="empty"),
        pytest.param('{"a": 1}', "entry 1", id="not a document"),
        pytest.param('{"format": "apollo-persisted-query-manifest", "version": 2}', "version 1", id="a version"),
    ],
)
def test_a_manifest_the_server_cannot_use_is_a_one_line_bad_setting(
    tmp_path: Path, content: str | None, reason: str
) -> None:
    path = tmp_path / "manifest.json"
    if content is not None:
        path.write_text(content)
    with pytest.raises(ValidationError) as error:
        Settings(trusted_documents=path)
    line = invalid_settings(error.value)
    assert line.startswith("bad setting CDP_TRUSTED_DOCUMENTS=") and reason in line and "\n" not in line


async def test_a_subscription_not_in_the_manifest_is_refused_over_websocket(
    store: ProfileStore, tmp_path: Path
) -> None:
    trusted = "subscription Trusted { segmentMembershipChanged { change } }"
    manifest = _apollo_manifest(tmp_path / "manifest.json", trusted)
    settings = Settings(seed_fixtures=False, trusted_documents=manifest)
    services = Services(settings=settings, store=store, ingestion=IngestionPolicy())
    _, token = await api_keys.create_key(store, "tests", [Scope.SUBSCRIBE])
    async with serving(services) as url:
        ws = await connect(f"ws://{url}/graphql", subprotocols=[Subprotocol("graphql-transport-ws")])
        await ws.send(json.dumps({"type": "connection_init", "payload": {"Authorization": f"Bearer {token}"}}))
        assert json.loads(await asyncio.wait_for(ws.recv(), 5))["type"] == "connection_ack"
        other = "subscription { segmentMembershipChanged { change profileId } }"
        await ws.send(json.dumps({"id": "1", "type": "subscribe", "payload": {"query": other}}))
        answer = json.loads(await asyncio.wait_for(ws.recv(), 5))
        assert (answer["id"], answer["type"]) == ("1", "error")
        assert answer["payload"][0]["extensions"]["code"] == "PERSISTED_QUERY_NOT_IN_LIST"
        await ws.send(json.dumps({"id": "2", "type": "subscribe", "payload": {"query": trusted}}))
        await ws.send(json.dumps({"type": "ping"}))
        assert json.loads(await asyncio.wait_for(ws.recv(), 5))["type"] == "pong"  # subscribed, nothing refused
        await ws.close()
