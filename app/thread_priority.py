"""Lowering one thread's CPU priority, so that bulk work leaves the core to the event loop.

On Linux a thread is a task with its own nice value: a thread at nice 5 gets about a third of the
CPU a nice 0 thread gets when both want it, and all of it when the other is idle. Elsewhere, or
where the container forbids it, the thread keeps the process's priority.

A nice value still shares the core: a read arriving while a batch of 1,000 events was applied on
the writer thread at nice 2 waited for the batch's time slice (the profile query's p99 6-7 ms
against 0.4-0.8 ms alone, one core). Work marked as bulk (`bulk_work`: a batch of events) therefore
runs in Linux's background class, SCHED_IDLE, which gets the CPU only when no other thread wants
it, and switches back once done. A thread is let into that class only where it may
come back out of it (CAP_SYS_NICE, or an RLIMIT_NICE that allows its nice value): a thread stuck
there would starve the writes behind it. A thread that needs one in the background promptly (a
small write queued behind the batch on the writer thread) brings it back to the foreground at once;
another process's writer waiting for the batch's lock says so (app/store/sqlite/lock_waits.py).
"""

from __future__ import annotations

import contextlib
import functools
import logging
import os
import threading
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from contextvars import ContextVar
from typing import Any, TypeVar

log = logging.getLogger("cdp.threads")

T = TypeVar("T")
MAX_NICE = 19
BULK_WORK_NICENESS = 5  # a batch's validation, coercion, segment evaluation: between the loop and scans
CAP_SYS_NICE = 23  # its bit in /proc/self/status's CapEff

# Set by whoever starts bulk work (a batch of events), read by the threads it reaches: the worker
# threads (asyncio.to_thread copies the context) and the store's writer (its batches keep theirs).
BULK_WORK: ContextVar[bool] = ContextVar("cdp-bulk-work", default=False)


@contextlib.contextmanager
def bulk_work(bulk: bool = True) -> Iterator[None]:
    """The work started within runs in the background class, where the threads it reaches allow it."""
    token = BULK_WORK.set(bulk)
    try:
        yield
    finally:
        BULK_WORK.reset(token)


def lower_priority(nice: int) -> None:
    """Run the calling thread `nice` steps below the process's priority (0: at it). Relative to the
    process (its main thread), not to the thread that happened to start this one, which a new thread
    takes its priority from: a store's writer (at 0 since it may go into the background class) or a
    reader thread started from a worker thread at nice 5 ran at 5. Raising a thread's priority back
    needs the privilege (CAP_SYS_NICE or RLIMIT_NICE): without it the thread keeps what it was given."""
    if hasattr(os, "setpriority"):
        base = os.getpriority(os.PRIO_PROCESS, os.getpid())
        with contextlib.suppress(OSError):
            os.setpriority(os.PRIO_PROCESS, threading.get_native_id(), min(base + nice, MAX_NICE))


def start_thread(
    target: Callable[[SchedulingClass], object], *, name: str, nice: int = 0
) -> tuple[threading.Thread, SchedulingClass]:
    """A daemon thread running `target` `nice` steps below the process, and its scheduling class,
    made on the thread itself before this returns (others may bring it back to the foreground) and
    given to `target` too, which may start before the caller holds it."""
    made: list[SchedulingClass] = []
    ready = threading.Event()

    def run() -> None:
        lower_priority(nice)
        own = SchedulingClass()
        made.append(own)
        ready.set()
        target(own)

    thread = threading.Thread(target=run, name=name, daemon=True)
    thread.start()
    ready.wait()
    return thread, made[0]


def bulk_work_executor() -> ThreadPoolExecutor:
    """The serving loop's default executor (asyncio.to_thread): what is sent there is bulk work that
    would otherwise hold the loop, so its threads give way to the loop's own requests; what is sent
    within `bulk_work` runs in the background class."""
    return _BulkWorkExecutor(
        max_workers=min(32, (os.cpu_count() or 1) + 4),
        thread_name_prefix="bulk",
        initializer=lower_priority,
        initargs=(BULK_WORK_NICENESS,),
    )


# What a piece of bulk work waits for before it starts: the SQLite stores of this process register
# their writer's (app/store/sqlite/write_lock_held.py), so that a batch's validation or coercion does
# not take the GIL from a writer holding the write lock other processes wait for (bench serving's 2b
# by hand, four runs each, alternating: 4,621 -> 4,791 events/s, the medians of their rounds).
_GIVE_WAY_TO: list[Callable[[], None]] = []


