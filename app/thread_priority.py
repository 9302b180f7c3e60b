"""Lowering one thread's CPU priority, so that bulk work leaves the core to the event loop.

On Linux a thread is a task with its own nice value: a thread at nice 5 gets about a third of the
CPU a nice 0 thread gets when both want it, and all of it when the other is idle. Elsewhere, or
where the container forbids it, the thread keeps the process's priority.
"""

from __future__ import annotations

import contextlib
import os
import threading
from concurrent.futures import ThreadPoolExecutor

MAX_NICE = 19
BULK_WORK_NICENESS = 5  # a batch's validation, coercion, segment evaluation: between the loop and scans


def lower_priority(nice: int) -> None:
    """Run the calling thread `nice` steps below the process's priority (0: leave it)."""
    if nice and hasattr(os, "setpriority"):
        # Relative to the process (its main thread), not to the thread that happened to start this one.
        base = os.getpriority(os.PRIO_PROCESS, os.getpid())
        with contextlib.suppress(OSError):
            os.setpriority(os.PRIO_PROCESS, threading.get_native_id(), min(base + nice, MAX_NICE))


def bulk_work_executor() -> ThreadPoolExecutor:
    """The serving loop's default executor (asyncio.to_thread): what is sent there is bulk work that
    would otherwise hold the loop, so its threads give way to the loop's own requests."""
    return ThreadPoolExecutor(
        max_workers=min(32, (os.cpu_count() or 1) + 4),
        thread_name_prefix="bulk",
        initializer=lower_priority,
        initargs=(BULK_WORK_NICENESS,),
    )
