"""A frontend's typical query costs one database round trip for the profile (counted on SQLite,
whose every statement is visible through the connection's trace hook)."""

from __future__ import annotations

from collections.abc import AsyncIterator

import httpx
import pytest

from app.bootstrap import Services
from app.main import create_app
from app.services.ingestion import IngestionPolicy, ingest_events
from app.settings import Settings
from app.store.sqlite.store import SQLiteStore
from tests.builders import event


@pytest.fixture
async def traced(sqlite_store: SQLiteStore) -> AsyncIterator[tuple[httpx.AsyncClient, list[str]]]:
    await ingest_events(sqlite_store, [event("page_view", minutes=n) for n in range(30)])
    statements: list[str] = []
    sqlite_store.trace(statements.append)
    # Authentication off: its key lookup is not the profile's cost, which is what is counted here.
    settings = Settings(seed_fixtures=False, auth=False)
    services = Services(settings=settings, store=sqlite_store, ingestion=IngestionPolicy())
    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app=create_app(services=services)), base_url="http://t"
    ) as c:
        yield c, statements


async def test_traits_stats_and_last_ten_interactions_are_one_round_trip(
    traced: tuple[httpx.AsyncClient, list[str]],
) -> None:
    client, statements = traced
    query = """{ profileByIdentifier(type: "email", value: "emma@example.com") {
        traits stats { orders lastSeenAt } interactions(first: 10) { edges { node { type timestamp } } } } }"""
    body = (await client.post("/graphql", json={"query": query})).json()
    assert len(body["data"]["profileByIdentifier"]["interactions"]["edges"]) == 10
    assert len(statements) == 1, statements


async def test_paging_past_the_embedded_list_costs_one_more(traced: tuple[httpx.AsyncClient, list[str]]) -> None:
    client, statements = traced
    query = """{ profileByIdentifier(type: "email", value: "emma@example.com") {
        interactions(first: 10, types: ["email_open"]) { edges { node { type } } } } }"""
    await client.post("/graphql", json={"query": query})
    assert len(statements) == 1  # all 30 interactions are embedded: nothing more to read
