"""The segments benchmark: real-time delivery to many subscribers, and batch evaluation at scale.

    python -m bench segments                 # issue 14's three subscription targets; a segment over 100,000 profiles
    python -m bench segments --quick         # 200 / 500 / 500 subscribers, 10 changes; 10,000 profiles
    python -m bench segments --crowd 0 --per-profile 0   # only the 1,000 subscribers of one segment

Delivery: a real server process (embedded store, one worker) pinned to one core; the subscribers are
the reference `graphql-ws` client on node (bench/node/subscribers.mjs, bench/subscribers.py) pinned to
the other core. Each change is one `upsertProfile` over HTTP making a profile enter or leave the VIP
segment; the next is made once every expected delivery arrived (or after a generous deadline). Each
delivery is timed from the change's `at` to its receipt (same clock), judged against the changes the
server recorded (segment_events): missed and stray deliveries, refused and closed clients.
1. 1,000 subscribers of one segment (opened in waves of 50), beside the mutation's own HTTP round trip.
2. `--crowd N` (10,000) clients all connecting at once to one server, all subscribing to the segment.
3. `--per-profile N` (10,000) subscribers each watching its own profile (`profileId`); each change, to
   one random profile among them, must reach its subscriber and no one else.
4. Batch evaluation: a new segment evaluated over the whole store in-process (the query built from
   its tree, then one membership write and event per member), beside the floor of reading every
   profile id once.
"""

from __future__ import annotations

import argparse
import random
import sqlite3
import time
from collections.abc import Iterator
from contextlib import closing, contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx

from app.bootstrap import Services
from app.domain.profile import Address, IdentifierRecord, Profile, Stats
from app.domain.profile_query import ProfileFilter
from app.services.ingestion import IngestionPolicy
from app.settings import Settings
from bench import dataset, process_tree, subscribers
from bench.common import Server, fmt_s, heading, percentile, run_async, say, say_machine, table, temp_dir
from bench.identity_store import build_store
from bench.process_tree import Cores
from bench.serving import app_server, worker_setting
from bench.serving_mixed import _last_rowid, _recorded
from bench.subscribers import Subscribers, judge
from bench.targets import Row, ms, print_rows, times

FULL = {"subscribers": 1000, "rounds": 30, "profiles": 100_000, "crowd": 10_000, "per_profile": 10_000}
QUICK = {"subscribers": 200, "rounds": 10, "profiles": 10_000, "crowd": 500, "per_profile": 500}
PROFILE_CHANGES = 200  # changes of section 3 (each reaches one subscriber: more samples for its p99)
SEGMENT_SUBSCRIPTION = (
    "subscription($s: ID) { segmentMembershipChanged(segmentId: $s) { id change profileId segmentId at } }"
)
PROFILE_SUBSCRIPTION = (
    "subscription($profileId: ID) { segmentMembershipChanged(profileId: $profileId) "
    "{ id change profileId segmentId at } }"
)
CREATE = """mutation { createSegment(input: {name: "VIP", traits: {vip: "boolean"},
  condition: {compare: {path: "traits.vip", op: "eq", value: true}}}) { segment { id } } }"""
FLIP = """mutation($email: String!, $vip: Boolean!) { upsertProfile(input: {identifiers: [{type: "email",
  value: $email}], traits: {vip: $vip}}) { id } }"""
FLIP_EMAIL = "flip@example.com"
ROUND_DEADLINE_S = 15.0  # the longest a change's deliveries are waited for before the next change
LATE_ROUNDS = 3  # after this many changes not fully delivered, the next ones wait LATE_DEADLINE_S at most
LATE_DEADLINE_S = 1.0
POLL_S = 0.01
GRACE_S = 1.0  # after the last change and the server idle: late deliveries still count


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--quick", action="store_true", help="200 / 500 / 500 subscribers, 10 changes, 10,000 profiles")
    parser.add_argument("--subscribers", type=int, help="subscribers of one segment, section 1 (default 1,000)")
    parser.add_argument("--rounds", type=int, help="membership changes of sections 1 and 2 (default 30)")
    parser.add_argument(
        "--crowd", type=int, help="section 2: clients connecting at once, all subscribing to one segment "
        "(default 10,000; 0 skips it)"
    )  # fmt: skip
    parser.add_argument(
        "--per-profile", type=int, help="section 3: subscribers each watching its own profile "
        "(default 10,000; 0 skips it)"
    )  # fmt: skip
    parser.add_argument(
        "--profile-changes", type=int, default=PROFILE_CHANGES,
        help=f"changes of section 3, each to one random profile (default {PROFILE_CHANGES})"
    )  # fmt: skip
    parser.add_argument("--profiles", type=int, help="profiles for the batch evaluation (default 100,000; 0 skips it)")


