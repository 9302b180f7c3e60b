"""Bulk work runs on threads that give way to the event loop: the store's writer, its scans and the
serving loop's worker threads run at a lower CPU priority than the loop's own thread (Linux), and
work marked as bulk (a batch of events) in the background class, until something else needs it."""

from __future__ import annotations

import asyncio
import os
import shutil
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from app.store.sqlite.checkpoints import GAP_SECONDS, Checkpointer
from app.store.sqlite.store import (
    SCAN_NICENESS,
    WRITER_NICENESS,
    WRITER_NICENESS_WITHOUT_BACKGROUND,
    SQLiteStore,
    writer_niceness,
)
from app.store.sqlite.threads import WriterThread
from app.thread_priority import BULK_WORK_NICENESS, MAX_NICE, bulk_work, bulk_work_executor, may_leave_background
from tests.interleaving import until

pytestmark = pytest.mark.skipif(not hasattr(os, "setpriority"), reason="thread priorities are Linux's")


def _own_nice() -> int:
    return os.getpriority(os.PRIO_PROCESS, threading.get_native_id())


async def test_the_writer_runs_at_its_niceness_and_the_scans_below_the_loop(tmp_path: Path) -> None:
    loop_nice = _own_nice()
    store = SQLiteStore(tmp_path / "cdp.sqlite3")
    try:
        thread: WriterThread = store._thread
        assert await thread.call(_own_nice) == min(loop_nice + writer_niceness(), MAX_NICE)
        assert await store._scans.read(lambda _db: _own_nice()) == min(loop_nice + SCAN_NICENESS, MAX_NICE)
        assert _own_nice() == loop_nice  # the loop's own thread keeps its priority
    finally:
        await store.close()


@pytest.mark.parametrize("may_leave", [True, False])
async def test_the_writer_runs_below_the_loop_only_where_batches_cannot_leave_it_the_core(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, may_leave: bool
) -> None:
    """Where a batch of events may go into the background class the writer runs at the loop's own
    priority; where it may not, its nice value alone makes a batch give way to the reads (the
    platform's answer stood in for: this machine may or may not have the privilege)."""
    monkeypatch.setattr("app.store.sqlite.store.may_leave_background", lambda nice: may_leave)
    loop_nice = _own_nice()
    store = SQLiteStore(tmp_path / "cdp.sqlite3")
    try:
        expected = WRITER_NICENESS if may_leave else WRITER_NICENESS_WITHOUT_BACKGROUND
        assert await store._thread.call(_own_nice) == min(loop_nice + expected, MAX_NICE)
        assert (WRITER_NICENESS, WRITER_NICENESS_WITHOUT_BACKGROUND) == (0, 2)
    finally:
        await store.close()


@pytest.mark.skipif(
    not may_leave_background(_own_nice()), reason="raising a thread's priority back needs CAP_SYS_NICE or RLIMIT_NICE"
)
async def test_a_store_made_on_a_lowered_thread_runs_its_writer_relative_to_the_process(tmp_path: Path) -> None:
    """A new thread takes its priority from the thread that starts it: the writer of a store made on
    a worker thread at nice 5 ran at 5, not at its own distance from the process."""
    loop_nice = _own_nice()
    made: list[SQLiteStore] = []

    def make() -> None:
        os.setpriority(os.PRIO_PROCESS, threading.get_native_id(), min(loop_nice + 5, MAX_NICE))
        made.append(SQLiteStore(tmp_path / "cdp.sqlite3"))

    maker = threading.Thread(target=make)
    maker.start()
    maker.join()
    store = made[0]
    try:
        assert await store._thread.call(_own_nice) == min(loop_nice + writer_niceness(), MAX_NICE)
    finally:
        await store.close()


def test_the_serving_loops_worker_threads_run_below_it() -> None:
    with bulk_work_executor() as executor:
        assert executor.submit(_own_nice).result() == min(_own_nice() + BULK_WORK_NICENESS, MAX_NICE)


