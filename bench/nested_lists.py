"""Nested lists beside their flat query (issue 14, batched loads): `segmentHistory(last: 500)` with each
event's segment and profile, and `segments { members(first: 100) { … interactions(first: 10) } }`,
each beside the same list without the nested fields (its floor), in process (the app through
httpx's ASGI transport: no network, no server; the process's collector set as the server sets it), on
an embedded store built through the services. Statements counted on the store's read connections;
medians of several runs, the flat and the nested query alternating."""

from __future__ import annotations

import argparse
import statistics
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx

from app.bootstrap import Services
from app.collector import tune_for_serving
from app.domain.events import RawEvent, RawIdentifier
from app.main import create_app
from app.services.ingestion import IngestionPolicy, ingest_events
from app.settings import Settings
from app.store.sqlite.store import SQLiteStore
from bench.common import heading, machine_lines, run_async, say, temp_dir
from bench.targets import Row, ms, print_rows, times

TIERS = ("gold", "silver", "bronze", "none")
CREATE = """mutation($name: String!, $tier: String!) { createSegment(input: {name: $name, traits: {tier: "string"},
  condition: {compare: {path: "traits.tier", op: "eq", value: $tier}}}) { entered } }"""
PAIRS = [
    (
        "segmentHistory(last: 500) { segment profile }",
        "{ segmentHistory(last: 500) { id change at cause segmentId profileId } }",
        "{ segmentHistory(last: 500) { id change at cause segmentId profileId "
        "segment { name } profile { firstName } } }",
    ),
    (
        "segments { members(first: 100) { interactions(first: 10) } }",
        "{ segments { id name members(first: 100) { edges { node { id firstName } } } } }",
        "{ segments { id name members(first: 100) { edges { node { id firstName "
        "interactions(first: 10) { edges { node { type timestamp } } } } } } } }",
    ),
]


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--customers", type=int, default=2000, help="profiles in the built store")
    parser.add_argument("--runs", type=int, default=31, help="timed runs of each query (after 2 warm-up runs)")


def run(args: argparse.Namespace) -> None:
    heading("CDP core: nested lists beside their flat query")
    for name, value in machine_lines():
        say(f"  {name:<9} {value}")
    with temp_dir() as work:
        run_async(_measure(work / "cdp.sqlite3", customers=args.customers, runs=args.runs))


def _events(customers: int) -> list[RawEvent]:
    """Each customer: an identify (first name, tier) and 12 page views, a second apart."""
    start = datetime.now(UTC) - timedelta(days=1)
    found = []
    for n in range(customers):
        who = [RawIdentifier("email", f"c{n}@example.com")]
        identify = {"firstName": f"C{n}", "traits": {"tier": TIERS[n % len(TIERS)]}}
        kinds = [("identify", identify)] + [("page_view", {"url": f"/p/{k}"}) for k in range(12)]
        for k, (type_, properties) in enumerate(kinds):
            at = start + timedelta(minutes=n, seconds=k)
            found.append(
                RawEvent(
                    message_id=f"m-{n}-{k}",
                    type=type_,
                    channel="web",
                    timestamp=at,
                    identifiers=who,
                    properties=properties,
                )
            )
    return found


async def _measure(path: Path, *, customers: int, runs: int) -> None:
    store = SQLiteStore(path)
    try:
        built = time.perf_counter()
        events = _events(customers)
        for start in range(0, len(events), 1000):
            await ingest_events(store, events[start : start + 1000])
        services = Services(
            settings=Settings(seed_fixtures=False, auth=False), store=store, ingestion=IngestionPolicy()
        )
        transport = httpx.ASGITransport(app=create_app(services=services))
        async with httpx.AsyncClient(transport=transport, base_url="http://bench") as client:
            for tier in TIERS[:3]:
                await client.post("/graphql", json={"query": CREATE, "variables": {"name": tier, "tier": tier}})
            say(f"\n  store: {customers:,} profiles, 13 events each, 3 segments ({time.perf_counter() - built:.1f} s)")
            tune_for_serving()  # the collector's thresholds and the loop's executor as `python -m app serve` sets them
            statements: list[str] = []
            store.trace(statements.append)
            rows = []
            for measure, flat, nested in PAIRS:
                floor, value, count = await _medians(client, statements, flat, nested, runs)
                say(f"  {measure}: {count} statements nested")
                rows.append(Row(measure, ms(value), "<= 2x flat", ms(floor), times(value, floor), value <= 2 * floor))
            store.trace(None)
        say()
        print_rows(rows)
    finally:
        await store.close()


async def _medians(
    client: httpx.AsyncClient, statements: list[str], flat: str, nested: str, runs: int
) -> tuple[float, float, int]:
    """The median times of the flat and the nested query, run alternately (a slower spell of this
    shared machine falls on both), and the statements the nested one ran."""
    taken: dict[str, list[float]] = {flat: [], nested: []}
    for n in range(runs + 2):
        for query in (flat, nested):
            statements.clear()
            started = time.perf_counter()
            body = (await client.post("/graphql", json={"query": query})).json()
            if n >= 2:
                taken[query].append((time.perf_counter() - started) * 1000)
            if "errors" in body:
                raise RuntimeError(f"{query}: {body['errors'][:1]}")
    return statistics.median(taken[flat]), statistics.median(taken[nested]), len(statements)
