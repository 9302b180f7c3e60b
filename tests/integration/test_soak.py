"""Soak: 20 concurrent clients ingest and query over loopback HTTP for a minute while 1% of all store
calls fail (before reaching the database, or after a write whose acknowledgement is lost), below the
storage layer's retries as in production. Clients retry a failed batch as a real client would
(messageIds make that safe). Afterwards every event reported ACCEPTED is stored exactly once, no
counter counts an event twice, and no identifier points at a missing profile.
CDP_SOAK_SECONDS shortens it for a quick local run."""

from __future__ import annotations

import asyncio
import os
import random
import sqlite3
from collections.abc import AsyncIterator

import httpx
import pytest

from app.bootstrap import Services
from app.services.ingestion import IngestionPolicy
from app.settings import Settings
from app.store.retrying import RetryingStore, sqlite_unreachable
from app.store.sqlite.store import SQLiteStore
from tests.faults import FlakyStore
from tests.server_process import serving

SECONDS = float(os.environ.get("CDP_SOAK_SECONDS", "60"))
CLIENTS = 20
CUSTOMERS = 200
INGEST = """mutation($events: [EventInput!]!) { ingestEvents(events: $events) {
  results { messageId status } } }"""
LOOKUP = """query($email: String!) { profileByIdentifier(type: "email", value: $email) { id stats { eventsTotal } } }"""


@pytest.fixture
async def flaky_server(sqlite_store: SQLiteStore) -> AsyncIterator[tuple[str, FlakyStore]]:
    # A batch is a handful of store calls now (about 90 for 10 events before batch-native ingestion):
    # 4% of calls failing still makes some client calls exhaust their retries, as the test needs.
    flaky = FlakyStore(sqlite_store, rate=0.04, seed=20261123)
    # As open_store builds it: the storage layer's retries above the failing calls.
    store = RetryingStore(flaky, unreachable=sqlite_unreachable)  # type: ignore[arg-type]
    settings = Settings(seed_fixtures=False, auth=False)
    services = Services(settings=settings, store=store, ingestion=IngestionPolicy())
    async with serving(services) as address:
        yield f"http://{address}", flaky


async def _client(url: str, number: int, deadline: float, accepted: set[str], stats: dict[str, int]) -> None:
    rng = random.Random(number)
    sequence = 0
    async with httpx.AsyncClient(base_url=url, timeout=30) as http:
        while asyncio.get_running_loop().time() < deadline:
            batch = []
            for _ in range(10):
                sequence += 1
                email = f"c{rng.randrange(CUSTOMERS)}@example.com"
                kind, properties = rng.choice(
                    [
                        ("page_view", {"url": "/"}),
                        ("order_completed", {"orderId": f"o{number}-{sequence}", "total": 9.5}),
                    ]
                )
                batch.append(
                    {
                        "messageId": f"soak-{number}-{sequence}",
                        "type": kind,
                        "channel": "web",
                        "timestamp": "2026-11-01T10:00:00Z",
                        "identifiers": [{"type": "email", "value": email}],
                        "properties": properties,
                    }
                )
            for _attempt in range(5):  # a failed call is sent again, whole: replays are DUPLICATE
                body = (await http.post("/graphql", json={"query": INGEST, "variables": {"events": batch}})).json()
                stats["calls"] += 1
                if body.get("errors"):
                    stats["failed calls"] += 1
                    assert {e["extensions"]["code"] for e in body["errors"]} <= {"STORE_UNAVAILABLE"}, body
                    continue
                results = body["data"]["ingestEvents"]["results"]
                accepted.update(r["messageId"] for r in results if r["status"] == "ACCEPTED")
                stats["duplicates"] += sum(r["status"] == "DUPLICATE" for r in results)
                break
            lookup = await http.post(
                "/graphql", json={"query": LOOKUP, "variables": {"email": batch[0]["identifiers"][0]["value"]}}
            )
            stats["lookups"] += 1
            stats["failed lookups"] += bool(lookup.json().get("errors"))


async def test_twenty_clients_for_a_minute_with_four_percent_of_store_calls_failing(
    flaky_server: tuple[str, FlakyStore], sqlite_store: SQLiteStore
) -> None:
    url, flaky = flaky_server
    accepted: set[str] = set()
    stats: dict[str, int] = {"calls": 0, "failed calls": 0, "duplicates": 0, "lookups": 0, "failed lookups": 0}
    deadline = asyncio.get_running_loop().time() + SECONDS
    await asyncio.gather(*(_client(url, n, deadline, accepted, stats) for n in range(CLIENTS)))
    flaky.rate = 0.0
    print(f"\nsoak: {len(accepted):,} events accepted, {flaky.injected:,} store failures injected, {stats}")
    assert flaky.injected > 0 and stats["failed calls"] > 0 and len(accepted) > 1000
    assert stats["failed lookups"] * 1000 <= stats["lookups"]  # reads are retried: a lookup all but never fails

    with sqlite3.connect(sqlite_store.path) as db:
        stored: dict[str, int] = {}
        for (message_id,) in db.execute("SELECT message_id FROM history"):
            stored[message_id] = stored.get(message_id, 0) + 1
        processed = {row[0] for row in db.execute("SELECT message_id FROM processed_messages")}
        orphans = db.execute(
            "SELECT count(*) FROM identities i LEFT JOIN profiles p ON p.id = i.profile_id WHERE p.id IS NULL"
        ).fetchone()[0]
        counted = db.execute(
            "SELECT p.id, json_extract(p.doc, '$.stats.eventsTotal'), "
            "(SELECT count(*) FROM history i WHERE i.profile_id = p.id) "
            "FROM profiles p WHERE p.merged_into IS NULL"
        ).fetchall()
    assert accepted <= set(stored), f"{len(accepted - set(stored))} accepted events are missing"
    assert all(n == 1 for n in stored.values()), "an event was stored twice"
    assert set(stored) == processed  # nothing stored that was not recorded as processed, and vice versa
    assert orphans == 0
    assert [(pid, total, n) for pid, total, n in counted if (total or 0) != n] == []  # no counter counted twice
