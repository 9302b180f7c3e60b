"""Garbage-collector, thread-switch and worker-thread settings for the serving process.

Python's default thresholds run a collection every 700 allocations, and a full one that walks every
live object (a thousand open subscriptions hold hundreds of thousands) every few hundred of those:
pauses of 100-200 ms in the middle of delivering an event. Measured with `python -m bench segments`
(1,000 subscribers, 60 changes): delivery p99 268 ms with the defaults, 84 ms with these.
"""

from __future__ import annotations

import asyncio
import gc
import logging
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

from app.thread_priority import background_described, bulk_work_executor

log = logging.getLogger("cdp.threads")

# Young collections every 10,000 allocations instead of 700, older generations less often too.
# The middle generation is collected after this many young collections: with the timed ones below
# (100 a second), about as often as with 20 untimed ones under load (every 20-30 s).
THRESHOLDS = (10_000, 2_000, 100)
# How long a thread may hold the GIL while another waits for it (see tune_for_serving).
SWITCH_INTERVAL_SECONDS = 0.0002
# The young generation is also collected on a timer. The collector counts allocations minus
# deallocations, and kept decoded profiles are let go of as new ones are kept: under the mixed load
# (bench serving) 60,000-85,000 young objects piled up between two collections, each collection
# holding the loop 40-70 ms every second or two (the /healthz p99 of ~50 ms). Collected every 10 ms,
# the generation holds what 10 ms made.
YOUNG_EVERY_SECONDS = 0.01
# A bulk process (app/bulk_process.py) answers only batches of events and holds no subscriptions: a
# pause of its loop delays one batch's answer, which nobody waits on by the millisecond. Its young
# objects are a batch's documents, let go with the batch (in process, none were left in cycles), so it
# collects when far more than a batch's documents have piled up, and on a slow timer in case cycles
# are left. Each collection walks what the batches in flight hold: the 10 ms timer walked them ~26
# times a batch (1,000 events, in process: 10-11 ms of GC in ~290 ms of CPU on the bench's profiles
# of 2 KB; 40 ms in ~500 ms on profiles holding their 50 recent interactions, 23 KB), and young
# collections every 100,000 allocations, with no timer, 78 ms on the latter (their survivors walked
# again by the middle generation's). With these: none in either, 435-449 ms a batch on the latter.
BATCH_THRESHOLDS = (1_000_000, 10, 10)
BATCH_YOUNG_EVERY_SECONDS = 30.0


@dataclass(slots=True)
class _Schedule:
    """This process's collections: the serving or the batches' schedule, and the timer's next call."""

    batches_only: bool = False
    bulk_loads: int = 0  # loads running now (collected_as_batches)
    every: float = YOUNG_EVERY_SECONDS
    loop: asyncio.AbstractEventLoop | None = None  # set once tuned: the timer runs on it
    timer: asyncio.TimerHandle | None = None


_schedule = _Schedule()


def tune_for_serving(*, batches_only: bool = False) -> None:
    """Call once the application is built: what exists by then (modules, the schema) lives as long as
    the process, so it is moved out of the collector's sight (gc.freeze) and never walked again.
    `batches_only`: a bulk process's (BATCH_THRESHOLDS, BATCH_YOUNG_EVERY_SECONDS)."""
    gc.collect()
    gc.freeze()
    # The store's writer and reader threads share the GIL with the event loop: handing it over every
    # millisecond, not every 5, keeps the loop's answers prompt while a batch is applied on the writer
    # (a probe's p99 during a 1 MiB parse on a worker thread: 253 -> 68 ms in bench/hostile_queries.py).
    # Every 0.2 ms since bulk batches run in the background class (thread_priority.py): the loop then
    # gets the core at once, and what it still waits for is the GIL the batch's thread holds. The
    # profile query's p99 while 1,000-event batches are ingested, one core: 1.56-1.88 -> 0.95-1.28 ms
    # (0.40-0.51 alone); the hostile probe and the CPU each document costs did not move (full
    # `bench hostile`, 1 MiB documents parsed: probe p99 5.7-7.3 -> 3.5-6.5 ms).
    sys.setswitchinterval(SWITCH_INTERVAL_SECONDS)
    # Bulk work sent to worker threads (a batch's validation and coercion, segment evaluation) gives
    # way to the loop's requests as the store's writer thread does.
    loop = asyncio.get_running_loop()
    loop.set_default_executor(bulk_work_executor())
    log.info(background_described())
    _schedule.batches_only, _schedule.loop = batches_only, loop
    thresholds, every = _apply()
    log.info("collector: the young generation every %g s and past %s net allocations", every, f"{thresholds[0]:,}")


@contextmanager
def collected_as_batches() -> Iterator[None]:
    """While this process loads the demo data: the batches' schedule, as a bulk process's. Its young
    objects are the batches' documents, walked by each collection of the serving schedule (every
    10 ms): ~5% of a first start's samples (py-spy); with this schedule it is ready ~0.6 s sooner
    (six alternating rounds: medians 7.14 -> 6.52 s). Requests answered meanwhile may meet a longer pause
    of the collector: the serving schedule is back once the load is done."""
    _schedule.bulk_loads += 1
    _apply()
    try:
        yield
    finally:
        _schedule.bulk_loads -= 1
        _apply()


def _apply() -> tuple[tuple[int, int, int], float]:
    """The schedule due now, set (once tune_for_serving has run)."""
    batches = _schedule.batches_only or _schedule.bulk_loads > 0
    thresholds, every = (BATCH_THRESHOLDS, BATCH_YOUNG_EVERY_SECONDS) if batches else (THRESHOLDS, YOUNG_EVERY_SECONDS)
    loop = _schedule.loop
    if loop is None or loop.is_closed():  # not tuned yet (tune_for_serving sets it then), or stopped
        return thresholds, every
    gc.set_threshold(*thresholds)
    if _schedule.timer is None or every != _schedule.every:
        if _schedule.timer is not None:
            _schedule.timer.cancel()
        _schedule.every = every
        _schedule.timer = loop.call_later(every, _collect_young, loop)
    return thresholds, every


def _collect_young(loop: asyncio.AbstractEventLoop) -> None:
    gc.collect(0)
    _schedule.timer = loop.call_later(_schedule.every, _collect_young, loop)
