"""`profileByIdentifier` latency over HTTP, against two floors measured in the same run:
the store call `get_profile_by_identifier(store, "email", x)` in-process (no GraphQL, no HTTP), and a
bare Starlette endpoint returning a constant small JSON under the same uvicorn settings, hit by the
same httpx client the same way (same POST body).

The sequential measurement runs in rounds that rotate the three (GraphQL, bare, store), so that the
three see the same machine conditions; every request is checked (GraphQL found the profile the store
call found)."""

from __future__ import annotations

import asyncio
import random
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path

import httpx
import orjson

from app.services.profile_reads import get_profile_by_identifier
from app.store.sqlite.store import SQLiteStore
from bench.common import CpuMeter, Latencies, loop_factory

PROFILE_QUERY = """
query Customer($type: String!, $value: String!) {
  profileByIdentifier(type: $type, value: $value) {
    id
    firstName
    stats { orders revenue lastSeenAt }
    interactions(first: 10) { edges { node { type channel timestamp } } }
  }
}
"""
REQUEST_TIMEOUT_S = 30.0
MAX_CONCURRENT_REQUESTS = 1_000_000  # a count bound on top of the time bound


def body_for(email: str) -> bytes:
    return orjson.dumps({"query": PROFILE_QUERY, "variables": {"type": "email", "value": email}})


@dataclass(frozen=True, slots=True)
class SequentialResult:
    graphql: Latencies
    bare: Latencies
    store: Latencies
    checked: int


