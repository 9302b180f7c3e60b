"""The serving benchmark (issue 13): the four targets of a serving path under real load, each beside
its floor measured in the same run, on whatever the server does today.

    python -m bench serving                                # 100,000 profiles, 60 s mixed load
    python -m bench serving --profiles 5000 --seconds 10   # a quick run

1. The frontend's personalisation query (issue 14's document): p99 alone, while one client sends
   batches of 1,000 mixed events as fast as the server takes them, and while the hand-written SQL
   floor writes the same batches in the background class (what writing them costs the reads on
   this machine), in alternating rounds (medians).
2. Ingestion over HTTP (batches of 1,000) beside hand-written SQL writing the same rows
   (bench/sql_ingest_floor.py), alternating rounds; then (2b) on a worker per core, and (2c) part 1's
   queries over a few connections to those workers: how they share them.
3. 50 clients of mixed requests plus WebSocket subscribers for `--seconds` (bench/serving_mixed.py).
4. First start on an empty store with the demo data (bench/first_start.py).

Load comes from outside the server: wrk (bench/lua/load.lua) and node (bench/node/); the server is
pinned to one core and the load to the other (taskset). The store of `--profiles` customers is built
once through the real ingestion service and cached (bench/store_cache.py).
"""

from __future__ import annotations

import argparse
import math
import os
import statistics
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import orjson

from bench import first_start, process_tree, serving_mixed, serving_requests, store_cache, subscribers, wrk
from bench.common import (
    PROJECT_ROOT,
    SERVER_LOG_LEVEL,
    Server,
    app_server_env,
    fmt_s,
    heading,
    load_average,
    process_cpu_s,
    say,
    say_machine,
    server,
    table,
    temp_dir,
)
from bench.process_tree import Cores
from bench.targets import Row, ms, p50_ms, p99_ms, print_rows, times

INGEST_BATCH = 1000
INGEST_POOL = 40  # distinct 1,000-event bodies (each sent with new message ids every time)
# Part 2b: connections a connector keeps to a server on every core (each worker process gets some).
EVERY_CORE_CONNECTIONS = 4
PROFILE_POOL = 2000
IDLE_CPU_SHARE = 0.05
# Part 2's server is pinned to one core, the load to the other: what one worker ingests beside the
# SQL floor. The target, >= 5,000 events/s on this 2-core machine, is part 2b's: the server on every
# core as `make run` starts it.
ONE_CORE = "(one core: the target is 2b's)"
ONE_WORKER = "2. ingestion over HTTP, 1 worker"


@dataclass(frozen=True, slots=True)
class Plan:
    profiles: int
    seconds: int
    rounds: int
    round_seconds: int
    ingest_rounds: int
    ingest_seconds: int
    read_connections: int
    clients: int
    subscribers: int
    start_rounds: int
    seed: int
    cache_dir: Path
    rebuild: bool
    tmp_dir: str | None


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--profiles", type=int, default=100_000, help="customers in the store (default 100,000)")
    parser.add_argument("--seconds", type=int, default=60, help="duration of the mixed load (default 60)")
    parser.add_argument("--rounds", type=int, default=4, help="rounds of the read test, alone/ingesting (default 4)")
    parser.add_argument("--round-seconds", type=int, default=10, help="length of each read round (default 10)")
    parser.add_argument("--ingest-rounds", type=int, default=3, help="rounds of HTTP vs SQL floor (default 3)")
    parser.add_argument("--ingest-seconds", type=int, default=15, help="HTTP ingestion per round (default 15)")
    parser.add_argument("--read-connections", type=int, default=1, help="connections of the read test (default 1)")
    parser.add_argument("--clients", type=int, default=50, help="mixed-load clients (default 50)")
    parser.add_argument("--subscribers", type=int, default=200, help="WebSocket subscribers (default 200)")
    parser.add_argument("--start-rounds", type=int, default=3, help="rounds of the first-start test (default 3)")
    parser.add_argument("--seed", type=int, default=20240601, help="random seed of the requests")
    store_cache.add_arguments(parser)


