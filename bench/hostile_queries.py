"""Hostile GraphQL documents against the real server: how long each takes to be refused, and how
/healthz answers meanwhile (issue 12: refused in at most 50 ms, a concurrent probe answered in at most
20 ms, for any document up to 1 MiB).

    python -m bench hostile            # every class, 5 sends each
    python -m bench hostile --quick    # 2 sends each, without the raised-limit server

The server (`python -m app serve`, embedded store, authentication off on loopback) runs pinned to one
core with `taskset`; this process and the probe process run on another. For each class of document, a
probe process asks GET /healthz every 5 ms while this process sends the document again and again, each
time with a new trailing comment so that the server's document cache cannot answer it: the refusal
time is that of checking the document. Beside them, the floor: the trivial `{ __typename }` sent the
same way (parsed, validated and executed), and the probe with nothing else going on. The server's CPU
time per document (less what the probe's requests cost it) is printed too: on a busy machine it says
what the wall-clock times cannot.

Three servers: the default limits; the token limit raised to 1,000,000 (the length limit, 65,536
characters, still refuses a 1 MiB document before parsing); and both raised (1 MiB documents parsed:
the checks on a worker thread, the probe's figures are the point there, not the target).
"""

from __future__ import annotations

import argparse
import http.client
import json
import multiprocessing
import os
import shutil
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from multiprocessing.connection import Connection
from multiprocessing.synchronize import Event
from pathlib import Path

from bench.common import (
    HOST,
    PROJECT_ROOT,
    SERVER_START_TIMEOUT_S,
    app_server_env,
    fmt_s,
    free_port,
    heading,
    percentile,
    process_cpu_s,
    say,
    say_machine,
    stop_process,
    table,
    temp_dir,
)

REFUSAL_TARGET_MS = 50
PROBE_TARGET_MS = 20
PROBE_EVERY_S = 0.005
REQUEST_TIMEOUT_S = 120
MiB = 1024 * 1024
ONE_MIB_DOCUMENT = MiB - 512  # with the JSON around it, within the 1 MiB body limit
NESTED_PAGES = "{ profiles(first: 100) { edges { node { interactions(first: 100) { edges { node { type } } } } } } }"


def _fan_out(levels: int) -> str:
    spreads = " ".join(f"fragment F{n} on Query {{ ...F{n + 1} ...F{n + 1} }}" for n in range(levels))
    return f"query {{ ...F0 }} {spreads} fragment F{levels} on Query {{ __typename }}"


def _wide_fan_out(size: int) -> str:
    """Fragments each spreading the next several times, up to `size` characters."""
    parts, n = ["query { ...F0 }"], 0
    while sum(len(p) + 1 for p in parts) < size - 200:
        parts.append(f"fragment F{n} on Query {{ ...F{n + 1} ...F{n + 1} ...F{n + 1} }}")
        n += 1
    parts.append(f"fragment F{n} on Query {{ __typename }}")
    return " ".join(parts)


def _large_valid() -> str:
    """A valid document of about 1,100 tokens within every limit: 10 fragments on Segment, 10 on Profile."""
    segment = (
        "id name description purpose createdAt updatedAt evaluatedAt count condition traits "
        "members(first: 2) { edges { cursor node { id } } pageInfo { hasNextPage endCursor } }"
    )
    profile = (
        "id firstName lastName gender language company jobTitle segments version createdAt updatedAt piiMasked "
        "traits identifiers { type value } addresses { city country postcode } consents { purpose granted } "
        "stats { eventsTotal orders revenue averageOrderValue itemsPurchased returns returnedAmount addToCarts "
        "cartAbandons emailOpens emailClicks emailReplies visits pageViews productViews supportContacts "
        "surveyResponses firstSeenAt lastSeenAt } rfm { recencyScore frequencyScore monetaryScore segment computedAt }"
    )
    segments = " ".join(f"...S{n}" for n in range(10))
    profiles = " ".join(f"...P{n}" for n in range(10))
    fragments = [f"fragment S{n} on Segment {{ {segment} }}" for n in range(10)]
    fragments += [f"fragment P{n} on Profile {{ {profile} }}" for n in range(10)]
    operation = (
        f"query Big {{ segments {{ {segments} }} profiles(first: 5) {{ edges {{ cursor node {{ {profiles} }} }} }} }}"
    )
    return " ".join([operation, *fragments])


