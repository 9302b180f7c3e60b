"""Target 3 of the serving benchmark: many clients of mixed requests plus WebSocket subscribers of a
segment the ingests move profiles into and out of, for `--seconds`.

Clients: one wrk process per request class, run at once on the load core: 50% personalisation
queries, 20% filtered lists, 30% small ingests (batches of 10 mixed events), split by connection;
a fourth wrk probes /healthz every 100 ms. Subscribers: bench/node/subscribers.mjs (graphql-ws).
Floors, measured just before: /healthz with no load, and the profile-query class alone against the
app and against a hand-written endpoint doing the same read (bench/profile_floor_app.py).
What each subscriber should have heard is what the server recorded: the rows of `segment_events`
for the segment, read from the store file after the load. Memory: the server tree's RSS sampled
every second.
"""

from __future__ import annotations

import math
import sqlite3
import time
from contextlib import closing
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

import httpx
import orjson

from bench import process_tree, profile_floor_app, serving_requests, wrk
from bench.common import Server, heading, say, table
from bench.process_tree import Cores
from bench.subscribers import Subscribers, judge
from bench.targets import Row, ms, p50_ms, p99_ms, times

if TYPE_CHECKING:
    from bench.serving import Plan

SMALL_BATCH = 10
SMALL_POOL = 2000
PROFILE_POOL = 2000
PROBE_MS = 100
SETTLE_S = 2.0  # after every subscriber is acknowledged: their subscribe messages are in
FLOOR_SECONDS = 10
GRACE_S = 5.0  # after the load: late deliveries still count as heard (not as within 1 s)
P99_TARGET_MS = 250.0
HEALTHZ_TARGET_MS = 50.0


def shares(clients: int) -> dict[str, int]:
    profile = round(clients * 0.5)
    lists = round(clients * 0.2)
    return {"profile query": profile, "filtered list": lists, "small ingest": clients - profile - lists}


