from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import httpx
import pytest

from app.bootstrap import Services
from app.main import create_app
from app.services.ingestion import IngestionPolicy
from app.services.ports import ProfileStore
from app.settings import Settings

GraphQL = Callable[..., Awaitable[dict[str, Any]]]


@pytest.fixture
async def client(store: ProfileStore) -> AsyncIterator[httpx.AsyncClient]:
    services = Services(settings=Settings(seed_fixtures=False), store=store, ingestion=IngestionPolicy())
    transport = httpx.ASGITransport(app=create_app(services=services))
    async with httpx.AsyncClient(transport=transport, base_url="http://test") as http:
        yield http


@pytest.fixture
def gql(client: httpx.AsyncClient) -> GraphQL:
    async def run(query: str, variables: dict[str, Any] | None = None, *, status: int = 200) -> dict[str, Any]:
        response = await client.post("/graphql", json={"query": query, "variables": variables or {}})
        assert response.status_code == status, response.text
        body: dict[str, Any] = response.json()
        return body

    return run