def plan_from(args: argparse.Namespace) -> Plan:
    limits = {
        "profiles": (1000, 2_000_000),
        "seconds": (5, 3600),
        "rounds": (1, 100),
        "round_seconds": (2, 600),
        "ingest_rounds": (1, 100),
        "ingest_seconds": (2, 600),
        "read_connections": (1, 256),
        "clients": (3, 1000),
        "subscribers": (0, 10_000),
        "start_rounds": (0, 20),
    }
    for name, (low, high) in limits.items():
        if not low <= getattr(args, name) <= high:
            raise SystemExit(f"--{name.replace('_', '-')} must be between {low} and {high}")
    return Plan(**{name: getattr(args, name) for name in Plan.__dataclass_fields__})


def run(args: argparse.Namespace) -> None:
    plan = plan_from(args)
    cores = process_tree.plan_cores()
    started = time.perf_counter()
    say("CDP core: serving benchmark (issue 13)")
    say(f"started {datetime.now(UTC):%Y-%m-%d %H:%M:%S} UTC; command: python -m bench {' '.join(sys.argv[1:])}")
    no_wrk, no_node = wrk.missing(), subscribers.missing() if plan.subscribers else "no subscribers asked"
    workers_env, workers_text = worker_setting()
    rows: list[Row] = []
    floor_rate: float | None = None  # part 2's
    with temp_dir(plan.tmp_dir) as work:
        heading("Machine")
        say_machine(work)
        say(f"  cores     {cores.describe()}")
        say(
            f"  server    `python -m app serve`, log level {SERVER_LOG_LEVEL}, CDP_AUTH=off, 127.0.0.1; "
            f"workers: {workers_text}"
        )
        say(f"  load      {no_wrk or wrk.version()}; subscribers: {no_node or subscribers.versions()}")
        say(f"  code      {code_version()}")
        process_tree.pin_self(cores.load)  # after the header: it reports the cores this process may use
        cached = store_cache.cached_store(plan.cache_dir, plan.profiles, rebuild=plan.rebuild)
        served = store_cache.copy_store(cached, work / "served.sqlite3")
        if no_wrk:
            for measure, target in (("1. profile query p99 under ingestion", "<= 50 ms"),
                                    (ONE_WORKER, ONE_CORE),
                                    ("3. mixed load", "p99 <= 250 ms")):  # fmt: skip
                rows.append(Row.skipped(measure, target, no_wrk))
            say(f"\n  SKIPPED targets 1-3: {no_wrk}")
        else:
            # Another seed than the reads' pool: drawn from one seed, the two picked the same
            # customers, 4-5 times as many of the read ones written as chance would.
            pool = serving_requests.ingest_bodies(
                plan.profiles, batches=INGEST_POOL, batch_size=INGEST_BATCH, seed=plan.seed + 1
            )
            ingest_file = wrk.write_bodies(work / "ingest-1000.txt", pool)
            with app_server(served, work, cores, workers_env, "app") as app:
                rows += reads_under_ingestion(app, cached, work, plan, cores, ingest_file)
                ingested, floor_rate = ingestion(app, cached, work, plan, cores, ingest_file)
                rows += ingested
            with app_server(served, work, cores, workers_env, "app-mixed") as app:  # a new process: memory from start
                rows += serving_mixed.mixed_load(app, served, work, plan, cores, no_node)
        process_tree.release_self(cores)  # a first start is `make run` on the whole machine
        if not no_wrk:
            rows += ingestion_on_every_core(cached, work, plan, cores, ingest_file, floor_rate)
        rows += first_starts(work, plan)
    heading("Targets (issue 13), each beside its floor")
    print_rows(rows)
    say(f"\n  run time {fmt_s(time.perf_counter() - started)}; load avg at the end {load_average()}")