def give_way_to(wait: Callable[[], None]) -> Callable[[], None]:
    """Bulk work started on the worker threads from now on calls `wait` first; returns the undoing
    (which may be called more than once)."""
    _GIVE_WAY_TO.append(wait)

    def undo() -> None:
        with contextlib.suppress(ValueError):
            _GIVE_WAY_TO.remove(wait)

    return undo


class _BulkWorkExecutor(ThreadPoolExecutor):
    def submit(self, fn: Callable[..., T], /, *args: Any, **kwargs: Any) -> Future[T]:
        if BULK_WORK.get():  # the submitter's context: the loop's request that started the work
            return super().submit(_in_background, fn, *args, **kwargs)
        return super().submit(fn, *args, **kwargs)


def _in_background(fn: Callable[..., T], /, *args: Any, **kwargs: Any) -> T:
    for wait in list(_GIVE_WAY_TO):
        wait()
    own = SchedulingClass()
    with own.background():
        return fn(*args, **kwargs)


class SchedulingClass:
    """The scheduling class of the thread that made it: foreground (the normal policy, at the
    thread's nice value) or background (SCHED_IDLE). The thread goes into the background itself, for
    a piece of bulk work; any thread may bring it back (`foreground`)."""

    def __init__(self) -> None:
        self._thread_id = threading.get_native_id()
        self._lock = threading.Lock()
        self._background = False

    @property
    def in_background(self) -> bool:
        return self._background

    @property
    def available(self) -> bool:
        """Whether the thread may go into the background class (and so come back out of it)."""
        return may_leave_background(self._nice())

    @contextlib.contextmanager
    def background(self, wanted: bool = True) -> Iterator[None]:
        """The block in the background class (when `wanted`, and the thread may come back out)."""
        if not wanted or self._background or not self.available:
            yield
            return
        with self._lock:
            try:
                os.sched_setscheduler(self._thread_id, os.SCHED_IDLE, os.sched_param(0))
            except OSError as exc:  # a container's seccomp, an older kernel: stay in the foreground
                log.debug("no background class for bulk work: %s", exc)
            else:
                self._background = True
        try:
            yield
        finally:
            self.foreground()

    def foreground(self) -> None:
        """Back to the normal policy, at the thread's nice value (from any thread). Cheap when the
        thread is in the foreground already: every call sent to the store's writer asks."""
        if not self._background:
            return
        with self._lock:
            if not self._background:
                return
            try:
                os.sched_setscheduler(self._thread_id, os.SCHED_OTHER, os.sched_param(0))
            except OSError:  # may_leave_background said otherwise: bulk work would starve the writes
                log.exception("a thread could not leave the background class")
                raise
            self._background = False

    def _nice(self) -> int:
        return os.getpriority(os.PRIO_PROCESS, self._thread_id)


def background_described() -> str:
    """What the start-up log says of bulk work's class in this process (asked at the process's own
    nice value: the threads that switch run at or above it, which needs no more)."""
    if may_leave_background(os.getpriority(os.PRIO_PROCESS, os.getpid())):
        return "bulk batches run in the background class (SCHED_IDLE): reads go first"
    return (
        "bulk batches keep the normal class, at a lower nice value only: this process may not leave "
        "SCHED_IDLE (give it RLIMIT_NICE 20, e.g. `docker run --ulimit nice=20`, or CAP_SYS_NICE)"
    )


@functools.cache
def may_leave_background(nice: int) -> bool:
    """Whether a thread at `nice` may go into the background class and back (Linux's rule for
    leaving SCHED_IDLE: the privilege, or an RLIMIT_NICE that allows the nice value)."""
    if not hasattr(os, "SCHED_IDLE") or not hasattr(os, "sched_setscheduler"):
        return False
    try:
        import resource  # Unix only

        if 20 - nice <= resource.getrlimit(resource.RLIMIT_NICE)[0]:
            return True
        with open("/proc/self/status", encoding="ascii") as status:
            capabilities = next((line.split()[1] for line in status if line.startswith("CapEff:")), "0")
        return bool(int(capabilities, 16) >> CAP_SYS_NICE & 1)
    except (OSError, ValueError, ImportError):
        return False
