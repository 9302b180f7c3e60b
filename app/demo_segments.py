"""The demo data's computed traits and segments, the end of every load of it, on two worker processes.

A load ends with the profiles' computed traits, then the data set's segments, each defined and
evaluated over the store: on a first start, ~1 s and ~0.6 s one after the other on the worker
loading the demo data while the others wait for it (app/bootstrap.py `seed_lock`), a core doing
nothing. Most segments read no computed trait and no other segment (`beside_traits`): those can be
defined while the traits are computed. So the loader offers them in the store's meta (`HELP_META`,
naming its process), then computes the traits; a waiting worker that sees the offer takes `HELP_LOCK`
and defines them, then says which it defined. The loader then waits for that lock and defines the
others in the file's order, and those the helper did not (no other worker, or one that stopped: a
segment defined already is evaluated as it stands now, as in a load run again). What the helper
refused, the loader refuses again, and its report says it.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Collection
from pathlib import Path
from typing import TYPE_CHECKING, Any

import orjson

from app.demo_offers import offer, taken_offer
from app.domain.errors import Conflict, DomainError
from app.domain.segments.catalogue import PathCatalogue
from app.domain.segments.dependencies import dependencies
from app.domain.segments.parser import parse_condition
from app.domain.segments.segment import parse_traits
from app.process_lock import exclusive
from app.services.fixtures import SEGMENTS_FILE, LoadReport, count_lines, data_file, load_segments
from app.services.traits import LEASE_FOR, TRAIT_PATHS, recompute_traits

if TYPE_CHECKING:
    from app.bootstrap import Services

log = logging.getLogger("cdp")

HELP_META = "demoSegmentsHelp"  # "offered <pid>", then the ids the helper defined (a JSON list), then "done"
HELP_LOCK = ".seed-segments.lock"  # held by the process defining the offered segments
TRAITS_WAIT_SECONDS = 2.0  # how often the demo load asks again for the computed-traits job's lease


async def traits_and_segments(
    services: Services,
    directory: Path,
    step: Callable[[str, int, int], None],
    report: LoadReport,
    *,
    data_dir: Path,
    workers: int,
) -> int:
    """The computed traits, then the segments of `directory` (how many were defined). When there may
    be another worker process (`workers` > 1), it is offered those that read no trait meanwhile."""
    if workers < 2 or data_file(directory, SEGMENTS_FILE) is None:
        await compute_traits_now(services, step)
        return await define_segments(services, directory, step, report)
    store = services.store
    await offer(store, HELP_META)
    await compute_traits_now(services, step)
    async with exclusive(data_dir / HELP_LOCK):  # once the helper is done, if one took them
        helped = await store.read_meta(HELP_META)
        defined = orjson.loads(helped) if helped is not None and helped.startswith("[") else []
        made = await define_segments(services, directory, step, report, defined=defined)
        await store.write_meta(HELP_META, "done")
    return made


async def help_define(services: Services, directory: Path, data_dir: Path) -> None:
    """While another worker process loads the demo data: the segments it offered, if no other worker
    took them. Called again and again while this one waits."""
    store = services.store
    async with taken_offer(store, HELP_META, data_dir / HELP_LOCK) as taken:
        if not taken:
            return
        defined: list[str] = []

        async def create_segment(fields: dict[str, Any], segment_id: str) -> None:
            if beside_traits(fields):
                await define_segment(services, fields, segment_id)
                defined.append(segment_id)

        await load_segments(create_segment, directory, LoadReport())  # what it refuses, the loader reports
        log.info("defined %d of the demo data's segments beside the worker process computing its traits", len(defined))
        await store.write_meta(HELP_META, orjson.dumps(defined).decode())


def beside_traits(fields: dict[str, Any]) -> bool:
    """Whether a segment's definition reads neither a computed trait nor another segment (which may):
    it can be evaluated before the traits are computed. False for one that does not parse."""
    try:
        tree = parse_condition(fields.get("condition"), PathCatalogue(traits=parse_traits(fields.get("traits"))))
    except (DomainError, ValueError):  # the loader refuses it, and says why
        return False
    reads = dependencies(tree)
    return not reads.segments and not reads.affected_by(TRAIT_PATHS)


async def compute_traits_now(services: Services, step: Callable[[str, int, int], None]) -> None:
    """The profiles' computed traits, before the data set's segments (the VIP demo segment reads RFM). When
    another job holds the lease (another process's, or that of a process killed while it computed
    them: its lease runs out after traits.LEASE_FOR), the load waits for it and computes them then.
    Before, it took the lease for a job computing them: a kill in this step left them uncomputed, and
    the VIP segment empty, until the schedule's next round an hour later (never with it off)."""
    waiting = False
    while True:
        try:
            traits = await recompute_traits(
                services.store,
                restart=True,
                changes=services.changes,
                progress=lambda _, done, total: step("traits", done, total),
            )
        except Conflict:
            if not waiting:
                waiting = True
                log.info(
                    "a computed-traits job holds its lease (another process's, or a stopped one's until it runs "
                    "out, within %d minutes): the demo data's traits are computed once it is free",
                    LEASE_FOR.total_seconds() // 60,
                )
            await asyncio.sleep(TRAITS_WAIT_SECONDS)
            continue
        log.info("computed traits for %d profiles", traits.processed)
        return


async def define_segments(
    services: Services,
    directory: Path,
    step: Callable[[str, int, int], None],
    report: LoadReport,
    *,
    defined: Collection[str] = (),
) -> int:
    """The segments of `directory`/segments.jsonl, defined and evaluated over the store (its computed
    traits first: `compute_traits_now`), but for those `defined` already by another process. The first
    start's demo data and `python -m app load` both end with it: the load command, the only way to the
    demo data on MongoDB, defined no segment, and the README's examples found nothing."""
    path = data_file(directory, SEGMENTS_FILE)
    if path is None:
        return 0
    wanted = count_lines(path)
    made = [0]

    async def create_segment(fields: dict[str, Any], segment_id: str) -> None:
        if segment_id not in defined:
            await define_segment(services, fields, segment_id)
        made[0] += 1
        step("segments", made[0], wanted)

    return await load_segments(create_segment, directory, report)


async def define_segment(services: Services, fields: dict[str, Any], segment_id: str) -> None:
    """One segment defined and evaluated; one defined already (an interrupted load, or a load run
    again) is evaluated as it stands now."""
    existing = await services.store.get_segment(segment_id)
    if existing:
        await services.segments.evaluate(existing, cause="segment created")
    else:
        await services.segments.create(fields, segment_id=segment_id)