def code_version() -> str:
    """The commit measured, and whether the server's code differs from it (uncommitted work counts)."""

    def git(*args: str) -> str:
        found = subprocess.run(["git", *args], capture_output=True, text=True, check=False, cwd=PROJECT_ROOT)
        return found.stdout.strip()

    commit = git("rev-parse", "--short", "HEAD") or "unknown (not a git work tree)"
    changed = git("status", "--porcelain", "--", "app", "graphql_schema")
    return f"git {commit}" + (f", with {len(changed.splitlines())} uncommitted file(s) under app/ and graphql_schema/"
                              if changed else ", server code as committed")  # fmt: skip


def worker_setting() -> tuple[dict[str, str], str]:
    """CDP_WORKERS=1 when the server has that setting (single-process figures), else nothing to pass."""
    from app.settings import Settings

    if "workers" in Settings.model_fields:
        return {"CDP_WORKERS": "1"}, "1 (CDP_WORKERS=1)"
    return {}, "1 (the server has no CDP_WORKERS setting: one process)"


@contextmanager
def app_server(database: Path, work: Path, cores: Cores, extra: dict[str, str], name: str) -> Any:
    env = {**app_server_env(database), **extra}
    with server(name, ["-m", "app", "serve"], env=env, log_dir=work) as app:
        threads = process_tree.pin(app.process.pid, cores.server)
        say(
            f"\n  server {name}: pid {app.process.pid}, {process_tree.count(app.process.pid)} process(es), "
            f"{threads} threads pinned to core {cores.server}"
        )
        yield app


# -- 1. reads while ingesting -----------------------------------------------------------------------
def reads_under_ingestion(
    app: Server, cached: Path, work: Path, plan: Plan, cores: Cores, ingest_file: Path
) -> list[Row]:
    heading(
        f"1. Profile query (issue 14's document) alone, while ingestion runs flat out, and while the SQL floor "
        f"writes: {plan.rounds} rounds of {plan.round_seconds} s each"
    )
    say(
        f"  reads: wrk, {plan.read_connections} connection(s), {PROFILE_POOL:,} random existing customers by email; "
        f"ingestion: wrk, 1 connection, batches of {INGEST_BATCH:,} mixed events (new message ids every request); "
        "SQL floor: bench/sql_ingest_floor.py writing the same batches flat out into a copy of the store, its own "
        "process on the server's core in the background class (SCHED_IDLE), as the server's bulk batches: what "
        "writing the rows costs the reads on this machine"
    )
    bodies = wrk.write_bodies(
        work / "profile.txt", serving_requests.profile_bodies(plan.profiles, PROFILE_POOL, plan.seed)
    )
    floor_db = store_cache.copy_store(cached, work / "reads-floor.sqlite3")
    url = f"{app.base_url}/graphql"
    load = cores.prefix(cores.load)

    def reads(name: str) -> wrk.WrkResult:
        return wrk.Wrk(name, url, connections=plan.read_connections, seconds=plan.round_seconds, log_dir=work,
                       bodies=bodies, expect=serving_requests.PROFILE_EXPECT, prefix=load).result()  # fmt: skip

    reads("warm-up")
    rows: list[list[Any]] = []
    found: dict[str, list[wrk.WrkResult]] = {"alone": [], "ingesting": [], "SQL floor writing": []}
    for number in range(plan.rounds):
        kinds = list(found) if number % 2 == 0 else list(reversed(found))
        for kind in kinds:
            fed = None
            if kind == "alone":
                result = reads(f"reads-alone-{number}")
            elif kind == "ingesting":
                feeder = wrk.Wrk(f"feed-{number}", url, connections=1, seconds=plan.round_seconds + 2, log_dir=work,
                                 bodies=ingest_file, tag=f"t1r{number}", expect=serving_requests.INGEST_EXPECT,
                                 prefix=load)  # fmt: skip
                try:
                    time.sleep(1.0)  # the first batch is under way before the reads start
                    result = reads(f"reads-ingesting-{number}")
                finally:
                    fed = feeder.result()
                process_tree.wait_idle(app.process.pid)
            else:
                with _sql_floor_writing(floor_db, ingest_file, f"t1f{number}", cores):
                    result = reads(f"reads-floor-{number}")
            found[kind].append(result)
            rows.append([number + 1, kind, result.requests, ms(p50_ms(result)), ms(p99_ms(result)),
                         ms(result.max_ms if result.requests else math.inf),
                         f"{fed.events_per_busy_s:,.0f}" if fed else "-", _problems(result, fed)])  # fmt: skip
    table(["round", "reads", "answered", "p50", "p99", "max", "ingest events/s", "problems"], rows)
    p99 = {kind: statistics.median(p99_ms(r) for r in results) for kind, results in found.items()}
    p50 = {kind: statistics.median(p50_ms(r) for r in results) for kind, results in found.items()}
    say(
        "  medians over rounds: p99 " + ", ".join(f"{ms(value)} {kind}" for kind, value in p99.items())
        + " (p50 " + " / ".join(ms(value) for value in p50.values()) + "); ingest events/s: whole batches over "
        "their request time"
    )  # fmt: skip
    alone, ingesting, floor = p99["alone"], p99["ingesting"], p99["SQL floor writing"]
    met = ingesting <= 50 and ingesting <= 2 * alone
    return [
        Row("1. profile query p99 while ingesting", ms(ingesting), "<= 50 ms and <= 2x alone",
            f"{ms(alone)} (p99 alone)", times(ingesting, alone), met),
        Row("   the same while the SQL floor writes", ms(floor), "(reference)", f"{ms(alone)} (p99 alone)",
            times(floor, alone), None),
    ]  # fmt: skip


