"""The demo data's events, loaded by two worker processes side by side on a first start.

One worker loads the demo data (it holds `.seed.lock`, app/bootstrap.py) while the others wait for
it, a core each doing nothing. Its events are most of that wait (~8 of ~11 s on this machine's two
cores). So the loader cuts them into two parts that share no person (app/services/fixture_shards.py),
offers the second in the store's meta (`HELP_META`, naming its process), and loads the first. A
waiting worker that sees the offer takes `.seed-help.lock` and loads the second; the loader then
waits for that lock and loads the second part itself if nobody did (no other worker, or one that
stopped: an event loaded twice is a DUPLICATE, as a load run again). Both take SQLite's write lock
in turn, and a batch's first run is planned before it (app/services/planned_runs.py): each batch's
events are put in an order that makes that run most of the batch (EventGroups.ingestion_order).
The two parts' events take ~4.4 s side by side, against 6.2-7.0 s with the batches in the file's
order (2026-12-05: ready 8.4-8.9 s after the command, against 10.2-10.7 s). A waiting worker cuts
the events itself, as soon as it waits (`GroupsAhead`): the loader offers them only once its products
and profiles are in, and cutting them after the offer started the second part that much later.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path

import orjson

from app.demo_offers import offer, taken_offer
from app.domain import clock
from app.domain.errors import DomainError, InvalidInput
from app.process_lock import exclusive
from app.services.fixture_shards import EventGroups, event_groups
from app.services.fixtures import LoadReport, count_lines, data_file, demo_shift, load_events
from app.services.ingestion import IngestionPolicy
from app.services.ports import ProfileStore
from app.shared_seed_progress import SharedSeedProgress

log = logging.getLogger("cdp")

HELP_META = "demoDataHelp"  # "offered <pid>", then the helper's counts (JSON) once the second part is in
HELP_LOCK = ".seed-help.lock"  # held by the process loading the second part
HELP_PROGRESS = ".seed-help.progress"  # how far the helper got, for the loader's progress
HELPED_FROM = 5_000  # fewer events: the helper would start about when one process is done


async def load_demo_events(
    store: ProfileStore,
    directory: Path,
    policy: IngestionPolicy,
    report: LoadReport,
    step: Callable[[str, int, int], None],
    *,
    shift: timedelta,
    data_dir: Path,
    workers: int,
) -> None:
    """The demo data's events, counted into `report`: in two parts when another worker process may
    load one (`workers` > 1) and there are enough of them; else the whole file, as any load."""
    events = data_file(directory, "events.jsonl")
    if events is None or workers < 2 or count_lines(events) < HELPED_FROM:
        await load_events(store, directory, policy, report, step, shift=shift)
        return
    groups = await asyncio.to_thread(_groups, directory)  # as the helper cuts them: off the event loop
    first, second = groups.parts(2)
    helper = SharedSeedProgress(data_dir / HELP_PROGRESS)

    def told(offset: int) -> Callable[[str, int, int], None]:
        def progress(stage: str, done: int, total: int) -> None:
            helped = helper.read()
            step(stage, offset + done + (helped[1] if helped is not None else 0), len(first) + len(second))

        return progress

    await offer(store, HELP_META)
    order = groups.ingestion_order
    await load_events(store, directory, policy, report, told(0), shift=shift, lines=first, order=order)

    async def helped_so_far() -> None:
        told(len(first))("events", 0, 0)

    # The second part: once its helper is done, or by this process if nobody took it.
    async with exclusive(data_dir / HELP_LOCK, meanwhile=helped_so_far):
        helped = await store.read_meta(HELP_META)
        if helped is not None and helped.startswith("{"):  # a helper's counts
            _add(report, orjson.loads(helped))
        else:
            log.info("no other worker loaded the second part of the demo data's events: loading it")
            await load_events(
                store, directory, policy, report, told(len(first)), shift=shift, lines=second, order=order
            )
        await store.write_meta(HELP_META, "done")
    step("events", len(first) + len(second), len(first) + len(second))


@dataclass(slots=True)
class GroupsAhead:
    """The demo data's event groups as a waiting worker cut them before the loader offered their second
    part (one wait's: a worker that waits again cuts them again). The loader offers it once its
    products and profiles are in; cutting the events then (0.18-0.21 s, on the event loop) started
    the second part that much later, and the loader, done with the first, waited for it: ready 8.05
    / 8.12 / 8.34 s against 8.55 / 8.93 / 9.91 s (medians of three runs of four first starts each,
    alternating). A cut that fails (a data file that is not one) is not tried again before an offer:
    the loader meets the same problem, and says it."""

    groups: EventGroups | None = None
    tried: bool = False


async def help_load(
    store: ProfileStore, directory: Path, policy: IngestionPolicy, data_dir: Path, ahead: GroupsAhead
) -> None:
    """While another worker process loads the demo data: the second part of its events, if it
    offered it and no other worker took it. Called again and again while this one waits: the first
    call cuts the events into `ahead`, on a worker thread, offered or not."""
    if not ahead.tried:
        ahead.tried = True
        with contextlib.suppress(DomainError, OSError):  # the loader meets it too, and says what is wrong
            ahead.groups = await asyncio.to_thread(_groups, directory)
    async with taken_offer(store, HELP_META, data_dir / HELP_LOCK) as taken:
        if not taken:
            return
        groups = ahead.groups if ahead.groups is not None else await asyncio.to_thread(_groups, directory)
        _, second = groups.parts(2)
        log.info("loading %d of the demo data's events beside the worker process loading the rest", len(second))
        report, progress = LoadReport(), SharedSeedProgress(data_dir / HELP_PROGRESS)
        shift = await demo_shift(store, directory, clock.now())  # the loader chose it: kept in the meta
        await load_events(
            store, directory, policy, report, progress.write, shift=shift, lines=second, order=groups.ingestion_order
        )
        await store.write_meta(HELP_META, orjson.dumps(_counts(report)).decode())


def _groups(directory: Path) -> EventGroups:
    """The data set's events cut by person (its CRM profiles linking them too), for the two parts."""
    events = data_file(directory, "events.jsonl")
    if events is None:
        raise InvalidInput("no events.jsonl to cut", field="events.jsonl")  # never offered: no events, no parts
    return event_groups(events, data_file(directory, "profiles.jsonl"))


def _counts(report: LoadReport) -> dict[str, object]:
    return {
        "accepted": report.events_accepted,
        "duplicate": report.events_duplicate,
        "rejected": report.events_rejected,
        "problems": report.problems,
    }


def _add(report: LoadReport, counts: dict[str, object]) -> None:
    """The helper's counts into the loader's report."""
    report.events_accepted += int(counts.get("accepted", 0))  # type: ignore[call-overload]
    report.events_duplicate += int(counts.get("duplicate", 0))  # type: ignore[call-overload]
    report.events_rejected += int(counts.get("rejected", 0))  # type: ignore[call-overload]
    problems = counts.get("problems")
    for problem in problems if isinstance(problems, list) else []:
        report.problem(str(problem))
