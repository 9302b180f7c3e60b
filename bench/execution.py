"""Issue 14's first target: the frontend's personalisation query (the issue's document) through the
real server (`python -m app serve`, one worker) beside its floor, bench/profile_floor_app.py: a
hand-written Starlette endpoint under the same uvicorn settings, on the same store file, making the
same store calls (identifier normalised, merges followed, the 10 newest interactions) and answering
the same JSON (checked below) with orjson. The floor is what serving this read costs without
GraphQL: the gap is the GraphQL layer's.

    python -m bench execution                        # 100,000 profiles, 3 rounds of 10 s each
    python -m bench execution --seconds 5 --rounds 1  # a quick run

Load: wrk (bench/lua/load.lua), 8 connections, rotating over random existing customers, every answer
checked (200, no "errors", the profile found); the server pinned to one core, wrk to the other;
rounds alternate app, floor, app, floor, each after a warm-up. Which executor ran (compiled or
graphql-core) is read from the app's /metrics.
"""

from __future__ import annotations

import argparse
import re
import statistics
import sys
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import orjson

from bench import process_tree, profile_floor_app, serving_requests, store_cache, wrk
from bench.common import Server, fmt_s, heading, load_average, say, say_machine, table, temp_dir
from bench.process_tree import Cores
from bench.serving import app_server, code_version, worker_setting
from bench.targets import Row, ms, p50_ms, p99_ms, print_rows, times

CONNECTIONS = 8
PROFILE_POOL = 2000
WARM_UP_S = 2
CHECKED = 50  # customers whose whole answer is compared, app against floor, before the rounds
RATIO_TARGET = 0.6
P99_TARGET_MS = 10.0
EXECUTIONS = re.compile(r'^cdp_graphql_executions_total\{executor="([^"]+)"\}\s+(\S+)$', re.MULTILINE)


@dataclass(frozen=True, slots=True)
class Plan:
    profiles: int
    rounds: int
    seconds: int
    seed: int
    cache_dir: Path
    rebuild: bool
    tmp_dir: str | None


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--profiles", type=int, default=100_000, help="customers in the store (default 100,000)")
    parser.add_argument("--rounds", type=int, default=3, help="rounds of each, app and floor alternating (default 3)")
    parser.add_argument("--seconds", type=int, default=10, help="length of each round (default 10)")
    parser.add_argument("--seed", type=int, default=20240614, help="random seed of the customers asked for")
    store_cache.add_arguments(parser)


def plan_from(args: argparse.Namespace) -> Plan:
    for name, (low, high) in {"profiles": (1000, 2_000_000), "rounds": (1, 100), "seconds": (2, 600)}.items():
        if not low <= getattr(args, name) <= high:
            raise SystemExit(f"--{name} must be between {low} and {high}")
    return Plan(**{name: getattr(args, name) for name in Plan.__dataclass_fields__})


def run(args: argparse.Namespace) -> None:
    plan = plan_from(args)
    cores = process_tree.plan_cores()
    started = time.perf_counter()
    say("CDP core: GraphQL execution beside its floor (issue 14, the personalisation query)")
    say(f"started {datetime.now(UTC):%Y-%m-%d %H:%M:%S} UTC; command: python -m bench {' '.join(sys.argv[1:])}")
    no_wrk = wrk.missing()
    workers_env, workers_text = worker_setting()
    with temp_dir(plan.tmp_dir) as work:
        heading("Machine")
        say_machine(work)
        say(f"  cores     {cores.describe()}")
        say(f"  server    `python -m app serve`, CDP_AUTH=off, 127.0.0.1; workers: {workers_text}")
        say("  floor     bench/profile_floor_app.py under uvicorn, same settings, same store file")
        say(f"  load      {no_wrk or wrk.version()}")
        say(f"  code      {code_version()}")
        if no_wrk:
            rows = [Row.skipped(measure, target, no_wrk) for measure, target in _TARGETS]
        else:
            process_tree.pin_self(cores.load)  # after the header: it reports the cores this process may use
            cached = store_cache.cached_store(plan.cache_dir, plan.profiles, rebuild=plan.rebuild)
            served = store_cache.copy_store(cached, work / "served.sqlite3")
            rows = _measure(plan, served, work, cores, workers_env)
    heading("Targets (issue 14, the personalisation query), each beside its floor")
    print_rows(rows)
    say(f"\n  run time {fmt_s(time.perf_counter() - started)}; load avg at the end {load_average()}")


_TARGETS = (("profile query throughput", f">= {RATIO_TARGET}x the floor"), ("profile query p99", "<= 10 ms"))