def _size(args: argparse.Namespace, name: str, sizes: dict[str, int]) -> int:
    value = getattr(args, name)
    return sizes[name] if value is None else value


def run(args: argparse.Namespace) -> None:
    sizes = QUICK if args.quick else FULL
    count, rounds = _size(args, "subscribers", sizes), _size(args, "rounds", sizes)
    crowd, per_profile, profiles = (_size(args, n, sizes) for n in ("crowd", "per_profile", "profiles"))
    cores = process_tree.plan_cores()
    heading("CDP core: segments benchmark")
    say_machine()
    no_node = subscribers.missing()
    say(f"  cores     {cores.describe()}")
    say(f"  clients   {no_node or subscribers.versions()}")
    started = time.perf_counter()
    rows: list[Row] = []
    with temp_dir() as work:
        process_tree.pin_self(cores.load)
        try:
            if no_node:
                rows.append(Row.skipped("subscriptions", "issue 14's three targets", no_node))
            else:
                if count:
                    rows.append(one_segment(work, cores, count, rounds))
                if crowd:
                    rows.append(all_at_once(work, cores, crowd, rounds))
                if per_profile:
                    rows.append(run_async(own_profiles(work, cores, per_profile, args.profile_changes)))
        finally:
            process_tree.release_self(cores)
        if profiles:
            run_async(batch_evaluation(work, profiles))
    heading("Targets (issue 14)")
    print_rows(rows)
    heading("Total")
    say(f"  run time {fmt_s(time.perf_counter() - started)}")


# -- delivery: shared by sections 1-3 --------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class Measured:
    delivery: subscribers.Delivery
    heard: subscribers.Heard
    mutation_s: list[float]  # each change's own HTTP round trip (the floor)
    rss: tuple[int, int]  # the server's resident memory once subscribed, and after the changes


@contextmanager
def _served(work: Path, cores: Cores, name: str, database: Path | None = None) -> Iterator[tuple[Server, Path]]:
    """The app server on its core (bench/serving.py's start and pinning), one worker, its store file."""
    database = database or work / f"{name}.sqlite3"
    with app_server(database, work, cores, worker_setting()[0], name) as app:
        yield app, database


def _post(http: httpx.Client, query: str, variables: dict[str, object]) -> dict[str, Any]:
    response = http.post("/graphql", json={"query": query, "variables": variables})
    body: dict[str, Any] = response.json()
    if response.status_code != 200 or body.get("errors"):
        raise RuntimeError(f"GraphQL call failed: {response.status_code} {body}")
    return body