def mixed_load(app: Server, database: Path, work: Path, plan: Plan, cores: Cores, no_node: str | None) -> list[Row]:
    split = shares(plan.clients)
    subscribers = 0 if no_node else plan.subscribers
    heading(
        f"3. Mixed load: {plan.clients} clients ({', '.join(f'{n} {k}' for k, n in split.items())}) and "
        f"{subscribers} subscribers for {plan.seconds} s"
    )
    if no_node:
        say(f"  subscribers SKIPPED: {no_node}")
    url = f"{app.base_url}/graphql"
    started = time.perf_counter()
    with httpx.Client(base_url=app.base_url, timeout=1800, headers={"content-type": "application/json"}) as client:
        created = orjson.loads(client.post("/graphql", content=serving_requests.create_segment_body()).content)
        if created.get("errors"):
            raise RuntimeError(f"createSegment failed: {created['errors']}")
        segment_id = created["data"]["createSegment"]["segment"]["id"]
        say(
            f"  segment {segment_id} (cart abandoners, 30 days) created and evaluated in "
            f"{time.perf_counter() - started:.1f} s"
        )
        files = {
            "profile query": (serving_requests.profile_bodies(plan.profiles, PROFILE_POOL, plan.seed + 3),
                              serving_requests.PROFILE_EXPECT),
            "filtered list": (serving_requests.list_bodies(segment_id), serving_requests.LIST_EXPECT),
            "small ingest": (serving_requests.ingest_bodies(plan.profiles, batches=SMALL_POOL,
                                                            batch_size=SMALL_BATCH, seed=plan.seed + 5),
                             serving_requests.INGEST_EXPECT),
        }  # fmt: skip
        paths = {}
        for name, (bodies, _) in files.items():
            paths[name] = wrk.write_bodies(work / f"mixed-{name.replace(' ', '-')}.txt", bodies)
            warm = orjson.loads(client.post("/graphql", content=bodies[0].replace(b"__UID__", b"warm")).content)
            if warm.get("errors"):
                raise RuntimeError(f"{name} failed: {warm['errors']}")
    load = cores.prefix(cores.load)
    idle = _unloaded(app, database, work, plan, cores, paths["profile query"], split["profile query"])
    listeners: Subscribers | None = None
    if subscribers:
        request = {"query": serving_requests.SUBSCRIPTION, "variables": {"segmentId": segment_id}}
        listeners = Subscribers(url.replace("http://", "ws://"), subscribers, request, work, prefix=load)
    runs: dict[str, wrk.Wrk] = {}
    heard = None
    recorded: list[tuple[str, str]] = []
    try:
        if listeners is not None:
            acknowledged = listeners.wait_ready()
            say(f"  {acknowledged} of {subscribers} subscribers connected (connection_ack) and subscribed")
            time.sleep(SETTLE_S)
        baseline = _last_rowid(database)
        for name in split:
            runs[name] = wrk.Wrk(f"mixed-{name.replace(' ', '-')}", url, connections=split[name],
                                 seconds=plan.seconds, log_dir=work, bodies=paths[name], tag="t3",
                                 expect=files[name][1], prefix=load)  # fmt: skip
        probe = f"{app.base_url}/healthz"
        runs["/healthz probe"] = wrk.Wrk("mixed-healthz", probe, connections=1, seconds=plan.seconds,
                                         log_dir=work, delay_ms=PROBE_MS, prefix=load)  # fmt: skip
        memory = _sample_memory(app.process.pid, plan.seconds)
        results = {name: run.result() for name, run in runs.items()}
        ended = datetime.now(UTC)
        if listeners is not None:
            # requests the load generators left in flight are still being served: their changes count too
            process_tree.wait_idle(app.process.pid)
            time.sleep(GRACE_S)
            recorded = _recorded(database, segment_id, baseline)
            heard = listeners.stop()
    finally:
        for run in runs.values():
            run.stop()
        if listeners is not None and heard is None:
            listeners.kill()
    rows = [[name, split.get(name, 1), r.requests, f"{r.per_s:,.0f}", ms(p50_ms(r)), ms(r.p90_ms if r.requests else
             math.inf), ms(p99_ms(r)), ms(r.max_ms if r.requests else math.inf), _problems(r)]
            for name, r in results.items()]  # fmt: skip
    table(["class", "connections", "answered", "req/s", "p50", "p90", "p99", "max", "problems"], rows)
    say("  answered: requests answered within the run; wrk's latencies leave out those still unanswered at its end")
    total = sum(results[n].requests for n in split)
    say("  share of requests: " + ", ".join(f"{n} {results[n].requests / total:.0%}" for n in split if total))
    stored = _stored_messages(database, "e-t3-%")
    ingests = results["small ingest"]
    say(f"  small ingests: {ingests.accepted:,} events ACCEPTED in answers, {stored:,} stored under the load's "
        f"message ids ({'nothing lost' if stored >= ingests.accepted else 'LOST EVENTS'}; the store may hold more: "
        "requests cut off at the end)")  # fmt: skip
    say(f"  server RSS: start {_mb(memory[0])}, middle {_mb(memory[len(memory) // 2])}, end {_mb(memory[-1])}, "
        f"max {_mb(max(memory))} ({len(memory)} samples, 1 s apart)")  # fmt: skip
    out = _rows(results, split, idle, memory, split["profile query"])
    if heard is None:
        out.append(Row.skipped("3. subscribers: changes heard within 1 s", "every change", no_node or "none asked"))
        return out
    delivery = judge(heard, [event_id for event_id, _ in recorded])
    end = _iso(ended)
    during = sum(1 for _, at in recorded if at <= end)
    say(f"  segment changes the server recorded (ENTERED / EXITED rows of segment_events): {delivery.changes:,}, "
        f"{during:,} during the load and {delivery.changes - during:,} after it (requests left in flight)")  # fmt: skip
    table(
        ["subscribers", "should hear (each)", "heard: fewest / most", "deliveries", "heard", "within 1 s", "missed",
         "p50 ms", "p99 ms", "max ms"],
        [[f"{heard.acknowledged} / {heard.subscribers}", delivery.changes,
          f"{delivery.heard_min} / {delivery.heard_max}", delivery.expected, delivery.heard, delivery.within_1s,
          delivery.missed, delivery.p50_ms, delivery.p99_ms, delivery.max_ms]],
    )  # fmt: skip
    say(f"  latency: the change's `at` to the client's receipt (same clock), over every delivery; heard: what arrived "
        f"up to {GRACE_S:g} s after the server went idle; {delivery.extra:,} deliveries of other changes")  # fmt: skip
    for what, found in (("closed", heard.closes), ("errors", heard.errors)):
        for reason, count in found.items():
            say(f"  subscribers {what}: {count} x {reason}")
    on_time = delivery.within_1s == delivery.expected and heard.acknowledged == heard.subscribers
    out.append(Row("3. subscribers: deliveries within 1 s", f"{delivery.within_1s:,} of {delivery.expected:,} "
                   f"(p99 {delivery.p99_ms:,.0f} ms)", "every one", "-", "-", on_time))  # fmt: skip
    return out


@dataclass(frozen=True, slots=True)
class Unloaded:
    """The floors of the mixed load, measured on the same machine just before it."""

    healthz: wrk.WrkResult  # the app's /healthz probed every 100 ms, nothing else running
    profile_app: wrk.WrkResult  # the profile-query class alone on the app, same connections
    profile_floor: wrk.WrkResult  # the same on the hand-written endpoint (bench/profile_floor_app.py)


