"""The foundation benchmark: build a store of N customers through the real ingestion service, then
measure ingest throughput and `profileByIdentifier` latency over HTTP, each beside its floor measured
in the same run.

    python -m bench foundation            # 100,000 customers (a few minutes)
    python -m bench foundation --quick    # 5,000 customers (seconds)
"""

from __future__ import annotations

import argparse
import random
import shutil
import sys
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from bench import dataset, http_latency, ingest
from bench.common import (
    SERVER_LOG_LEVEL,
    Latencies,
    Server,
    app_server_env,
    fmt_s,
    heading,
    load_average,
    loop_name,
    ratio,
    run_async,
    say,
    say_machine,
    server,
    table,
    temp_dir,
)


@dataclass(frozen=True, slots=True)
class Plan:
    profiles: int
    build_batch: int
    events: int
    ingest_batch: int
    requests: int
    warmup: int
    rounds: int
    tasks: int
    seconds: float
    seed: int


FULL = {"profiles": 100_000, "events": 20_000, "requests": 5_000, "warmup": 300, "seconds": 5.0}
QUICK = {"profiles": 5_000, "events": 2_000, "requests": 1_000, "warmup": 100, "seconds": 2.0}


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--quick",
        action="store_true",
        help="a quick run: 5,000 customers, 2,000 events, 1,000 requests, 2 s concurrency",
    )
    parser.add_argument("--profiles", type=int, help="customers in the store (default 100,000; quick 5,000)")
    parser.add_argument("--events", type=int, help="events to ingest per path (default 20,000; quick 2,000)")
    parser.add_argument(
        "--requests", type=int, help="sequential profileByIdentifier requests per path (default 5,000; quick 1,000)"
    )
    parser.add_argument("--warmup", type=int, help="warm-up requests per path (default 300; quick 100)")
    parser.add_argument("--rounds", type=int, default=10, help="rotating rounds of the sequential latency test")
    parser.add_argument("--tasks", type=int, default=8, help="concurrent client tasks (default 8)")
    parser.add_argument("--seconds", type=float, help="duration of each concurrency test (default 5; quick 2)")
    parser.add_argument("--seed", type=int, default=20240601, help="random seed of the data set")
    parser.add_argument("--tmp-dir", help="parent of the temporary directory (default: the system temp dir)")


def plan_from(args: argparse.Namespace) -> Plan:
    defaults = QUICK if args.quick else FULL

    def pick(name: str) -> float:
        value = getattr(args, name)
        return defaults[name] if value is None else value

    plan = Plan(
        profiles=int(pick("profiles")),
        build_batch=1000,
        events=int(pick("events")),
        ingest_batch=100,
        requests=int(pick("requests")),
        warmup=int(pick("warmup")),
        rounds=args.rounds,
        tasks=args.tasks,
        seconds=float(pick("seconds")),
        seed=args.seed,
    )
    limits = {
        "profiles": (100, 2_000_000),
        "events": (100, 1_000_000),
        "requests": (10, 1_000_000),
        "warmup": (0, 100_000),
        "rounds": (1, 1000),
        "tasks": (1, 256),
        "seconds": (0.5, 600),
    }
    for name, (low, high) in limits.items():
        if not low <= getattr(plan, name) <= high:
            raise SystemExit(f"--{name} must be between {low} and {high}")
    return plan


def run(args: argparse.Namespace) -> None:
    plan = plan_from(args)
    started = time.perf_counter()
    say("CDP core: foundation benchmark" + (" (quick)" if args.quick else ""))
    say(f"started {datetime.now(UTC):%Y-%m-%d %H:%M:%S} UTC; command: python -m bench {' '.join(sys.argv[1:])}")
    with temp_dir(args.tmp_dir) as work:
        heading("Machine")
        say_machine(work)
        say(
            f"  servers   uvicorn via `python -m app serve` / `python -m bench.bare_app`, 1 worker, "
            f"log level {SERVER_LOG_LEVEL}, 127.0.0.1; client and floors on the {loop_name()} loop"
        )
        run_id = dataset.run_id()
        built = _build(work, plan, run_id)
        http_db, floor_db = _copies(work, built)
        with server("app", ["-m", "app", "serve"], env=app_server_env(http_db), log_dir=work) as app:
            _ingest(app, floor_db, plan, run_id)
            with server(
                "bare", ["-m", "bench.bare_app", "--log-level", SERVER_LOG_LEVEL], env={}, log_dir=work
            ) as bare:
                _latency(app, bare, http_db, plan)
    heading("Total")
    say(
        f"  run time {fmt_s(time.perf_counter() - started)} (temporary directory removed); "
        f"load avg at the end {load_average()}"
    )