@contextmanager
def _sql_floor_writing(database: Path, bodies: Path, tag: str, cores: Cores) -> Iterator[None]:
    """The SQL floor writing batches flat out in the background class while the block runs."""
    command = [*cores.prefix(cores.server), sys.executable, "-m", "bench.sql_ingest_floor", str(database),
               str(bodies), "--batches", "1000000", "--tag", tag]  # fmt: skip
    writer = subprocess.Popen(command, cwd=PROJECT_ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                              preexec_fn=_background_class)  # fmt: skip
    try:
        time.sleep(1.0)  # its first batch is under way before the reads start
        if writer.poll() is not None:
            raise RuntimeError(
                f"the SQL floor stopped: {writer.stderr.read().decode()[-2000:] if writer.stderr else ''}"
            )
        yield
    finally:
        writer.terminate()
        writer.communicate(timeout=30)


def _background_class() -> None:
    """In the child before it runs: Linux's SCHED_IDLE, where the server's bulk batches run too."""
    if hasattr(os, "SCHED_IDLE"):
        os.sched_setscheduler(0, os.SCHED_IDLE, os.sched_param(0))


def _problems(*results: wrk.WrkResult | None) -> str:
    return "; ".join(f"{r.name}: {r.problems()}" for r in results if r is not None and r.problems()) or "none"