def _measure(plan: Plan, database: Path, work: Path, cores: Cores, workers_env: dict[str, str]) -> list[Row]:
    pool = serving_requests.profile_bodies(plan.profiles, PROFILE_POOL, plan.seed)
    bodies = wrk.write_bodies(work / "profile.txt", pool)
    with (
        app_server(database, work, cores, workers_env, "app") as app,
        profile_floor_app.served(database, work, cores.server) as floor,
    ):
        say(f"  floor: pid {floor.process.pid}, pinned to core {cores.server}")
        heading(f"Answers: {CHECKED} customers asked of both, whole JSON compared")
        different = _compare(app, floor, pool[:CHECKED])
        say(f"  {CHECKED - len(different)} of {CHECKED} identical" + (f"; first difference: {different[0]}"
                                                                      if different else ""))  # fmt: skip
        before = _executions(app)
        heading(
            f"Load: {plan.rounds} round(s) of {plan.seconds} s each, app and floor alternating, "
            f"a {WARM_UP_S} s warm-up before each"
        )
        say(
            f"  wrk, {CONNECTIONS} connections, {len(pool):,} random existing customers by email in rotation; every "
            f'answer checked: 200, no "errors", holding {serving_requests.PROFILE_EXPECT}'
        )
        load = cores.prefix(cores.load)

        def reads(name: str, target: Server, seconds: int) -> wrk.WrkResult:
            process_tree.wait_idle(target.process.pid)
            return wrk.Wrk(name, f"{target.base_url}/graphql", connections=CONNECTIONS, seconds=seconds,
                           log_dir=work, bodies=bodies, expect=serving_requests.PROFILE_EXPECT,
                           prefix=load).result()  # fmt: skip

        results: dict[str, list[wrk.WrkResult]] = {"app": [], "floor": []}
        rows: list[list[Any]] = []
        for number in range(plan.rounds):
            for kind, target in (("app", app), ("floor", floor)):
                reads(f"{kind}-warm-up-{number}", target, WARM_UP_S)
                result = reads(f"{kind}-{number}", target, plan.seconds)
                results[kind].append(result)
                rows.append([number + 1, kind, result.requests, f"{result.per_s:,.0f}", ms(p50_ms(result)),
                             ms(p99_ms(result)), ms(result.max_ms), result.problems() or "none"])  # fmt: skip
        executions = _shares(before, _executions(app))
    table(["round", "server", "answered", "req/s", "p50", "p99", "max", "problems"], rows)
    say("  unanswered: requests in flight when wrk stopped (at most one per connection), left out of its latencies")
    rate = {kind: statistics.median(r.per_s for r in found) for kind, found in results.items()}
    p99 = {kind: statistics.median(p99_ms(r) for r in found) for kind, found in results.items()}
    p50 = {kind: statistics.median(p50_ms(r) for r in found) for kind, found in results.items()}
    say()
    table(
        ["median over rounds", "app", "floor", "app / floor", "target"],
        [
            ["req/s", f"{rate['app']:,.0f}", f"{rate['floor']:,.0f}", times(rate["app"], rate["floor"]),
             f">= {RATIO_TARGET}x"],
            ["p50", ms(p50["app"]), ms(p50["floor"]), times(p50["app"], p50["floor"]), "-"],
            ["p99", ms(p99["app"]), ms(p99["floor"]), times(p99["app"], p99["floor"]), f"app <= {P99_TARGET_MS:g} ms"],
        ],
    )  # fmt: skip
    say(f"  app executions during the load (from /metrics, cdp_graphql_executions_total): {executions}")
    failed = sum(r.failures for found in results.values() for r in found)
    good = failed == 0 and not different
    why = "" if good else " (answers failed the checks: see above)"
    return [
        Row(_TARGETS[0][0], f"{rate['app']:,.0f} req/s{why}", _TARGETS[0][1], f"{rate['floor']:,.0f} req/s",
            times(rate["app"], rate["floor"]), good and rate["app"] >= RATIO_TARGET * rate["floor"]),
        Row(_TARGETS[1][0], f"{ms(p99['app'])}{why}", _TARGETS[1][1], ms(p99["floor"]), times(p99["app"], p99["floor"]),
            good and p99["app"] <= P99_TARGET_MS),
    ]  # fmt: skip


def _compare(app: Server, floor: Server, bodies: list[bytes]) -> list[str]:
    """Each body asked of both servers: what differs (an answer with errors, or without the profile, too)."""
    different = []
    headers = {"content-type": "application/json"}
    with httpx.Client(timeout=30, headers=headers) as client:
        for body in bodies:
            answers = [orjson.loads(client.post(f"{s.base_url}/graphql", content=body).content) for s in (app, floor)]
            value = orjson.loads(body)["variables"]["value"]
            if answers[0].get("errors") or not (answers[0].get("data") or {}).get("profileByIdentifier"):
                different.append(f"{value}: the app answered {orjson.dumps(answers[0])[:300].decode()}")
            elif answers[0] != answers[1]:
                different.append(f"{value}: {_first_difference(answers[0], answers[1])}")
    return different


def _first_difference(app: Any, floor: Any, path: str = "") -> str:
    if isinstance(app, dict) and isinstance(floor, dict):
        for key in sorted(app.keys() | floor.keys()):
            if app.get(key, ...) != floor.get(key, ...):
                return _first_difference(app.get(key, "(absent)"), floor.get(key, "(absent)"), f"{path}.{key}")
    if isinstance(app, list) and isinstance(floor, list) and len(app) == len(floor):
        for index, (a, f) in enumerate(zip(app, floor, strict=True)):
            if a != f:
                return _first_difference(a, f, f"{path}[{index}]")
    return f"{path or '(root)'}: app {app!r:.120} / floor {floor!r:.120}"


def _executions(app: Server) -> dict[str, float] | str:
    """cdp_graphql_executions_total by executor, or why it could not be read."""
    try:
        answer = httpx.get(f"{app.base_url}/metrics", timeout=10)
    except httpx.HTTPError as exc:
        return f"not reachable ({exc!r})"
    if answer.status_code != 200:
        return f"not reachable (GET /metrics answered {answer.status_code})"
    return {executor: float(count) for executor, count in EXECUTIONS.findall(answer.text)}


def _shares(before: dict[str, float] | str, after: dict[str, float] | str) -> str:
    if isinstance(before, str) or isinstance(after, str):
        return f"/metrics {before if isinstance(before, str) else after}"
    counts = {k: after.get(k, 0.0) - before.get(k, 0.0) for k in sorted(after.keys() | before.keys())}
    total = sum(counts.values())
    if not total:
        return "the counter has no executions (not exposed by this server?)"
    return ", ".join(f"{k} {n:,.0f} ({n / total:.1%})" for k, n in counts.items()) + " (warm-ups included)"