def _unloaded(
    app: Server, database: Path, work: Path, plan: Plan, cores: Cores, bodies: Path, connections: int
) -> Unloaded:
    load = cores.prefix(cores.load)
    seconds = min(FLOOR_SECONDS, plan.seconds)
    healthz = wrk.Wrk("healthz-idle", f"{app.base_url}/healthz", connections=1, seconds=seconds, log_dir=work,
                      delay_ms=PROBE_MS, prefix=load).result()  # fmt: skip

    def reads(name: str, base_url: str) -> wrk.WrkResult:
        return wrk.Wrk(name, f"{base_url}/graphql", connections=connections, seconds=seconds, log_dir=work,
                       bodies=bodies, expect=serving_requests.PROFILE_EXPECT, prefix=load).result()  # fmt: skip

    profile_app = reads("profile-alone", app.base_url)
    with profile_floor_app.served(database, work, cores.server) as floor:
        reads("profile-floor-warm-up", floor.base_url)
        profile_floor = reads("profile-floor", floor.base_url)
    table(
        ["with nothing else running", "connections", "answered", "req/s", "p50", "p99", "max", "problems"],
        [[name, n, r.requests, f"{r.per_s:,.0f}", ms(p50_ms(r)), ms(p99_ms(r)), ms(r.max_ms), _problems(r)]
         for name, n, r in (("/healthz every 100 ms", 1, healthz), ("profile query, the app", connections, profile_app),
                            ("profile query, hand-written endpoint", connections, profile_floor))],
    )  # fmt: skip
    say(
        "  hand-written endpoint: bench/profile_floor_app.py, the same store calls and JSON with orjson under uvicorn, "
        "on the same store file and core"
    )
    return Unloaded(healthz, profile_app, profile_floor)


def _rows(
    results: dict[str, wrk.WrkResult], split: dict[str, int], idle: Unloaded, memory: list[int], readers: int
) -> list[Row]:
    out = []
    for name in split:
        r = results[name]
        floor, ratio = "-", "-"
        if name == "profile query":
            floor = f"{ms(p99_ms(idle.profile_floor))} (hand-written, {readers} conn., alone)"
            ratio = times(p99_ms(r), p99_ms(idle.profile_floor))
        value = f"{ms(p99_ms(r))} ({ms(p50_ms(r))}), {r.requests:,} answered" + (
            f", {r.timeouts:,} timed out" if r.timeouts else "")  # fmt: skip
        out.append(Row(f"3. mixed load: {name} p99 (p50)", value, "p99 <= 250 ms", floor, ratio,
                       p99_ms(r) <= P99_TARGET_MS and r.failures == 0))  # fmt: skip
    probe, healthz = results["/healthz probe"], idle.healthz
    out.append(Row("3. mixed load: /healthz p99", ms(p99_ms(probe)), "<= 50 ms", f"{ms(p99_ms(healthz))} (no load)",
                   times(p99_ms(probe), p99_ms(healthz)), p99_ms(probe) <= HEALTHZ_TARGET_MS))  # fmt: skip
    growth = memory[-1] / memory[0] if memory[0] else 0.0
    out.append(Row("3. mixed load: server RSS start / middle / end",
                   f"{_mb(memory[0])} / {_mb(memory[len(memory) // 2])} / {_mb(memory[-1])}", "flat", "-",
                   f"{growth:.2f}x", None))  # fmt: skip
    return out


def _sample_memory(pid: int, seconds: float) -> list[int]:
    """The server tree's RSS every second while the load runs (bounded by the load's duration)."""
    samples = [process_tree.rss_bytes(pid)]
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        time.sleep(min(1.0, max(0.0, deadline - time.monotonic())))
        samples.append(process_tree.rss_bytes(pid))
    return samples


def _problems(result: wrk.WrkResult) -> str:
    return result.problems() or "none"


def _mb(value: int) -> str:
    return f"{value / 1e6:,.0f} MB"


def _read(database: Path, sql: str, params: tuple[Any, ...]) -> list[tuple[Any, ...]]:
    with closing(sqlite3.connect(f"file:{database}?mode=ro", uri=True, timeout=30)) as db:
        return db.execute(sql, params).fetchall()


def _last_rowid(database: Path) -> int:
    return int(_read(database, "SELECT coalesce(max(rowid), 0) FROM segment_events", ())[0][0])


def _recorded(database: Path, segment_id: str, after_rowid: int) -> list[tuple[str, str]]:
    """(id, at) of the segment's changes recorded after `after_rowid`."""
    rows = _read(
        database,
        "SELECT id, at FROM segment_events WHERE rowid > ? AND segment_id = ? ORDER BY rowid",
        (after_rowid, segment_id),
    )
    return [(r[0], r[1]) for r in rows]


def _iso(moment: datetime) -> str:
    """As the embedded store writes times (fixed width, so string order is time order)."""
    return moment.strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"


def _stored_messages(database: Path, pattern: str) -> int:
    return int(_read(database, "SELECT count(*) FROM processed_messages WHERE message_id LIKE ?", (pattern,))[0][0])