# -- 2. ingestion ---------------------------------------------------------------------------------
def ingestion(
    app: Server, cached: Path, work: Path, plan: Plan, cores: Cores, ingest_file: Path
) -> tuple[list[Row], float | None]:
    """The target's row, and the floor's median rate (None: not measured)."""
    heading(f"2. Ingestion over HTTP beside hand-written SQL: {plan.ingest_rounds} rounds, batches of {INGEST_BATCH:,}")
    say(
        f"  HTTP: wrk, 1 connection, ingestEvents for {plan.ingest_seconds} s a round; events/s = events in the "
        "answers / the answered batches' request time (the batch cut off by the end of the round is left out)"
    )
    say(
        "  floor: bench/sql_ingest_floor.py, its own process on the server's core, on a copy of the same store: "
        "the same batches (as many as the latest HTTP round answered); per batch, one transaction: replays and "
        "identifier owners looked up with one query each, new profiles + identities inserted, each touched "
        "profile read once, its JSON document updated for its events (counters, times, visits, orders, consents, "
        "surveys, identify fields, 50 newest interactions) and written once, the interactions its recent list "
        "does not hold + processed-message keys + consent decisions inserted in bulk, one commit, the log "
        "copied back by a thread (WAL, synchronous=FULL, secure_delete as the server). It skips what the "
        "server also does: validation, normalisation, merges, blocking keys, segment upkeep"
    )
    floor_db = store_cache.copy_store(cached, work / "floor.sqlite3")
    url = f"{app.base_url}/graphql"
    http_rates: list[float] = []
    floor_rates: list[float] = []
    rows: list[list[Any]] = []
    batches = 0  # what the latest HTTP round answered: the floor writes as many (the first floor-first round too)
    for number in range(plan.ingest_rounds):
        for kind in ("http", "floor") if number % 2 == 0 else ("floor", "http"):
            if kind == "http":
                result = wrk.Wrk(f"ingest-http-{number}", url, connections=1, seconds=plan.ingest_seconds,
                                 log_dir=work, bodies=ingest_file, tag=f"t2r{number}",
                                 expect=serving_requests.INGEST_EXPECT,
                                 prefix=cores.prefix(cores.load)).result()  # fmt: skip
                process_tree.wait_idle(app.process.pid)
                batches = result.requests or batches
                rate = result.events_per_busy_s
                if result.requests:  # a round shorter than one batch says nothing of the rate
                    http_rates.append(rate)
                busy = result.requests * result.mean_ms / 1000
                rows.append([number + 1, "ingestEvents over HTTP", result.events, fmt_s(busy), rate,
                             result.accepted, result.duplicates, result.rejected, _problems(result)])  # fmt: skip
            else:
                count = batches or max(3, plan.ingest_seconds // 2)
                floor = _sql_floor(floor_db, ingest_file, count, f"t2f{number}", cores)
                rate = floor["events"] / floor["seconds"]
                floor_rates.append(rate)
                rows.append([number + 1, "floor: hand-written SQL", floor["events"], fmt_s(floor["seconds"]), rate,
                             floor["events"] - floor["duplicates"], floor["duplicates"], 0, "none"])  # fmt: skip
    table(["round", "path", "events", "time", "events/s", "accepted", "duplicate", "rejected", "problems"], rows)
    if not http_rates:
        why = f"no batch answered within --ingest-seconds {plan.ingest_seconds}"
        return [Row.skipped(ONE_WORKER, ONE_CORE, why)], None
    http, floor_rate = statistics.median(http_rates), statistics.median(floor_rates)
    say(f"  medians over rounds (those with a batch answered): HTTP {http:,.0f} events/s, floor {floor_rate:,.0f} "
        f"events/s; HTTP / floor {times(http, floor_rate)}")  # fmt: skip
    return [
        Row(ONE_WORKER, f"{http:,.0f} events/s", ONE_CORE,
            f"{floor_rate:,.0f} events/s (SQL)", times(http, floor_rate), None)
    ], floor_rate  # fmt: skip


def ingestion_on_every_core(
    cached: Path, work: Path, plan: Plan, cores: Cores, ingest_file: Path, floor_rate: float | None
) -> list[Row]:
    """Part 2's batches sent to the server as `make run` starts it (a worker process per core), over
    several connections, nothing pinned: what a connector gets from the whole machine."""
    workers = len(cores.usable)
    heading(f"2b. Ingestion over HTTP on every core: {plan.ingest_rounds} rounds of {plan.ingest_seconds} s")
    say(
        f"  `python -m app serve` with CDP_WORKERS={workers} (the default: one per core) on a new copy of the store, "
        f"wrk with {EVERY_CORE_CONNECTIONS} connections (the kernel hands each to a worker), nothing pinned, "
        "after a round not counted; "
        "events/s = events answered / the round's length (a batch cut off by its end counts for nothing); "
        "floor: part 2's hand-written SQL, one process"
    )
    unpinned = Cores(None, None, cores.usable)
    database = store_cache.copy_store(cached, work / "every-core.sqlite3")
    rates: list[float] = []
    rows: list[list[Any]] = []
    with app_server(database, work, unpinned, {"CDP_WORKERS": str(workers)}, "app-every-core") as app:
        process_tree.wait_idle(app.process.pid)  # each worker's start-up work done
        # A round first, not counted: until a write finds another worker holding the lock, each worker
        # computes its batches under it (read_snapshot), and the documents' pages are cold.
        wrk.Wrk("ingest-every-core-warm-up", f"{app.base_url}/graphql", connections=EVERY_CORE_CONNECTIONS,
                seconds=min(plan.ingest_seconds, 10), log_dir=work, bodies=ingest_file, tag="t2bw",
                expect=serving_requests.INGEST_EXPECT, prefix=[]).result()  # fmt: skip
        process_tree.wait_idle(app.process.pid)
        for number in range(plan.ingest_rounds):
            result = wrk.Wrk(f"ingest-every-core-{number}", f"{app.base_url}/graphql",
                             connections=EVERY_CORE_CONNECTIONS, seconds=plan.ingest_seconds, log_dir=work,
                             bodies=ingest_file, tag=f"t2b{number}", expect=serving_requests.INGEST_EXPECT,
                             prefix=[]).result()  # fmt: skip
            process_tree.wait_idle(app.process.pid)
            rate = result.events / result.seconds if result.seconds else 0.0
            rates.append(rate)
            rows.append([number + 1, result.events, fmt_s(result.seconds), rate, result.accepted,
                         result.duplicates, result.rejected, _problems(result)])  # fmt: skip
        table(["round", "events", "time", "events/s", "accepted", "duplicate", "rejected", "problems"], rows)
        shared = reads_on_every_core(app, work, plan)
    rate = statistics.median(rates)
    floor = f"{floor_rate:,.0f} events/s (SQL, one process)" if floor_rate else "-"
    return [
        Row(f"2b. ingestion over HTTP, {workers} workers", f"{rate:,.0f} events/s", ">= 5,000 events/s",
            floor, times(rate, floor_rate) if floor_rate else "-", rate >= 5000),
        shared,
    ]  # fmt: skip


def reads_on_every_core(app: Server, work: Path, plan: Plan) -> Row:
    """Part 1's profile queries over a few connections opened together, to the server of part 2b:
    how the workers share them (each round's connections are new: the workers take them then)."""
    workers = process_tree.workers(app.process.pid)
    say(
        f"\n  profile queries (part 1's) from wrk over {EVERY_CORE_CONNECTIONS} connections opened together, "
        f"{plan.ingest_rounds} rounds of {plan.round_seconds} s: requests/s and each worker process's share of "
        "the server's CPU (app/accept_balance.py shares the connections out by count)"
    )
    rows: list[list[Any]] = []
    rates, least = [], []
    for number in range(plan.ingest_rounds):
        before = {pid: process_cpu_s(pid) or 0.0 for pid in workers}
        result = wrk.Wrk(f"reads-every-core-{number}", f"{app.base_url}/graphql", connections=EVERY_CORE_CONNECTIONS,
                         seconds=plan.round_seconds, log_dir=work, bodies=work / "profile.txt",
                         expect=serving_requests.PROFILE_EXPECT, prefix=[]).result()  # fmt: skip
        used = [max((process_cpu_s(pid) or 0.0) - before[pid], 0.0) for pid in workers]
        shares = [u / sum(used) if sum(used) else 0.0 for u in used]
        rates.append(result.per_s)
        least.append(min(shares, default=0.0))
        rows.append([number + 1, f"{result.per_s:,.0f}", " / ".join(f"{share:.0%}" for share in shares),
                     _problems(result)])  # fmt: skip
    table(["round", "requests/s", "CPU share of each worker", "problems"], rows)
    return Row(f"2c. profile queries over {EVERY_CORE_CONNECTIONS} connections, {len(workers)} workers",
               f"{statistics.median(rates):,.0f} requests/s", "(reference: every worker serves)",
               f"least busy worker: {min(least):.0%} of the CPU", "-", None)  # fmt: skip


def _sql_floor(database: Path, bodies: Path, batches: int, tag: str, cores: Cores) -> dict[str, Any]:
    command = [*cores.prefix(cores.server), sys.executable, "-m", "bench.sql_ingest_floor", str(database),
               str(bodies), "--batches", str(batches), "--tag", tag]  # fmt: skip
    done = subprocess.run(command, capture_output=True, text=True, check=False, timeout=1800, cwd=PROJECT_ROOT)
    if done.returncode != 0:
        raise RuntimeError(f"the SQL floor failed: {done.stderr[-2000:]}")
    result: dict[str, Any] = orjson.loads(done.stdout.strip().splitlines()[-1])
    return result


# -- 4. first start ---------------------------------------------------------------------------------
def first_starts(work: Path, plan: Plan) -> list[Row]:
    heading(f"4. First start: empty store, demo data seeded, {plan.start_rounds} rounds (polled every 50 ms)")
    if plan.start_rounds == 0:
        return [Row.skipped("4. first start", "<= 2 s / <= 10 s", "--start-rounds 0")]
    say(
        "  `python -m app serve` as `make run` starts it (default workers, authentication on, CDP_SEED_FIXTURES on, "
        "not pinned) on a new empty SQLite file; floors: `python -c 'import app.main'` and a bare uvicorn app "
        "(bench/bare_app.py) to its first /healthz 200; floors and server alternate"
    )
    starts: list[first_start.Start] = []
    bare: list[float] = []
    imports: list[float] = []
    rows: list[list[Any]] = []
    for number in range(plan.start_rounds):
        for kind in ("floors", "app") if number % 2 == 0 else ("app", "floors"):
            if kind == "app":
                start = first_start.app_start(work, number)
                starts.append(start)
                rows.append([number + 1, "python -m app serve", _s(start.healthz_s), _s(start.readyz_s),
                             "-" if start.profiles is None else f"{start.profiles:,}"])  # fmt: skip
            else:
                imports.append(first_start.import_time())
                bare_s = first_start.bare_start(work, number)
                if bare_s is not None:
                    bare.append(bare_s)
                rows.append([number + 1, "floors: import app.main / bare uvicorn", _s(imports[-1]), _s(bare_s), "-"])
    table(["round", "what", "/healthz 200 (import)", "/readyz 200 (bare /healthz)", "profiles at ready"], rows)
    healthz = [s.healthz_s for s in starts if s.healthz_s is not None]
    readyz = [s.readyz_s for s in starts if s.readyz_s is not None]
    bare_s, import_s = statistics.median(bare) if bare else 0.0, statistics.median(imports)
    out = []
    for measure, found, target, floor, floor_text in (
        ("4a. first start: /healthz 200", healthz, 2.0, bare_s, "bare uvicorn first 200"),
        ("4b. first start: /readyz 200, demo data in", readyz, 10.0, import_s, "import app.main"),
    ):
        if len(found) < len(starts):
            out.append(
                Row.skipped(measure, f"<= {target:g} s", f"{len(starts) - len(found)} start(s) never answered 200")
            )
            continue
        value = statistics.median(found)
        out.append(Row(measure, f"{value:.2f} s", f"<= {target:g} s", f"{floor:.2f} s ({floor_text})",
                       times(value, floor), value <= target))  # fmt: skip
    return out


def _s(seconds: float | None) -> str:
    return "never" if seconds is None else f"{seconds:.2f} s"