def _filled(prefix: str, unit: str, suffix: str, size: int) -> str:
    return prefix + unit * ((size - len(prefix) - len(suffix)) // len(unit)) + suffix


@dataclass(frozen=True, slots=True)
class Case:
    name: str
    query: str
    variables: dict[str, object] | None = None


DEFAULT_CASES = [
    Case("floor: { __typename }", "{ __typename }"),
    Case("floor: a valid document of 1,100 tokens", _large_valid()),
    Case("depth: 60 levels", "{ segments { members { edges { node { " + "x { " * 60 + "y" + " }" * 64 + " }"),
    Case("aliases: 1,000", "{ " + " ".join(f"a{n}: __typename" for n in range(1000)) + " }"),
    Case("field duplication: 400 x segments { id }", "{ " + "segments { id } " * 400 + "}"),
    Case("directives: 250 on one field", "{ __typename " + "@skip(if: false) " * 250 + "}"),
    Case(
        "circular fragments",
        "{ segments { ...A } } fragment A on Segment { id ...B } fragment B on Segment { name ...A }",
    ),
    Case("fan-out fragments: 20 levels (880 B)", _fan_out(20)),
    Case("fan-out fragments: 60 levels", _fan_out(60)),
    Case(
        "250 operations sharing a fragment",
        " ".join(f"query Q{n} {{ ...F }}" for n in range(250))
        + " fragment F on Query { segments { id name description purpose createdAt updatedAt count } }",
    ),
    Case("tokens: 3,000", "{ " + "__typename " * 3000 + "}"),
    Case("cost: nested connections", NESTED_PAGES),
    Case("negative page", NESTED_PAGES.replace("interactions(first: 100)", "interactions(first: -100000000)")),
    Case("5,000-digit page", "{ profiles(first: " + "9" * 5000 + ") { edges { cursor } } }"),
    Case(
        "huge variable: a list of 100,000",
        'query($t: [String!]) { profile(id: "p") { interactions(types: $t) { edges { cursor } } } }',
        {"t": ["x"] * 100_000},
    ),
]
MIB_CASES = [
    Case("1 MiB: fan-out fragments", _wide_fan_out(ONE_MIB_DOCUMENT)),
    Case("1 MiB: one string literal", _filled('{ profile(id: "', "x", '") { id } }', ONE_MIB_DOCUMENT)),
    Case("1 MiB: tiny fields", _filled("{ ", "a ", "}", ONE_MIB_DOCUMENT)),
    Case("1 MiB: deep nesting", _filled("{ ", "a { ", "}", ONE_MIB_DOCUMENT)),
]


@dataclass(frozen=True, slots=True)
class Limits:
    name: str
    env: dict[str, str]
    cases: list[Case]
    sends: int | None = None  # None: --sends


SERVERS = [
    Limits("default limits", {}, DEFAULT_CASES + MIB_CASES),
    Limits("tokens 1,000,000", {"CDP_MAX_QUERY_TOKENS": "1000000"}, [DEFAULT_CASES[0], *MIB_CASES]),
    Limits(
        "tokens 1,000,000, length 1 MiB",
        {"CDP_MAX_QUERY_TOKENS": "1000000", "CDP_MAX_QUERY_LENGTH": str(MiB)},
        [DEFAULT_CASES[0], *MIB_CASES],
        sends=1,
    ),
]


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--quick", action="store_true", help="2 sends per class, no raised-limit server")
    parser.add_argument("--sends", type=int, default=5, help="times each document is sent (default 5)")


def run(args: argparse.Namespace) -> None:
    sends = 2 if args.quick else args.sends
    servers = SERVERS[:2] if args.quick else SERVERS
    heading("CDP core: hostile queries benchmark")
    say_machine()
    server_core, client_core = _cores()
    say(
        f"  cores     server on {server_core}, this process and the probe on {client_core} (taskset)"
        if server_core is not None
        else "  cores     not pinned (fewer than 2 usable cores or no taskset)"
    )
    started = time.perf_counter()
    if client_core is not None:
        os.sched_setaffinity(0, {client_core})
    with temp_dir() as work:
        for limits in servers:
            _run_server(limits, limits.sends or sends, server_core, work)
    heading("Total")
    say(f"  run time {fmt_s(time.perf_counter() - started)}")


def _cores() -> tuple[int | None, int | None]:
    usable = sorted(os.sched_getaffinity(0))
    if len(usable) < 2 or shutil.which("taskset") is None:
        return None, None
    return usable[0], usable[1]


def _run_server(limits: Limits, sends: int, core: int | None, work: Path) -> None:
    heading(f"Server: {limits.name}")
    # One worker: the probe and the hostile documents meet on the same event loop, which is the point.
    env = {**app_server_env(work / f"{len(os.listdir(work))}.sqlite3"), "CDP_WORKERS": "1", **limits.env}
    with _server(env, core, work) as (port, pid):
        cpu = _tree_cpu_s(pid)
        idle = _probe_while(port, lambda: time.sleep(1.0))
        per_probe = (_tree_cpu_s(pid) - cpu) / max(1, len(idle))  # the server's CPU for one /healthz
        rows: list[list[object]] = [["probe alone (1 s)", "", "", "", "", "", *_probe_cells(idle)]]
        for case in limits.cases:
            times: list[float] = []
            codes: set[str] = set()

            def send_all(case: Case = case, times: list[float] = times, codes: set[str] = codes) -> None:
                for n in range(sends):
                    elapsed, code = _send(port, case, n)
                    times.append(elapsed)
                    codes.add(code)

            cpu = _tree_cpu_s(pid)
            probe = _probe_while(port, send_all)
            cpu_per_send = (_tree_cpu_s(pid) - cpu - per_probe * len(probe)) / sends
            rows.append(
                [
                    case.name,
                    ", ".join(sorted(codes)),
                    percentile(times, 50) * 1000,
                    max(times) * 1000,
                    max(0.0, cpu_per_send * 1000),
                    REFUSAL_TARGET_MS,
                    *_probe_cells(probe),
                ]
            )
    table(
        [
            "document",
            "answer",
            "median ms",
            "max ms",
            "server CPU ms",
            "target",
            "probe p99 ms",
            "probe max ms",
            "target",
            "probes",
        ],
        rows,
    )


def _probe_cells(latencies: list[float]) -> list[object]:
    if not latencies:
        return ["-", "-", PROBE_TARGET_MS, 0]
    return [percentile(latencies, 99) * 1000, max(latencies) * 1000, PROBE_TARGET_MS, len(latencies)]


def _tree_cpu_s(pid: int) -> float:
    """CPU time (user + system) of `pid` and the processes below it, from /proc."""
    total, todo = 0.0, [pid]
    while todo:
        current = todo.pop()
        total += process_cpu_s(current) or 0.0
        for task in Path(f"/proc/{current}/task").glob("*"):
            try:
                todo += [int(child) for child in (task / "children").read_text().split()]
            except OSError:
                continue
    return total


@contextmanager
def _server(env: dict[str, str], core: int | None, work: Path) -> Iterator[tuple[int, int]]:
    port = free_port()
    pin = ["taskset", "-c", str(core)] if core is not None else []
    command = [*pin, sys.executable, "-m", "app", "serve", "--host", HOST, "--port", str(port)]
    log_path = work / f"server-{port}.log"
    with open(log_path, "wb") as log:
        process = subprocess.Popen(command, cwd=PROJECT_ROOT, env={**os.environ, **env}, stdout=log, stderr=log)
    try:
        deadline = time.monotonic() + SERVER_START_TIMEOUT_S
        while _status(port, "/healthz") != 200:
            if process.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"server did not start; its log:\n{log_path.read_text(errors='replace')[-3000:]}")
            time.sleep(0.1)
        yield port, process.pid
    finally:
        stop_process(process)