background = pytest.mark.skipif(
    not hasattr(os, "SCHED_IDLE") or not may_leave_background(_own_nice() + WRITER_NICENESS),
    reason="this system lets no thread back out of the background class (CAP_SYS_NICE or RLIMIT_NICE)",
)


def _own_class() -> int:
    return os.sched_getscheduler(0)


@background
async def test_bulk_batches_run_in_the_background_and_the_writer_comes_back(tmp_path: Path) -> None:
    store = SQLiteStore(tmp_path / "cdp.sqlite3")
    try:

        async def classes() -> tuple[int, int]:
            return _own_class(), _own_nice()

        with bulk_work():
            bulk_class, bulk_nice = await store.run_batch(classes)
        plain_class, plain_nice = await store.run_batch(classes)
        assert (bulk_class, plain_class) == (os.SCHED_IDLE, os.SCHED_OTHER)
        assert bulk_nice == plain_nice == min(_own_nice() + writer_niceness(), MAX_NICE)  # the nice value kept
        assert await store._thread.call(_own_class) == os.SCHED_OTHER
    finally:
        await store.close()


@background
async def test_a_short_write_brings_a_bulk_batch_to_the_foreground(tmp_path: Path) -> None:
    """A write queued behind a bulk batch would otherwise wait for CPU nobody else wants."""
    store = SQLiteStore(tmp_path / "cdp.sqlite3")
    started, go = threading.Event(), threading.Event()
    try:

        async def slow_batch() -> tuple[int, int]:
            before = _own_class()
            started.set()
            go.wait(10)  # holds the writer thread until the short write has been sent
            return before, _own_class()

        async def short_write() -> int:
            return _own_class()

        with bulk_work():
            batch = asyncio.create_task(store.run_batch(slow_batch))
        assert await asyncio.to_thread(started.wait, 10)
        write = asyncio.create_task(store.run_batch(short_write))
        await asyncio.sleep(0.05)  # sent: it waits on the writer's loop behind the batch
        go.set()
        (before, after), during_write = await batch, await write
        assert (before, after, during_write) == (os.SCHED_IDLE, os.SCHED_OTHER, os.SCHED_OTHER)
    finally:
        go.set()
        await store.close()


@background
def test_bulk_work_sent_to_the_worker_threads_runs_in_the_background() -> None:
    with bulk_work_executor() as executor:
        with bulk_work():
            bulk = executor.submit(_own_class).result()
        plain = executor.submit(_own_class).result()
    assert (bulk, plain) == (os.SCHED_IDLE, os.SCHED_OTHER)


async def test_bulk_work_waits_while_a_store_of_its_process_holds_the_write_lock(tmp_path: Path) -> None:
    """A batch's validation or coercion on the worker threads starts once the store's writer is out of
    its write transaction (app/store/sqlite/write_lock_held.py); other work starts at once."""
    store = SQLiteStore(tmp_path / "cdp.sqlite3")
    ran: list[str] = []
    try:
        with bulk_work_executor() as executor:
            store.lock_held.take()  # as its writer does at BEGIN IMMEDIATE
            with bulk_work():
                bulk = executor.submit(ran.append, "bulk")
            executor.submit(ran.append, "plain").result(10)
            until(lambda: store.lock_held.waiting == 1, "the bulk work never waited")  # it waits for the writer
            assert ran == ["plain"]
            store.lock_held.release()  # its COMMIT
            bulk.result(10)
        assert ran == ["plain", "bulk"]
    finally:
        await store.close()


class _RecordingConnection:
    """What the checkpointer's thread runs its checkpoint on: records the class it runs in."""

    def __init__(self, seen: list[int], done: threading.Event) -> None:
        self.seen, self.done = seen, done
        self.row: tuple[int, ...] = ()

    def execute(self, statement: str) -> _RecordingConnection:
        if "wal_checkpoint" in statement:
            self.seen.append(_own_class())
            self.done.set()
            self.row = (0, 0, 0)  # not busy, an empty log
        else:
            self.row = (4096,)  # the page size
        return self

    def fetchone(self) -> tuple[int, ...]:
        return self.row

    def close(self) -> None:
        pass