def _deliver(
    app: Server,
    database: Path,
    work: Path,
    cores: Cores,
    http: httpx.Client,
    *,
    name: str,
    segment_id: str,
    count: int,
    request: dict[str, Any],
    wave: int,
    changes: list[tuple[str, bool]],
    audience: int | None,
) -> Measured:
    """`count` node clients subscribe with `request` (in waves of `wave`, 0: all at once); then each of
    `changes` (email, vip) is made in turn, the next once its deliveries arrived (`audience` of them,
    None: every client) or after ROUND_DEADLINE_S; what they heard is judged against the server's record."""
    ws_url = app.base_url.replace("http://", "ws://") + "/graphql"
    opened = time.perf_counter()
    listeners = Subscribers(ws_url, count, request, work, prefix=cores.prefix(cores.load), wave=wave, name=name)
    heard = None
    mutation: list[float] = []
    try:
        acknowledged = listeners.wait_ready()
        say(f"  {acknowledged:,} of {count:,} clients acknowledged (connection_ack) in "
            f"{time.perf_counter() - opened:.1f} s; their subscribe messages sent")  # fmt: skip
        process_tree.wait_idle(app.process.pid)  # every subscribe is in before the first change
        subscribed_rss = process_tree.rss_bytes(app.process.pid)
        baseline = _last_rowid(database)
        each = acknowledged if audience is None else audience
        expected = listeners.delivered()
        late = 0
        for email, vip in changes:
            expected += each
            sent = time.perf_counter()
            _post(http, FLIP, {"email": email, "vip": vip})
            mutation.append(time.perf_counter() - sent)
            deadline = sent + (ROUND_DEADLINE_S if late < LATE_ROUNDS else LATE_DEADLINE_S)
            while listeners.delivered() < expected and time.perf_counter() < deadline:
                time.sleep(POLL_S)
            late += time.perf_counter() >= deadline
        process_tree.wait_idle(app.process.pid)
        time.sleep(GRACE_S)
        recorded = [event_id for event_id, _ in _recorded(database, segment_id, baseline)]
        rss = (subscribed_rss, process_tree.rss_bytes(app.process.pid))
        heard = listeners.stop()
    finally:
        if heard is None:
            listeners.kill()
    if late:
        say(
            f"  {late} change(s) not fully delivered within {ROUND_DEADLINE_S:g} s ({LATE_DEADLINE_S:g} s after "
            f"{LATE_ROUNDS} such): the next was made anyway"
        )
    delivery = judge(heard, recorded, audience=audience)
    _report(delivery, heard, mutation, rss)
    return Measured(delivery, heard, mutation, rss)


def _report(
    delivery: subscribers.Delivery, heard: subscribers.Heard, mutation: list[float], rss: tuple[int, int]
) -> None:
    table(
        ["clients acked", "changes", "deliveries due", "heard", "within 1 s", "missed", "stray", "p50 ms", "p99 ms",
         "max ms", "mutation p99 ms"],
        [[f"{heard.acknowledged:,} / {heard.subscribers:,}", delivery.changes, f"{delivery.expected:,}",
          f"{delivery.heard:,}", f"{delivery.within_1s:,}", f"{delivery.missed:,}", f"{heard.strays:,}",
          f"{delivery.p50_ms:,.1f}", f"{delivery.p99_ms:,.1f}", f"{delivery.max_ms:,.1f}",
          f"{percentile(mutation, 99) * 1000:,.1f}"]],
    )  # fmt: skip
    say("  latency: the change's `at` (server clock) to the client's receipt, over every delivery; mutation: the "
        "change's own HTTP round trip from this process (the floor)")  # fmt: skip
    say(f"  server RSS: {rss[0] / 1e6:,.0f} MB once subscribed, {rss[1] / 1e6:,.0f} MB after the changes; "
        f"{delivery.extra:,} deliveries of changes before or after them")  # fmt: skip
    refused = sum(heard.closes.values()) + sum(heard.errors.values())
    say(f"  refused or closed: {refused:,}" + (":" if refused else " (none)"))
    for what, found in (("closed", heard.closes), ("error", heard.errors)):
        for reason, number in sorted(found.items(), key=lambda item: -item[1]):
            say(f"    {what}: {number:,} x {reason}")


def _row(measure: str, measured: Measured, target_ms: float, target: str, *, refused_too: bool = False) -> Row:
    delivery, heard = measured.delivery, measured.heard
    floor = percentile(measured.mutation_s, 99) * 1000
    refused = sum(heard.closes.values()) + sum(heard.errors.values())
    problems = [f"{delivery.missed:,} missed"] if delivery.missed else []
    problems += [f"{heard.strays:,} stray"] if heard.strays else []
    problems += [f"{refused:,} refused/closed"] if refused_too and refused else []
    met = (
        delivery.p99_ms <= target_ms
        and not problems
        and heard.acknowledged == heard.subscribers
        and delivery.changes > 0
    )
    value = f"p99 {ms(delivery.p99_ms)} (p50 {ms(delivery.p50_ms)})" + (f", {', '.join(problems)}" if problems else "")
    return Row(measure, value, target, f"{ms(floor)} (mutation p99)", times(delivery.p99_ms, floor), met)


