"""Nested lists beside their flat query (issue 14, batched loads): `segmentHistory(last: 500)` with each
event's segment and profile, and `segments { members(first: 100) { … interactions(first: 10) } }`,
each beside the same list without the nested fields (its floor), on an embedded store built through
the services.

The store is built and the nested queries' statements are counted in this process (the store's read
connections traced). The times come from outside: the real server (`python -m app serve`, one
worker) pinned to one core, wrk with one connection on the other, asking one query after the other;
rounds alternate the flat and the nested query (a slower spell of this shared machine falls on
both), and each query's figure is the median over its rounds of wrk's median latency. An in-process
client would time its own parsing of the answers too, and the nested answers are 12 times larger.

    python -m bench nested                       # 2,000 customers, 5 rounds of 3 s per query
    python -m bench nested --rounds 3 --seconds 2"""

from __future__ import annotations

import argparse
import statistics
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import orjson

from app.bootstrap import Services
from app.domain.events import RawEvent, RawIdentifier
from app.main import create_app
from app.services.ingestion import IngestionPolicy, ingest_events
from app.settings import Settings
from app.store.sqlite.store import SQLiteStore
from bench import process_tree, wrk
from bench.common import heading, run_async, say, say_machine, table, temp_dir
from bench.dataset import settle_as_served, upkept_policy
from bench.serving import app_server, code_version, worker_setting
from bench.targets import Row, ms, print_rows, times

WARM_UP_S = 1

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
    parser.add_argument("--rounds", type=int, default=5, help="rounds of each query, flat and nested alternating")
    parser.add_argument("--seconds", type=int, default=3, help="length of each round (default 3)")


def run(args: argparse.Namespace) -> None:
    heading("CDP core: nested lists beside their flat query")
    cores = process_tree.plan_cores()
    workers_env, workers_text = worker_setting()
    no_wrk = wrk.missing()
    with temp_dir() as work:
        say_machine(work)
        say(f"  cores     {cores.describe()}")
        say(f"  server    `python -m app serve`, CDP_AUTH=off, 127.0.0.1; workers: {workers_text}")
        say(f"  load      {no_wrk or wrk.version()}, 1 connection")
        say(f"  code      {code_version()}")
        if no_wrk:
            print_rows([Row.skipped(measure, "<= 2x flat", no_wrk) for measure, _, _ in PAIRS])
            return
        database = work / "cdp.sqlite3"
        run_async(_build(database, customers=args.customers))
        process_tree.pin_self(cores.load)
        rows = _measure(database, work, cores, workers_env, rounds=args.rounds, seconds=args.seconds)
    say()
    print_rows(rows)


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


async def _build(path: Path, *, customers: int) -> None:
    """The store, through the services and the API, and the statements each nested query runs."""
    store = SQLiteStore(path)
    try:
        built = time.perf_counter()
        events = _events(customers)
        # Built as a server would have left it (bench/dataset.py): without segment upkeep listening,
        # the server caught up every profile at start (their segments evaluated, their lookalikes
        # sought), and the nested rounds ran ~0.3-0.8 ms slower after it, the flat ones ~0.1 ms; without
        # the traits job, it rewrote every profile a minute in (the nested rounds ~5.3 -> ~6.6 ms).
        policy = upkept_policy(store)
        for start in range(0, len(events), 1000):
            await ingest_events(store, events[start : start + 1000], policy)
        await settle_as_served(store, policy)
        services = Services(
            settings=Settings(seed_fixtures=False, auth=False), store=store, ingestion=IngestionPolicy()
        )
        transport = httpx.ASGITransport(app=create_app(services=services))
        async with httpx.AsyncClient(transport=transport, base_url="http://bench") as client:
            for tier in TIERS[:3]:
                await client.post("/graphql", json={"query": CREATE, "variables": {"name": tier, "tier": tier}})
            say(f"\n  store: {customers:,} profiles, 13 events each, 3 segments ({time.perf_counter() - built:.1f} s)")
            statements: list[str] = []
            store.trace(statements.append)
            for measure, _, nested in PAIRS:
                statements.clear()
                body = (await client.post("/graphql", json={"query": nested})).json()
                if "errors" in body:
                    raise RuntimeError(f"{nested}: {body['errors'][:1]}")
                say(f"  {measure}: {len(statements)} statements nested")
            store.trace(None)
    finally:
        await store.close()


def _measure(
    database: Path, work: Path, cores: process_tree.Cores, workers_env: dict[str, str], *, rounds: int, seconds: int
) -> list[Row]:
    heading(f"Latency: wrk, 1 connection, {rounds} round(s) of {seconds} s per query, flat and nested alternating")
    bodies = {query: wrk.write_bodies(work / f"q{n}.txt", [orjson.dumps({"query": query})])
              for n, query in enumerate(q for _, flat, nested in PAIRS for q in (flat, nested))}  # fmt: skip
    load = cores.prefix(cores.load)
    rows, lines = [], []
    with app_server(database, work, cores, workers_env, "app") as app:

        def p50(name: str, query: str, length: int) -> float:
            process_tree.wait_idle(app.process.pid)
            result = wrk.Wrk(name, f"{app.base_url}/graphql", connections=1, seconds=length, log_dir=work,
                             bodies=bodies[query], expect='"data"', prefix=load).result()  # fmt: skip
            if result.failures:
                raise RuntimeError(f"{name}: {result.problems()}")
            return result.p50_ms

        for n, (measure, flat, nested) in enumerate(PAIRS):
            taken: dict[str, list[float]] = {flat: [], nested: []}
            for number in range(rounds):
                for kind, query in (("flat", flat), ("nested", nested)):
                    if number == 0:
                        p50(f"{n}-{kind}-warm-up", query, WARM_UP_S)
                    taken[query].append(p50(f"{n}-{kind}-{number}", query, seconds))
            floor, value = statistics.median(taken[flat]), statistics.median(taken[nested])
            lines.append([measure, " ".join(ms(x) for x in taken[flat]), " ".join(ms(x) for x in taken[nested])])
            rows.append(Row(measure, ms(value), "<= 2x flat", ms(floor), times(value, floor), value <= 2 * floor))
    table(["query", "flat p50 by round", "nested p50 by round"], lines)
    return rows