def sequential(
    graphql_url: str,
    bare_url: str,
    graphql_pid: int,
    bare_pid: int,
    database: Path,
    emails: list[str],
    *,
    warmup: int,
    rounds: int,
    progress: Callable[[int, int], None],
) -> SequentialResult:
    """`len(emails)` requests per path after `warmup` each, in `rounds` rotating rounds."""
    bodies = [body_for(e) for e in emails]  # encoded before the clock starts, as for every path
    warm = random.Random(7).sample(range(len(emails)), min(warmup, len(emails)))
    samples: dict[str, list[float]] = {"graphql": [], "bare": [], "store": []}
    expected: dict[str, str] = {}
    headers = {"content-type": "application/json"}
    with (
        asyncio.Runner(loop_factory=loop_factory()) as runner,
        httpx.Client(base_url=graphql_url, timeout=REQUEST_TIMEOUT_S, headers=headers) as graphql,
        httpx.Client(base_url=bare_url, timeout=REQUEST_TIMEOUT_S, headers=headers) as bare,
    ):
        store = SQLiteStore(database)  # the very file the server reads (WAL: readers never block)
        try:

            def run_graphql(indexes: list[int], out: list[float] | None) -> None:
                for i in indexes:
                    t0 = time.perf_counter()
                    response = graphql.post("/graphql", content=bodies[i])
                    elapsed = time.perf_counter() - t0
                    found = _profile_id(response)
                    if out is not None:
                        out.append(elapsed)
                        if found != expected.get(emails[i], found):
                            store_id = expected[emails[i]]
                            raise RuntimeError(f"GraphQL found {found} for {emails[i]}, the store {store_id}")

            def run_bare(indexes: list[int], out: list[float] | None) -> None:
                for i in indexes:
                    t0 = time.perf_counter()
                    response = bare.post("/json", content=bodies[i])
                    elapsed = time.perf_counter() - t0
                    response.raise_for_status()
                    if out is not None:
                        out.append(elapsed)

            async def store_calls(indexes: list[int], out: list[float] | None) -> None:
                for i in indexes:
                    t0 = time.perf_counter()
                    profile = await get_profile_by_identifier(store, "email", emails[i])
                    elapsed = time.perf_counter() - t0
                    if profile is None:
                        raise RuntimeError(f"the store has no profile for {emails[i]}")
                    if out is not None:
                        out.append(elapsed)
                        expected[emails[i]] = profile.id

            def run_store(indexes: list[int], out: list[float] | None) -> None:
                runner.run(store_calls(indexes, out))

            for warm_up in (run_graphql, run_bare, run_store):
                warm_up(warm, None)
            steps: list[tuple[str, Callable[[list[int], list[float] | None], None]]] = [
                ("store", run_store),
                ("graphql", run_graphql),
                ("bare", run_bare),
            ]
            busy = {name: 0.0 for name in samples}
            cpu = {"graphql": CpuMeter(graphql_pid), "bare": CpuMeter(bare_pid), "store": CpuMeter()}
            size = -(-len(emails) // rounds)
            for r in range(rounds):
                chunk = list(range(r * size, min((r + 1) * size, len(emails))))
                # the store call runs first in every round (it records the expected profile ids);
                # GraphQL and bare HTTP swap places from round to round
                order = steps if r % 2 == 0 else [steps[0], steps[2], steps[1]]
                for name, measure in order:
                    with cpu[name]:
                        t0 = time.perf_counter()
                        measure(chunk, samples[name])
                        busy[name] += time.perf_counter() - t0
                progress(r + 1, rounds)
        finally:
            runner.run(store.close())
    return SequentialResult(
        graphql=Latencies(samples["graphql"], busy["graphql"], cpu["graphql"].total),
        bare=Latencies(samples["bare"], busy["bare"], cpu["bare"].total),
        store=Latencies(samples["store"], busy["store"], cpu["store"].total),
        checked=len(expected),
    )


def _profile_id(response: httpx.Response) -> str:
    response.raise_for_status()
    payload = orjson.loads(response.content)
    if payload.get("errors"):
        raise RuntimeError(f"profileByIdentifier failed: {payload['errors'][:2]}")
    profile = payload["data"]["profileByIdentifier"]
    if profile is None:
        raise RuntimeError("profileByIdentifier returned null for an existing customer")
    return str(profile["id"])


def concurrent(
    base_url: str,
    server_pid: int,
    path: str,
    bodies: list[bytes],
    *,
    tasks: int,
    seconds: float,
    warmup_s: float,
    check: Callable[[httpx.Response], object],
) -> Latencies:
    """`tasks` client tasks, each sending requests one after the other for `seconds` (after a
    `warmup_s` warm-up that opens the connections); throughput is completed requests / wall time."""

    async def main() -> Latencies:
        limits = httpx.Limits(max_connections=tasks, max_keepalive_connections=tasks)
        headers = {"content-type": "application/json"}
        async with httpx.AsyncClient(
            base_url=base_url, timeout=REQUEST_TIMEOUT_S, limits=limits, headers=headers
        ) as client:
            await _phase(client, path, bodies, tasks, warmup_s, check, [])
            samples: list[float] = []
            with CpuMeter(server_pid) as cpu:
                wall = await _phase(client, path, bodies, tasks, seconds, check, samples)
            return Latencies(samples, wall, cpu.total)

    with asyncio.Runner(loop_factory=loop_factory()) as runner:
        return runner.run(main())


async def _phase(
    client: httpx.AsyncClient,
    path: str,
    bodies: list[bytes],
    tasks: int,
    seconds: float,
    check: Callable[[httpx.Response], object],
    samples: list[float],
) -> float:
    started = time.perf_counter()
    deadline = started + seconds
    budget = [MAX_CONCURRENT_REQUESTS]

    async def worker(offset: int) -> None:
        n = offset
        while time.perf_counter() < deadline and budget[0] > 0:
            budget[0] -= 1
            t0 = time.perf_counter()
            response = await client.post(path, content=bodies[n % len(bodies)])
            samples.append(time.perf_counter() - t0)
            check(response)
            n += tasks

    work: list[Awaitable[None]] = [worker(k) for k in range(tasks)]
    await asyncio.gather(*work)
    # wall time until the last in-flight request finished (it may end a little after the deadline)
    return time.perf_counter() - started


def check_graphql(response: httpx.Response) -> object:
    return _profile_id(response)


def check_bare(response: httpx.Response) -> object:
    return response.raise_for_status()