@background
def test_a_checkpoint_after_bulk_commits_only_runs_in_the_background() -> None:
    seen: list[int] = []
    done = threading.Event()
    connect = lambda: _RecordingConnection(seen, done)  # noqa: E731
    checkpoints = Checkpointer(connect, database=Path("no-such.sqlite3"), name="ckpt-test")  # type: ignore[arg-type,return-value]
    try:
        for bulk in (True, False):
            done.clear()
            checkpoints.committed(bulk=bulk)
            assert done.wait(10)
            time.sleep(GAP_SECONDS + 0.05)  # the next commit starts the next checkpoint
        done.clear()
        checkpoints.committed(bulk=True)
        checkpoints.committed(bulk=False)  # before that checkpoint began, or lifting it
        assert done.wait(10)
    finally:
        checkpoints.close()
    assert seen == [os.SCHED_IDLE, os.SCHED_OTHER, os.SCHED_OTHER]


def _may_drop_cap_sys_nice() -> bool:
    return shutil.which("setpriv") is not None and may_leave_background(_own_nice()) and os.geteuid() == 0


@pytest.mark.skipif(not _may_drop_cap_sys_nice(), reason="needs root's CAP_SYS_NICE and setpriv to take it away")
def test_a_process_that_could_not_come_back_keeps_bulk_work_in_the_normal_class(tmp_path: Path) -> None:
    """Without CAP_SYS_NICE (and with RLIMIT_NICE 0, the default: a container's non-root user) the
    kernel would keep a thread in SCHED_IDLE for good: bulk batches stay where they are, and the
    start-up log says how to allow it."""
    script = f"""
import asyncio, os
from app.store.sqlite.store import SQLiteStore
from app.thread_priority import background_described, bulk_work

async def main():
    store = SQLiteStore({str(tmp_path / "cdp.sqlite3")!r})
    async def own_class():
        return os.sched_getscheduler(0)
    with bulk_work():
        print(await store.run_batch(own_class))
    await store.close()
    print(background_described())

asyncio.run(main())
"""
    done = subprocess.run(
        ["setpriv", "--bounding-set=-sys_nice", sys.executable, "-c", script],
        capture_output=True, text=True, timeout=60, check=True, cwd=Path(__file__).parents[2],
    )  # fmt: skip
    batch_class, described = done.stdout.strip().splitlines()
    assert int(batch_class) == os.SCHED_OTHER
    assert "keep the normal class" in described and "--ulimit nice=20" in described


@background
async def test_another_process_waiting_for_the_write_lock_brings_a_bulk_batch_to_the_foreground(
    tmp_path: Path,
) -> None:
    """Another process's write waits on SQLite's lock, which nothing in this one hears of: it says so
    (lock_waits.py) and the batch holding the lock goes on in the foreground. Two stores on one
    file stand for two processes: each has its own writer thread and connection."""
    path = tmp_path / "cdp.sqlite3"
    holder, waiter = SQLiteStore(path), SQLiteStore(path)
    started = threading.Event()
    try:

        async def long_batch() -> tuple[int, int]:
            before = _own_class()
            started.set()
            deadline = time.monotonic() + 5
            while _own_class() == os.SCHED_IDLE and time.monotonic() < deadline:
                time.sleep(0.01)  # holds the write lock until lifted (or 5 s)
            return before, _own_class()

        async def short_write() -> str:
            return "written"

        with bulk_work():
            batch = asyncio.create_task(holder.run_batch(long_batch))
        assert await asyncio.to_thread(started.wait, 10)
        assert await waiter.run_batch(short_write) == "written"
        assert await batch == (os.SCHED_IDLE, os.SCHED_OTHER)
    finally:
        await waiter.close()
        await holder.close()
