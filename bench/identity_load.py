"""One profile's candidates beside a frontend's profile reads, from outside the server: what the
in-process timings of section 3 cannot see. There one lookup runs after another and nothing else
waits for the loop; a server answers a steward's lookups and a frontend's profile reads at once, and
the reads wait for whatever holds the loop. Reading a lookup's look-alikes on the loop made the
lookups faster in process and the reads' p99 half as long again under this load (bench/RESULTS.md,
2026-12-07): it is measured here so that the next change of that kind shows it.

The server (`python -m app serve`, one worker) runs on the section's largest store, pinned to one
core; wrk on the other core runs two request classes of bench/lua/load.lua at once: two connections
asking `mergeCandidates(profileId)` as fast as they are answered, and two asking `profile(id)` of other
profiles every PROBE_MS. The floor is the same reads alone, measured in rounds alternated with the
loaded ones (medians printed, each round's p99 beside them).
"""

from __future__ import annotations

import statistics
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import orjson

from bench import process_tree, wrk
from bench.common import app_server_env, say, server, table

ROUNDS = 3
SECONDS = 15.0
PROBE_MS = 5
LOOKUP_CONNECTIONS = 2
READ_CONNECTIONS = 2
LOOKUP = "query($id: ID!) { mergeCandidates(profileId: $id) { score } }"
READ = "query($id: ID!) { profile(id: $id) { id firstName lastName } }"


@dataclass(frozen=True, slots=True)
class Served:
    """What `lookups_beside_reads` measured, or why it did not."""

    skipped: str | None = None
    alone: tuple[wrk.WrkResult, ...] = ()
    beside: tuple[wrk.WrkResult, ...] = ()
    lookups: tuple[wrk.WrkResult, ...] = ()
    cores: str = ""


def lookups_beside_reads(database: Path, work: Path, lookups: Sequence[str], reads: Sequence[str]) -> Served:
    """The profile reads' latency alone and beside lookups, and the lookups' own, through a server on
    the store at `database` (closed by this process: the server opens it as its own)."""
    why_not = wrk.missing()
    if why_not:
        return Served(skipped=why_not)
    cores = process_tree.plan_cores()
    load = cores.prefix(cores.load)
    asked = wrk.write_bodies(work / "lookups.jsonl", [_body(LOOKUP, i) for i in lookups])
    read = wrk.write_bodies(work / "reads.jsonl", [_body(READ, i) for i in reads])
    alone: list[wrk.WrkResult] = []
    beside: list[wrk.WrkResult] = []
    looked: list[wrk.WrkResult] = []
    command = ["-m", "app", "serve", "--workers", "1"]
    # No computed-traits job: with one, the third round of two runs was slow for every class (its
    # first job over the whole store); without it, the rounds read alike.
    env = {**app_server_env(database), "CDP_TRAITS_EVERY_MINUTES": "0"}
    with server("identity-load", command, env=env, log_dir=work) as app:
        process_tree.pin(app.process.pid, cores.server)
        url = f"{app.base_url}/graphql"

        def reads_for(name: str) -> wrk.Wrk:
            return wrk.Wrk(name, url, connections=READ_CONNECTIONS, seconds=SECONDS, log_dir=work, bodies=read,
                           expect='"profile"', delay_ms=PROBE_MS, prefix=load)  # fmt: skip

        def lookups_for(name: str) -> wrk.Wrk:
            return wrk.Wrk(name, url, connections=LOOKUP_CONNECTIONS, seconds=SECONDS, log_dir=work, bodies=asked,
                           expect='"mergeCandidates"', prefix=load)  # fmt: skip

        warm = lookups_for("warm")  # both classes once: the server's caches as in the rounds after
        reads_for("warm-reads").result()
        warm.result()
        for round_ in range(ROUNDS):
            alone.append(reads_for(f"reads-{round_}").result())
            running = lookups_for(f"lookups-{round_}")
            beside.append(reads_for(f"reads-beside-{round_}").result())
            looked.append(running.result())
    return Served(None, tuple(alone), tuple(beside), tuple(looked), cores.describe())


def report(served: Served, scorer: str) -> None:
    """Print what `lookups_beside_reads` measured."""
    say()
    if served.skipped is not None:
        say(f"  profile reads beside lookups: skipped ({served.skipped})")
        return
    rows = [
        _row("profile reads alone (floor)", served.alone),
        _row("profile reads beside lookups", served.beside),
        _row(f"the lookups themselves ({scorer})", served.lookups),
    ]
    table(["through a server, largest store", "requests/s", "p50 ms", "p99 ms", "p99 by round"], rows)
    ratio = _median(served.beside, "p99_ms") / _median(served.alone, "p99_ms")
    say(f"  profile reads' p99 beside lookups / alone: {ratio:.2f}x; {served.cores}")
    say(f"  lookups: mergeCandidates of random profiles on {LOOKUP_CONNECTIONS} connections as fast as answered;")
    say(f"  reads: profile(id) of others on {READ_CONNECTIONS} connections every {PROBE_MS} ms; {ROUNDS} rounds of")
    say(f"  {SECONDS:.0f} s, alone and beside alternated, after a warm-up; medians (bench/identity_load.py)")
    for result in (*served.alone, *served.beside, *served.lookups):
        # A class asking as fast as it is answered has a request on each connection when its run ends.
        if result.failures or result.unanswered > max(LOOKUP_CONNECTIONS, READ_CONNECTIONS):
            say(f"  PROBLEM {result.name}: {result.problems()}")


def _body(query: str, profile_id: str) -> bytes:
    return orjson.dumps({"query": query, "variables": {"id": profile_id}})


def _median(results: Sequence[wrk.WrkResult], field: str) -> float:
    return float(statistics.median(getattr(r, field) for r in results))


def _row(label: str, results: Sequence[wrk.WrkResult]) -> list[object]:
    return [
        label,
        f"{statistics.median(r.per_s for r in results):,.0f}",
        f"{_median(results, 'p50_ms'):.2f}",
        f"{_median(results, 'p99_ms'):.2f}",
        " / ".join(f"{r.p99_ms:.2f}" for r in results),
    ]