# -- 1. build -------------------------------------------------------------------------------------
def _build(work: Path, plan: Plan, run_id: str) -> Path:
    heading(f"1. Store build: {plan.profiles:,} customers through ingest_events")
    say(
        f"  one identify event per customer (email + customerId + name + address), "
        f"{plan.build_batch:,} events per ingest_events call, embedded SQLite in {work}"
    )
    path = work / "built.sqlite3"
    step = max(plan.profiles // 10, 1)
    next_report = [step]

    def progress(done: int, seconds: float) -> None:
        if done >= next_report[0] or done == plan.profiles:
            next_report[0] += step
            say(f"  {done:>10,} / {plan.profiles:,} profiles  {seconds:7.1f} s  ({done / seconds:,.0f} profiles/s)")

    report = run_async(
        dataset.build_store(path, plan.profiles, batch_size=plan.build_batch, run_id=run_id, progress=progress)
    )
    say()
    table(
        ["build", "profiles", "batches", "time", "profiles/s", "ms per event", "store size"],
        [
            [
                "ingest_events, identify",
                report.profiles,
                report.batches,
                fmt_s(report.seconds),
                report.profiles / report.seconds,
                report.seconds / report.profiles * 1000,
                f"{report.file_bytes / 1e6:,.0f} MB",
            ]
        ],
    )
    return path


def _copies(work: Path, built: Path) -> tuple[Path, Path]:
    """Two identical copies of the closed store: one served over HTTP, one for the in-process floor."""
    copies = (work / "http.sqlite3", work / "floor.sqlite3")
    sidecars = [s for s in ("-wal", "-shm") if Path(f"{built}{s}").exists()]
    for copy in copies:
        shutil.copyfile(built, copy)
        for suffix in sidecars:
            shutil.copyfile(f"{built}{suffix}", f"{copy}{suffix}")
    say(
        f"  the store was closed (WAL checkpointed) and copied twice, file by file "
        f"(main file{''.join(f' + {s}' for s in sidecars) or ' only: no -wal/-shm left after close'}): "
        "one for the HTTP server, one for the in-process floor"
    )
    built.unlink()
    return copies


# -- 2. ingest -------------------------------------------------------------------------------------
def _ingest(app: Server, floor_db: Path, plan: Plan, run_id: str) -> None:
    heading(f"2. Ingest throughput: {plan.events:,} events in batches of {plan.ingest_batch}, per path")
    stream = dataset.event_stream(
        plan.profiles, plan.events, batch_size=plan.ingest_batch, seed=plan.seed, run_id=run_id, now=datetime.now(UTC)
    )
    say(f"  mix: {', '.join(f'{k} {v:,}' for k, v in sorted(stream.type_counts.items(), key=lambda kv: -kv[1]))}")
    say(
        f"  identifiers: {stream.events - stream.anonymous_events:,} events of existing customers by email, "
        f"{stream.anonymous_events:,} of {stream.anonymous_visitors:,} new anonymous visitors (anonymousId)"
    )
    say(
        "  the two paths alternate batch by batch on identical copies of the store; request bodies are "
        "encoded before timing; each batch is one commit (synchronous=FULL)"
    )
    step = max(len(stream.raw) // 5, 1)

    def progress(done: int, total: int) -> None:
        if done % step == 0 or done == total:
            say(f"  {done:>5} / {total} batches")

    result = ingest.compare(app.base_url, app.process.pid, floor_db, stream.graphql, stream.raw, progress=progress)
    say()
    rows = []
    for name, path in (
        ("ingestEvents over HTTP (GraphQL)", result.http),
        ("floor: ingest_events in-process", result.floor),
    ):
        lat = path.latencies()
        rows.append(
            [
                name,
                path.events,
                fmt_s(lat.wall_s),
                path.events_per_s,
                lat.pct_ms(50),
                lat.pct_ms(99),
                lat.wall_s / path.events * 1000,
                path.cpu_ms_per_event,
                path.statuses.get("ACCEPTED", 0),
                path.statuses.get("DUPLICATE", 0),
                path.statuses.get("REJECTED", 0),
            ]
        )
    table(
        [
            "path",
            "events",
            "time",
            "events/s",
            "batch p50 ms",
            "batch p99 ms",
            "ms/event",
            "cpu ms/event",
            "accepted",
            "duplicate",
            "rejected",
        ],
        rows,
    )
    say("  cpu ms/event: CPU time of the server process (HTTP) or of this process (floor) per event")
    say(
        f"  ratio: HTTP takes {ratio(result.http.latencies().wall_s, result.floor.latencies().wall_s)} the "
        f"floor's time (floor events/s / HTTP events/s); "
        f"GraphQL+HTTP cost per batch of {plan.ingest_batch}: "
        f"{(result.http.latencies().pct_ms(50) - result.floor.latencies().pct_ms(50)):.1f} ms at p50"
    )
    for name, path in (("HTTP", result.http), ("floor", result.floor)):
        for reason, count in path.reasons.most_common(3):
            say(f"  {name}: {count:,} x {reason}")
    if result.http.statuses != result.floor.statuses:
        say(
            f"  WARNING: the paths ended differently: HTTP {dict(result.http.statuses)}, "
            f"floor {dict(result.floor.statuses)}"
        )


# -- 3. latency -------------------------------------------------------------------------------------
def _latency(app: Server, bare: Server, database: Path, plan: Plan) -> None:
    heading(
        f"3. profileByIdentifier latency: {plan.requests:,} sequential requests per path "
        f"(after {plan.warmup:,} warm-up)"
    )
    rng = random.Random(plan.seed + 1)
    if plan.requests <= plan.profiles:
        emails = [dataset.email_of(i) for i in rng.sample(range(plan.profiles), plan.requests)]
    else:
        emails = [dataset.email_of(rng.randrange(plan.profiles)) for _ in range(plan.requests)]
    say(
        "  query: id firstName stats { orders revenue lastSeenAt } "
        "interactions(first: 10) { edges { node { type channel timestamp } } }, with variables"
    )
    say(
        f"  random existing emails; {plan.rounds} rounds rotating store call / GraphQL / bare HTTP; one keep-alive "
        "httpx.Client per server; bare = the same POST body to a constant-JSON Starlette endpoint"
    )

    def progress(done: int, total: int) -> None:
        if done == total or done % max(total // 5, 1) == 0:
            say(f"  {done:>3} / {total} rounds")

    result = http_latency.sequential(
        app.base_url,
        bare.base_url,
        app.process.pid,
        bare.process.pid,
        database,
        emails,
        warmup=plan.warmup,
        rounds=plan.rounds,
        progress=progress,
    )
    say()
    table(
        ["sequential", "requests", "p50 ms", "p95 ms", "p99 ms", "mean ms", "req/s", "cpu ms/req"],
        [
            [
                name,
                lat.count,
                lat.pct_ms(50),
                lat.pct_ms(95),
                lat.pct_ms(99),
                lat.mean_ms,
                lat.per_s,
                lat.cpu_ms_per_item,
            ]
            for name, lat in (
                ("profileByIdentifier, GraphQL over HTTP", result.graphql),
                ("floor (b): bare Starlette JSON over HTTP", result.bare),
                ("floor (a): get_profile_by_identifier in-process", result.store),
            )
        ],
    )
    g, b, s = result.graphql, result.bare, result.store
    say(
        f"  GraphQL over HTTP vs bare HTTP:  p50 {ratio(g.pct_ms(50), b.pct_ms(50))}, "
        f"p99 {ratio(g.pct_ms(99), b.pct_ms(99))}"
    )
    say(
        f"  GraphQL over HTTP vs store call: p50 {ratio(g.pct_ms(50), s.pct_ms(50))}, "
        f"p99 {ratio(g.pct_ms(99), s.pct_ms(99))}"
    )
    say("  cpu ms/req: CPU time of the serving process per request (this process for the store call)")
    say(
        f"  left for GraphQL (p50 GraphQL - p50 bare - p50 store): "
        f"{g.pct_ms(50) - b.pct_ms(50) - s.pct_ms(50):.2f} ms per request; "
        f"{result.checked:,} distinct customers checked (GraphQL returned the store's profile)"
    )

    heading(
        f"3b. Concurrency: {plan.tasks} client tasks for {plan.seconds:g} s per path (httpx.AsyncClient, "
        f"{plan.tasks} connections, after a 1 s warm-up)"
    )
    bodies = [http_latency.body_for(e) for e in emails]
    concurrent: list[tuple[str, Latencies]] = []
    for name, target, path, check in (
        ("profileByIdentifier, GraphQL over HTTP", app, "/graphql", http_latency.check_graphql),
        ("floor (b): bare Starlette JSON over HTTP", bare, "/json", http_latency.check_bare),
    ):
        concurrent.append(
            (
                name,
                http_latency.concurrent(
                    target.base_url,
                    target.process.pid,
                    path,
                    bodies,
                    tasks=plan.tasks,
                    seconds=plan.seconds,
                    warmup_s=1.0,
                    check=check,
                ),
            )
        )
    table(
        ["concurrent", "requests", "req/s", "p50 ms", "p95 ms", "p99 ms", "server cpu ms/req"],
        [
            [name, lat.count, lat.per_s, lat.pct_ms(50), lat.pct_ms(95), lat.pct_ms(99), lat.cpu_ms_per_item]
            for name, lat in concurrent
        ],
    )
    (_, cg), (_, cb) = concurrent
    say(
        f"  GraphQL vs bare HTTP: throughput {ratio(cg.per_s, cb.per_s)} of the floor's "
        f"({cg.per_s / cb.per_s:.2f}), p99 {ratio(cg.pct_ms(99), cb.pct_ms(99))}; sequential GraphQL req/s "
        f"{g.per_s:,.0f} -> {cg.per_s:,.0f} with {plan.tasks} tasks"
    )
