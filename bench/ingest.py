"""Ingest throughput: the `ingestEvents` mutation over HTTP against its floor, the same batches through
`ingest_events(store, …)` in-process on an identical copy of the store.

The two paths are interleaved batch by batch (HTTP first on even batches, in-process first on odd
ones), so that both see the same machine conditions and the same store growth."""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import orjson

from app.domain.events import RawEvent
from app.services.ingestion import EventOutcome, IngestionPolicy, ingest_events
from app.store.sqlite.store import SQLiteStore
from bench.common import CpuMeter, Latencies, loop_factory

INGEST_MUTATION = """
mutation Ingest($events: [EventInput!]!) {
  ingestEvents(events: $events) {
    accepted duplicates rejected
    results { messageId status profileId reason }
  }
}
"""
REQUEST_TIMEOUT_S = 120.0


@dataclass
class PathResult:
    cpu: CpuMeter  # the CPU of the process doing the work: the server, or this process for the floor
    batch_seconds: list[float] = field(default_factory=list)
    statuses: Counter[str] = field(default_factory=Counter)
    reasons: Counter[str] = field(default_factory=Counter)

    def latencies(self) -> Latencies:
        return Latencies(self.batch_seconds, sum(self.batch_seconds), self.cpu.total)

    @property
    def cpu_ms_per_event(self) -> float | None:
        return self.cpu.total / self.events * 1000 if self.cpu.total is not None and self.events else None

    @property
    def events(self) -> int:
        return sum(self.statuses.values())

    @property
    def events_per_s(self) -> float:
        total = sum(self.batch_seconds)
        return self.events / total if total else 0.0


@dataclass(frozen=True, slots=True)
class IngestResult:
    http: PathResult
    floor: PathResult
    wall_s: float


def compare(
    base_url: str,
    server_pid: int,
    floor_db: Path,
    graphql_batches: list[list[dict[str, Any]]],
    raw_batches: list[list[RawEvent]],
    *,
    progress: Callable[[int, int], None],
) -> IngestResult:
    """Send each batch over HTTP and in-process (alternating which goes first); time each call."""
    http, floor = PathResult(CpuMeter(server_pid)), PathResult(CpuMeter())
    # Request bodies are encoded before the clock starts: the client's JSON encoding is not the server's cost.
    bodies = [orjson.dumps({"query": INGEST_MUTATION, "variables": {"events": b}}) for b in graphql_batches]
    policy = IngestionPolicy()  # what the server builds from default settings (1,000 per batch, 30 days)
    started = time.perf_counter()
    with (
        asyncio.Runner(loop_factory=loop_factory()) as runner,
        httpx.Client(
            base_url=base_url, timeout=REQUEST_TIMEOUT_S, headers={"content-type": "application/json"}
        ) as client,
    ):
        store = SQLiteStore(floor_db)
        try:
            for index, (body, raw) in enumerate(zip(bodies, raw_batches, strict=True)):
                if index % 2 == 0:
                    _over_http(client, body, http)
                    _in_process(runner, store, raw, policy, floor)
                else:
                    _in_process(runner, store, raw, policy, floor)
                    _over_http(client, body, http)
                progress(index + 1, len(bodies))
        finally:
            runner.run(store.close())
    return IngestResult(http, floor, time.perf_counter() - started)


def _over_http(client: httpx.Client, body: bytes, result: PathResult) -> None:
    with result.cpu:
        t0 = time.perf_counter()
        response = client.post("/graphql", content=body)
        elapsed = time.perf_counter() - t0
    response.raise_for_status()
    payload = orjson.loads(response.content)
    if payload.get("errors"):
        raise RuntimeError(f"ingestEvents failed: {payload['errors'][:2]}")
    result.batch_seconds.append(elapsed)
    for item in payload["data"]["ingestEvents"]["results"]:
        result.statuses[item["status"]] += 1
        if item["reason"]:
            result.reasons[item["reason"]] += 1


def _in_process(
    runner: asyncio.Runner, store: SQLiteStore, raw: list[RawEvent], policy: IngestionPolicy, result: PathResult
) -> None:
    async def one() -> tuple[float, list[EventOutcome]]:
        t0 = time.perf_counter()
        outcomes = await ingest_events(store, raw, policy)
        return time.perf_counter() - t0, outcomes

    with result.cpu:
        elapsed, outcomes = runner.run(one())
    result.batch_seconds.append(elapsed)
    for outcome in outcomes:
        result.statuses[str(outcome.status)] += 1
        if outcome.reason:
            result.reasons[outcome.reason] += 1