def _status(port: int, path: str) -> int | None:
    try:
        connection = http.client.HTTPConnection(HOST, port, timeout=2)
        connection.request("GET", path)
        status = connection.getresponse().status
        connection.close()
        return status
    except OSError:
        return None


def _send(port: int, case: Case, n: int) -> tuple[float, str]:
    """Send `case` (made new by a trailing comment); the time to its answer and the answer's first code."""
    body = json.dumps({"query": f"{case.query}\n# send {n} {time.time_ns()}", "variables": case.variables}).encode()
    connection = http.client.HTTPConnection(HOST, port, timeout=REQUEST_TIMEOUT_S)
    connection.connect()
    started = time.perf_counter()
    connection.request("POST", "/graphql", body, {"content-type": "application/json"})
    response = connection.getresponse()
    answer = response.read()
    elapsed = time.perf_counter() - started
    connection.close()
    try:
        errors = json.loads(answer).get("errors") or []
    except ValueError:
        return elapsed, f"HTTP {response.status}"
    code = errors[0].get("extensions", {}).get("code", "?") if errors else "data"
    return elapsed, code if response.status == 200 else f"{code} ({response.status})"


def _probe_while(port: int, work: Callable[[], None]) -> list[float]:
    """/healthz latencies (seconds) from a probe process, asked every PROBE_EVERY_S while `work()` runs."""
    context = multiprocessing.get_context("fork")
    stop = context.Event()
    ours, theirs = context.Pipe()
    probe = context.Process(target=_probe, args=(port, stop, theirs), daemon=True)
    probe.start()
    theirs.close()
    try:
        work()
    finally:
        stop.set()
        latencies: list[float] = ours.recv()
        probe.join(10)
    return latencies


def _probe(port: int, stop: Event, results: Connection) -> None:
    latencies: list[float] = []
    connection = http.client.HTTPConnection(HOST, port, timeout=REQUEST_TIMEOUT_S)
    next_at = time.perf_counter()
    while not stop.is_set():
        started = time.perf_counter()
        try:
            connection.request("GET", "/healthz")
            connection.getresponse().read()
            latencies.append(time.perf_counter() - started)
        except (OSError, http.client.HTTPException):
            connection.close()
            connection = http.client.HTTPConnection(HOST, port, timeout=REQUEST_TIMEOUT_S)
        # After a stall, go on from now: probes fired back to back to catch up would measure nothing new.
        next_at = max(next_at + PROBE_EVERY_S, time.perf_counter())
        time.sleep(max(0.0, next_at - time.perf_counter()))
    connection.close()
    results.send(latencies)