def _flips(count: int) -> list[tuple[str, bool]]:
    return [(FLIP_EMAIL, number % 2 == 0) for number in range(count)]


def _segment_run(work: Path, cores: Cores, name: str, count: int, rounds: int, wave: int) -> Measured:
    with _served(work, cores, name) as (app, database), httpx.Client(base_url=app.base_url, timeout=60) as http:
        segment_id = _post(http, CREATE, {})["data"]["createSegment"]["segment"]["id"]
        _post(http, FLIP, {"email": FLIP_EMAIL, "vip": False})
        request = {"query": SEGMENT_SUBSCRIPTION, "variables": {"s": segment_id}}
        return _deliver(app, database, work, cores, http, name=name, segment_id=segment_id, count=count,
                        request=request, wave=wave, changes=_flips(rounds), audience=None)  # fmt: skip


# -- 1. one segment, many subscribers ---------------------------------------------------------------
def one_segment(work: Path, cores: Cores, count: int, rounds: int) -> Row:
    heading(f"1. Delivery: {count:,} subscribers of one segment (waves of 50), {rounds} membership changes")
    measured = _segment_run(work, cores, "one-segment", count, rounds, wave=50)
    return _row(f"{count:,} subscribers of one segment", measured, 100, "p99 <= 100 ms, none missed")


# -- 2. a crowd connecting at once ------------------------------------------------------------------
def all_at_once(work: Path, cores: Cores, count: int, rounds: int) -> Row:
    heading(f"2. Crowd: {count:,} clients connecting at once to one server, one segment, {rounds} changes")
    measured = _segment_run(work, cores, "crowd", count, rounds, wave=0)
    return _row(f"{count:,} connecting at once", measured, 1000, "p99 <= 1 s, none refused or missed",
                refused_too=True)  # fmt: skip


# -- 3. each subscriber its own profile -------------------------------------------------------------
async def own_profiles(work: Path, cores: Cores, count: int, changes: int) -> Row:
    heading(f"3. Per profile: {count:,} subscribers each watching its own profile, {changes} changes")
    database = work / "per-profile.sqlite3"
    built = await dataset.build_store(database, count, batch_size=1000, run_id=dataset.run_id(), progress=_quiet)
    people = _emails(database)  # (email, profile id): what the changes name, what the clients watch
    say(f"  store of {built.profiles:,} customers written in {fmt_s(built.seconds)} (bench/dataset.py, ingestion)")
    rng = random.Random(11)
    vip: dict[int, bool] = {}
    flips = []
    for _ in range(changes):  # each change makes its profile enter the segment or leave it
        number = rng.randrange(len(people))
        vip[number] = not vip.get(number, False)
        flips.append((people[number][0], vip[number]))
    request = {"query": PROFILE_SUBSCRIPTION, "variablesList": [{"profileId": pid} for _, pid in people]}
    with _served(work, cores, "per-profile", database) as (app, _), httpx.Client(base_url=app.base_url,
                                                                                  timeout=60) as http:  # fmt: skip
        segment_id = _post(http, CREATE, {})["data"]["createSegment"]["segment"]["id"]
        measured = _deliver(app, database, work, cores, http, name="per-profile", segment_id=segment_id,
                            count=count, request=request, wave=50, changes=flips, audience=1)  # fmt: skip
    return _row(f"{count:,} each watching its own profile", measured, 50, "p99 <= 50 ms, only its subscriber, "
                "none missed")  # fmt: skip


def _quiet(done: int, seconds: float) -> None:
    """No progress lines while the store is built."""


def _emails(database: Path) -> list[tuple[str, str]]:
    with closing(sqlite3.connect(f"file:{database}?mode=ro", uri=True)) as db:
        rows = db.execute("SELECT key, profile_id FROM identities WHERE type = 'email' ORDER BY key").fetchall()
    return [(key.split(":", 1)[1], profile_id) for key, profile_id in rows]


# -- 4. batch evaluation -------------------------------------------------------------------------
async def batch_evaluation(work: Path, count: int) -> None:
    heading(f"4. Batch evaluation: a new segment over {count:,} profiles (embedded store, in-process)")
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
