"""Cross-origin browser calls over a real socket (issue 16 item 5): CDP_CORS_ORIGINS lists the origins
allowed beyond the server's own; preflights from them are answered, from others refused."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import httpx
import pytest
from pydantic import ValidationError

from app.bootstrap import Services
from app.domain.access import Scope
from app.main import CORS_MAX_AGE_SECONDS
from app.services.api_keys import create_key
from app.services.ingestion import IngestionPolicy
from app.settings import Settings
from app.store.sqlite.store import SQLiteStore
from tests.server_process import serving

APP = "https://app.example.com"
OTHER = "https://evil.example.net"
PREFLIGHT = {"access-control-request-method": "POST", "access-control-request-headers": "authorization, content-type"}


@asynccontextmanager
async def _server(store: SQLiteStore, origins: list[str]) -> AsyncIterator[httpx.AsyncClient]:
    settings = Settings(seed_fixtures=False, cors_origins=origins)
    services = Services(settings=settings, store=store, ingestion=IngestionPolicy())
    async with serving(services) as host, httpx.AsyncClient(base_url=f"http://{host}") as http:
        yield http


@pytest.fixture
async def token(sqlite_store: SQLiteStore) -> str:
    _, token = await create_key(sqlite_store, "cors", list(Scope))
    return token


async def test_a_preflight_from_a_listed_origin_is_answered(sqlite_store: SQLiteStore) -> None:
    async with _server(sqlite_store, [APP]) as http:
        response = await http.options("/graphql", headers={"origin": APP, **PREFLIGHT})
    assert response.status_code == 200
    assert response.headers["access-control-allow-origin"] == APP
    assert response.headers["access-control-allow-credentials"] == "true"
    assert set(response.headers["access-control-allow-methods"].split(", ")) == {"GET", "POST"}
    allowed = {h.strip().lower() for h in response.headers["access-control-allow-headers"].split(",")}
    assert {"authorization", "content-type"} <= allowed
    assert response.headers["access-control-max-age"] == str(CORS_MAX_AGE_SECONDS)
    assert "origin" in response.headers["vary"].lower()


async def test_a_preflight_from_another_origin_is_refused(sqlite_store: SQLiteStore) -> None:
    async with _server(sqlite_store, [APP]) as http:
        response = await http.options("/graphql", headers={"origin": OTHER, **PREFLIGHT})
    assert response.status_code == 400
    assert "access-control-allow-origin" not in response.headers


async def test_a_preflight_asking_for_a_method_beyond_get_and_post_is_refused(sqlite_store: SQLiteStore) -> None:
    async with _server(sqlite_store, [APP]) as http:
        response = await http.options("/graphql", headers={"origin": APP, "access-control-request-method": "DELETE"})
    assert response.status_code == 400


async def test_the_actual_request_from_a_listed_origin_may_be_read(sqlite_store: SQLiteStore, token: str) -> None:
    async with _server(sqlite_store, [APP]) as http:
        response = await http.post(
            "/graphql",
            json={"query": "{ __typename }"},
            headers={"origin": APP, "authorization": f"Bearer {token}"},
        )
        other = await http.post(
            "/graphql",
            json={"query": "{ __typename }"},
            headers={"origin": OTHER, "authorization": f"Bearer {token}"},
        )
    assert response.json() == {"data": {"__typename": "Query"}}
    assert response.headers["access-control-allow-origin"] == APP
    assert response.headers["access-control-allow-credentials"] == "true"
    assert "x-request-id" in response.headers["access-control-expose-headers"].lower()
    assert "access-control-allow-origin" not in other.headers  # the browser withholds it from the page


async def test_any_origin_is_allowed_without_credentials(sqlite_store: SQLiteStore, token: str) -> None:
    async with _server(sqlite_store, ["*"]) as http:
        preflight = await http.options("/graphql", headers={"origin": OTHER, **PREFLIGHT})
        actual = await http.post(
            "/graphql",
            json={"query": "{ __typename }"},
            headers={"origin": OTHER, "authorization": f"Bearer {token}", "cookie": "session=1"},
        )
    assert preflight.status_code == 200
    assert preflight.headers["access-control-allow-origin"] == "*"
    assert "access-control-allow-credentials" not in preflight.headers
    assert "access-control-allow-credentials" not in actual.headers
    assert "authorization" in preflight.headers["access-control-allow-headers"].lower()


async def test_by_default_no_other_origin_is_allowed(sqlite_store: SQLiteStore, token: str) -> None:
    async with _server(sqlite_store, []) as http:
        preflight = await http.options("/graphql", headers={"origin": APP, **PREFLIGHT})
        actual = await http.post(
            "/graphql", json={"query": "{ __typename }"}, headers={"origin": APP, "authorization": f"Bearer {token}"}
        )
    assert preflight.status_code == 405
    assert not any(name.startswith("access-control-") for name in preflight.headers)
    assert actual.status_code == 200
    assert not any(name.startswith("access-control-") for name in actual.headers)


@pytest.mark.parametrize(
    ("value", "says"),
    [
        pytest.param("https://app.example.com/", "not an origin", id="trailing-slash"),
        pytest.param("app.example.com", "not an origin", id="no-scheme"),
        pytest.param("https://app.example.com/graphql", "not an origin", id="path"),
        pytest.param("*, https://app.example.com", "stands alone", id="star-with-others"),
        pytest.param('["https://a.example"', "JSON", id="broken-json"),
    ],
)
def test_a_malformed_origin_list_is_refused_naming_the_setting(
    value: str, says: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("CDP_CORS_ORIGINS", value)
    with pytest.raises(ValidationError, match=says) as refused:
        Settings()
    assert refused.value.errors()[0]["loc"] == ("cors_origins",)


def test_origins_are_read_comma_separated_or_as_json(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CDP_CORS_ORIGINS", "https://a.example, http://localhost:3000")
    assert Settings().cors_origins == ["https://a.example", "http://localhost:3000"]
    monkeypatch.setenv("CDP_CORS_ORIGINS", '["https://a.example"]')
    assert Settings().cors_origins == ["https://a.example"]
