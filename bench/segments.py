"""The segments benchmark: real-time delivery to many subscribers, and batch evaluation at scale.

    python -m bench segments            # 1,000 subscribers, 30 changes; a segment over 100,000 profiles
    python -m bench segments --quick    # 200 subscribers, 10 changes; 10,000 profiles

1. Delivery: a real server process (embedded store); N WebSocket clients (graphql-transport-ws) each
   subscribe to `segmentMembershipChanged` of one segment. Each round, one `upsertProfile` over HTTP
   flips a profile in or out of the segment; every subscriber's receive time is taken against the
   moment the mutation was sent. Beside it, the floor: the same mutation's own HTTP round trip.
2. Batch evaluation: a new segment evaluated over the whole store in-process (the query built from
   its tree, then one membership write and event per member), beside the floor of reading every
   profile id once.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import json
import random
import time
from datetime import UTC, datetime
from pathlib import Path

import httpx
from websockets.asyncio.client import ClientConnection, connect
from websockets.typing import Subprotocol

from app.bootstrap import Services
from app.domain.profile import Address, IdentifierRecord, Profile, Stats
from app.domain.profile_query import ProfileFilter
from app.services.ingestion import IngestionPolicy
from app.settings import Settings
from bench.common import (
    Latencies,
    app_server_env,
    fmt_s,
    heading,
    machine_lines,
    percentile,
    run_async,
    say,
    server,
    table,
    temp_dir,
)
from bench.identity_store import build_store

FULL = {"subscribers": 1000, "rounds": 30, "profiles": 100_000}
QUICK = {"subscribers": 200, "rounds": 10, "profiles": 10_000}
SUBSCRIPTION = "subscription($s: ID) { segmentMembershipChanged(segmentId: $s) { change profileId segmentId at } }"
CREATE = """mutation { createSegment(input: {name: "VIP", traits: {vip: "boolean"},
  condition: {compare: {path: "traits.vip", op: "eq", value: true}}}) { segment { id } } }"""
FLIP = """mutation($vip: Boolean!) { upsertProfile(input: {identifiers: [{type: "email", value: "flip@example.com"}],
  traits: {vip: $vip}}) { id } }"""


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--quick", action="store_true", help="200 subscribers, 10 changes, 10,000 profiles")
    parser.add_argument("--subscribers", type=int, help="WebSocket subscribers (default 1,000)")
    parser.add_argument("--rounds", type=int, help="membership changes to time (default 30)")
    parser.add_argument("--profiles", type=int, help="profiles for the batch evaluation (default 100,000)")


def run(args: argparse.Namespace) -> None:
    sizes = QUICK if args.quick else FULL
    subscribers = args.subscribers or sizes["subscribers"]
    rounds = args.rounds or sizes["rounds"]
    profiles = args.profiles or sizes["profiles"]
    heading("CDP core: segments benchmark")
    for name, value in machine_lines():
        say(f"  {name:<9} {value}")
    started = time.perf_counter()
    with temp_dir() as work:
        run_async(delivery(work, subscribers, rounds))
        run_async(batch_evaluation(work, profiles))
    heading("Total")
    say(f"  run time {fmt_s(time.perf_counter() - started)}")


# -- 1. delivery ----------------------------------------------------------------------------------
async def delivery(work: Path, subscribers: int, rounds: int) -> None:
    heading(f"1. Delivery: {subscribers:,} subscribers on one server process, {rounds} membership changes")
    with server("cdp", ["-m", "app", "serve"], env=app_server_env(work / "delivery.sqlite3"), log_dir=work) as app:
        async with httpx.AsyncClient(base_url=app.base_url, timeout=30) as http:
            created = await _post(http, CREATE, {})
            segment_id = created["data"]["createSegment"]["segment"]["id"]
            await _post(http, FLIP, {"vip": False})
            url = app.base_url.replace("http", "ws") + "/graphql"
            sockets = await _subscribe_all(url, segment_id, subscribers)
            say(f"  {len(sockets):,} subscriptions open")
            delays: list[float] = []
            mutation = Latencies([], wall_s=0.0)
            # This client holds the thousand connections too: its own garbage collector's pauses would
            # be counted as delivery time. It is paused while the rounds are timed (the server's is not).
            gc.collect()
            gc.disable()
            try:
                for number in range(rounds):
                    receivers = [asyncio.create_task(_receive(ws)) for ws in sockets]
                    await asyncio.sleep(0.05)  # every receiver is waiting before the change is made
                    sent = time.perf_counter()
                    await _post(http, FLIP, {"vip": number % 2 == 0})
                    mutation.samples.append(time.perf_counter() - sent)
                    arrivals = await asyncio.wait_for(asyncio.gather(*receivers), 30)
                    delays += [arrival - sent for arrival in arrivals]
            finally:
                gc.enable()
                await asyncio.gather(*(ws.close() for ws in sockets), return_exceptions=True)
    rows = [
        ["mutation sent -> each subscriber received", f"{len(delays):,}", *(_ms(delays, p) for p in (50, 95, 99, 100))],
        ["floor: the mutation's own HTTP round trip", f"{len(mutation.samples):,}",
         *(_ms(mutation.samples, p) for p in (50, 95, 99, 100))],
    ]  # fmt: skip
    table(["path", "samples", "p50 ms", "p95 ms", "p99 ms", "max ms"], rows)
    times = percentile(delays, 99) / percentile(mutation.samples, 99)
    say(f"  target p99 < 100 ms; delivery p99 is {times:.1f}x the mutation's own p99 (the last subscriber waits "
        "for the server to write to all the others first)")  # fmt: skip


async def _post(http: httpx.AsyncClient, query: str, variables: dict[str, object]) -> dict[str, object]:
    response = await http.post("/graphql", json={"query": query, "variables": variables})
    body: dict[str, object] = response.json()
    if response.status_code != 200 or body.get("errors"):
        raise RuntimeError(f"GraphQL call failed: {response.status_code} {body}")
    return body


async def _subscribe_all(url: str, segment_id: str, count: int) -> list[ClientConnection]:
    async def one(number: int) -> ClientConnection:
        ws = await connect(url, subprotocols=[Subprotocol("graphql-transport-ws")], max_queue=None)
        await ws.send(json.dumps({"type": "connection_init", "payload": {}}))
        assert json.loads(await ws.recv())["type"] == "connection_ack"
        payload = {"query": SUBSCRIPTION, "variables": {"s": segment_id}}
        await ws.send(json.dumps({"id": str(number), "type": "subscribe", "payload": payload}))
        return ws

    sockets: list[ClientConnection] = []
    for start in range(0, count, 100):  # open in waves: the listen backlog is finite
        sockets += await asyncio.gather(*(one(n) for n in range(start, min(count, start + 100))))
    await asyncio.sleep(0.5)
    return sockets


async def _receive(ws: ClientConnection) -> float:
    message = json.loads(await ws.recv())
    if message.get("type") != "next":
        raise RuntimeError(f"unexpected message {message}")
    return time.perf_counter()


def _ms(samples: list[float], p: float) -> str:
    return f"{percentile(samples, p) * 1000:.2f}"


# -- 2. batch evaluation -------------------------------------------------------------------------
async def batch_evaluation(work: Path, count: int) -> None:
    heading(f"2. Batch evaluation: a new segment over {count:,} profiles (embedded store, in-process)")
    (work / "batch").mkdir()
    store, built = await build_store(_profiles(count), work / "batch")
    try:
        say(f"  store written in {fmt_s(built)}")
        services = Services(settings=Settings(seed_fixtures=False), store=store, ingestion=IngestionPolicy())
        began = time.perf_counter()
        ids = await store.list_profiles(ProfileFilter(), after=None, limit=count + 1)
        floor = time.perf_counter() - began
        frequent = {"compare": {"path": "stats.orders", "op": "gte", "value": 3}}
        city = {"compare": {"path": "addresses.city", "op": "in", "value": ["Lyon", "Paris"]}}
        condition = {"and": [frequent, city]}
        began = time.perf_counter()
        result = await services.segments.create({"name": "Frequent buyers in Lyon or Paris", "condition": condition})
        evaluated = time.perf_counter() - began
        began = time.perf_counter()
        again = await services.segments.evaluate(result.segment, cause="unchanged")
        unchanged = time.perf_counter() - began
    finally:
        await store.close()
    table(
        ["step", "time", "members", "entered"],
        [
            ["createSegment: query + membership writes + events", fmt_s(evaluated), f"{result.members:,}",
             f"{result.entered:,}"],
            ["re-evaluation with nothing to change (query + diff)", fmt_s(unchanged), f"{again.members:,}",
             f"{again.entered:,}"],
            ["floor: read every profile once (list_profiles)", fmt_s(floor), f"{len(ids):,}", "-"],
        ],
    )  # fmt: skip


def _profiles(count: int) -> list[Profile]:
    rng = random.Random(7)
    at = datetime(2026, 1, 1, tzinfo=UTC)
    cities = ["Lyon", "Paris", "Marseille", "Berlin", "Madrid", "Milano", "London", "Amsterdam"]
    found = []
    for number in range(count):
        orders = rng.choice([0, 0, 0, 1, 1, 2, 3, 4, 6, 9])
        found.append(
            Profile(
                _id=f"p{number:07d}",
                identifiers=[IdentifierRecord(type="email", value=f"c{number}@example.com", added_at=at)],
                addresses=[Address(city=rng.choice(cities))],
                stats=Stats(orders=orders, revenue_cents=orders * 4990),
                created_at=at,
                updated_at=at,
            )
        )
    return found
