"""Bulk work runs on threads that give way to the event loop: the store's writer, its scans and the
serving loop's worker threads run at a lower CPU priority than the loop's own thread (Linux)."""

from __future__ import annotations

import os
import threading
from pathlib import Path

import pytest

from app.store.sqlite.store import SCAN_NICENESS, WRITER_NICENESS, SQLiteStore
from app.store.sqlite.threads import WriterThread
from app.thread_priority import BULK_WORK_NICENESS, MAX_NICE, bulk_work_executor

pytestmark = pytest.mark.skipif(not hasattr(os, "setpriority"), reason="thread priorities are Linux's")


def _own_nice() -> int:
    return os.getpriority(os.PRIO_PROCESS, threading.get_native_id())


async def test_the_writer_and_the_scans_run_below_the_loop(tmp_path: Path) -> None:
    loop_nice = _own_nice()
    store = SQLiteStore(tmp_path / "cdp.sqlite3")
    try:
        thread: WriterThread = store._thread
        assert await thread.call(_own_nice) == min(loop_nice + WRITER_NICENESS, MAX_NICE)
        assert await store._scans.read(lambda _db: _own_nice()) == min(loop_nice + SCAN_NICENESS, MAX_NICE)
        assert _own_nice() == loop_nice  # the loop's own thread keeps its priority
    finally:
        await store.close()


def test_the_serving_loops_worker_threads_run_below_it() -> None:
    with bulk_work_executor() as executor:
        assert executor.submit(_own_nice).result() == min(_own_nice() + BULK_WORK_NICENESS, MAX_NICE)
