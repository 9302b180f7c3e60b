from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import httpx
import pytest

from app.bootstrap import Services
from app.domain.access import Scope
from app.main import create_app
from app.services.api_keys import create_key
from app.services.ingestion import IngestionPolicy
from app.services.ports import ProfileStore
from app.settings import Settings

GraphQL = Callable[..., Awaitable[dict[str, Any]]]


@pytest.fixture
def services(store: ProfileStore) -> Services:
    return Services(settings=Settings(seed_fixtures=False), store=store, ingestion=IngestionPolicy())


@pytest.fixture
async def admin_key(store: ProfileStore) -> str:
    """A key with every scope: what the tests of behaviour (not of access control) call with."""
    _, token = await create_key(store, "tests", list(Scope))
    return token


@pytest.fixture
async def client(services: Services, admin_key: str) -> AsyncIterator[httpx.AsyncClient]:
    transport = httpx.ASGITransport(app=create_app(services=services))
    headers = {"authorization": f"Bearer {admin_key}"}
    async with httpx.AsyncClient(transport=transport, base_url="http://test", headers=headers) as http:
        yield http


@pytest.fixture
def gql(client: httpx.AsyncClient) -> GraphQL:
    async def run(query: str, variables: dict[str, Any] | None = None, *, status: int = 200) -> dict[str, Any]:
        response = await client.post("/graphql", json={"query": query, "variables": variables or {}})
        assert response.status_code == status, response.text
        body: dict[str, Any] = response.json()
        return body

    return run
