"""Copying the write-ahead log back into the database file, off the commit's path.

By default SQLite checkpoints inside the COMMIT that takes the log past 1,000 pages: that commit
copies every logged page into the database file and fsyncs it before it returns, with the write
lock held. With 1,000-event batches that was every batch: about a third of the hand-written SQL
floor's time (bench/sql_ingest_floor.py) and a stall for every write queued behind it. The writer
connection turns that off (`wal_autocheckpoint=0`) and this thread, with a connection of its own,
runs a PASSIVE checkpoint after commits, at most every `GAP_SECONDS`. A PASSIVE checkpoint never
waits for readers nor blocks the writer: it copies what no reader still needs, and the writer
starts the log again from its beginning once all of it is copied. Durability does not change: a
commit is durable once its log frames are synced (`synchronous=FULL`), whether copied yet or not.

A checkpoint after bulk commits only (a batch that ran in the background class) runs in that class
too: copying a 1,000-event batch's pages back took the core from reads as the batch itself did.
After any other commit, or when `exclusive` waits for it, it runs in the foreground.

The log starts again from its beginning only when a write begins with every logged page copied
back and no reader still reading from the log. Under a steady flow of writes and reads that moment
never came: the log grew with every batch (766 MB over bench serving's reads and ingestion in one
run, 2.1 GB building its 100,000-profile store), and every page a reader looked up was searched for in
a longer index of it. So once the log is past LOG_LIMIT_BYTES, the writer, before
its next transaction, runs a RESTART checkpoint (`keep_log_short`): it holds writes off, copies
what is left and waits, briefly, for readers to leave the log, so that the next write starts it
again (a PASSIVE checkpoint first copies what it can while other processes' writers go on:
`restart_after_copying`). Held off by a long reader (a whole-store scan), it is tried again later, each time later.
The log file keeps its size for reuse (overwriting is cheaper than growing a file), but no more
than LOG_LIMIT_BYTES of it (`journal_size_limit`, set on every connection by the store): the first
commit after a restart cuts it to that, or to the end of its own pages. So a file longer than the
limit is a log that grew past it since it last started again, which the writer sees at the start of
each transaction, whether a checkpoint has measured it or not: those after bulk batches run in the
background class, which gets next to none of a core kept busy, for as long as it stays busy.
"""

from __future__ import annotations

import logging
import os
import sqlite3
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

from app.thread_priority import SchedulingClass, start_thread

T = TypeVar("T")
log = logging.getLogger("cdp.store")
GAP_SECONDS = 0.25  # at most four checkpoints a second, however many small commits come
# ~6 of the bench's 1,000-event batches (~22 MB of log each). A RESTART holds every writer off while
# it copies what the background checkpoints left: past 64 MiB, two workers ingesting flat out spent
# 13-15 ms of each write's turn in them, 7-8 ms past 128 MiB (4 ms past 256 MiB, no faster).
LOG_LIMIT_BYTES = 128 * 1024 * 1024
RESTART_WAIT_MS = 100  # how long a RESTART waits for readers (and other processes' writers)
RESTART_BACKOFF_SECONDS = (1.0, 2.0, 4.0, 8.0, 16.0, 30.0)  # after 1, 2, ... RESTARTs held off in a row


def checkpoint_waiting(connection: sqlite3.Connection, mode: str, *, wait_ms: int, then_ms: int) -> bool:
    """A `mode` checkpoint on `connection` (a writer holding its write lock) that waits at most
    `wait_ms` for connections elsewhere, its busy_timeout then set to `then_ms`: whether one of
    them held it off."""
    connection.execute(f"PRAGMA busy_timeout={wait_ms}")
    try:
        busy, _, _ = connection.execute(f"PRAGMA wal_checkpoint({mode})").fetchone()
    finally:
        connection.execute(f"PRAGMA busy_timeout={then_ms}")
    return bool(busy)


def restart_after_copying(connection: sqlite3.Connection, *, wait_ms: int, then_ms: int) -> bool:
    """A RESTART checkpoint on `connection` (see checkpoint_waiting), after a PASSIVE one on it. A
    RESTART holds every writer off, other processes' too, while it copies what the background
    checkpoints left (they run in the background class after bulk batches, so under load they lag);
    the PASSIVE copies it while those writers go on, and leaves the RESTART what was committed
    meanwhile and its wait for readers. Two workers ingesting flat out (bench serving's 2b by hand,
    three runs of four 15 s rounds alternating with the RESTART alone): 4,852 -> 5,252 events/s,
    the median of the rounds after the first. Returns whether the RESTART was held off."""
    try:
        connection.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchone()  # never waits (no busy handler)
    except sqlite3.Error as exc:  # another process checkpointing: the RESTART copies it all
        log.debug("copy before the restart skipped: %s", exc)
    return checkpoint_waiting(connection, "RESTART", wait_ms=wait_ms, then_ms=then_ms)


class Checkpointer:
    """Checkpoints the log of one database after `committed()` is called, on a thread of its own."""

    def __init__(self, connect: Callable[[], sqlite3.Connection], *, database: Path, name: str, nice: int = 0) -> None:
        self._connect = connect
        self._log_file = database.with_name(database.name + "-wal")
        self._wanted = threading.Event()
        self._stopping = threading.Event()
        self.lock = threading.Lock()  # held while a checkpoint runs: `exclusive` waits for it
        self._wanted_lock = threading.Lock()  # guards `_foreground_wanted`
        self._foreground_wanted = False  # a commit not of bulk work since the last checkpoint began
        self._log_bytes = 0  # the log's length when last checkpointed (under `lock`)
        self._restarted_file_bytes = -1  # the log file's length at the last restart
        self._held_off = 0  # RESTARTs held off in a row
        self._next_restart = 0.0  # monotonic time before which no RESTART is tried again
        self._thread, self._scheduling = start_thread(self._serve, name=name, nice=nice)

    def committed(self, *, bulk: bool = False) -> None:
        """A commit added pages to the log: copy them back soon (in the background class when every
        commit since the last checkpoint was `bulk`)."""
        if not bulk:
            with self._wanted_lock:
                self._foreground_wanted = True
            self._scheduling.foreground()
        self._wanted.set()

    def exclusive(self, checkpoint: Callable[[], T]) -> T:
        """Run `checkpoint` (e.g. a TRUNCATE on another connection) with no background one running:
        SQLite lets one checkpoint run at a time and answers any other with SQLITE_BUSY."""
        self._scheduling.foreground()  # a background checkpoint holding the lock would make this wait for idle CPU
        with self.lock:
            return checkpoint()

    def keep_log_short(self, restart: Callable[[int], bool]) -> None:
        """Called by the writer with its write lock held, before it begins a transaction: when the
        last checkpoint found the log past LOG_LIMIT_BYTES, or its file is longer than that, runs
        `restart(RESTART_WAIT_MS)` (a RESTART checkpoint waiting at most that long, which returns
        whether it was held off) with no checkpoint of this thread running."""
        file_bytes = self._file_bytes()
        # The file keeps its length after a restart until a commit writes to the log again (and cuts
        # it to the limit): the same length as at the last restart is that restart's, not a new log.
        file_past = file_bytes > LOG_LIMIT_BYTES and file_bytes != self._restarted_file_bytes
        if (self._log_bytes <= LOG_LIMIT_BYTES and not file_past) or time.monotonic() < self._next_restart:
            return

        def attempt() -> bool:
            held_off = restart(RESTART_WAIT_MS)
            if not held_off:
                self._log_bytes = 0  # under the lock: a checkpoint measuring the old log cannot follow
                self._restarted_file_bytes = file_bytes
            return held_off

        if self.exclusive(attempt):
            delay = RESTART_BACKOFF_SECONDS[min(self._held_off, len(RESTART_BACKOFF_SECONDS) - 1)]
            self._held_off += 1
            self._next_restart = time.monotonic() + delay
            logged = max(self._log_bytes, file_bytes)
            log.debug("write-ahead log of %d bytes not restarted: a reader held it", logged)
        else:
            self._held_off = 0

    def _file_bytes(self) -> int:
        try:
            return os.stat(self._log_file).st_size
        except OSError:  # none yet, or gone with a closed store
            return 0

    def _serve(self, scheduling: SchedulingClass) -> None:
        connection = self._connect()
        page_bytes = int(connection.execute("PRAGMA page_size").fetchone()[0])
        try:
            while True:
                self._wanted.wait()
                if self._stopping.is_set():
                    return
                self._wanted.clear()
                with self._wanted_lock:
                    background, self._foreground_wanted = not self._foreground_wanted, False
                with scheduling.background(background):
                    self._checkpoint(connection, page_bytes)
                self._stopping.wait(GAP_SECONDS)  # commits meanwhile set the event again: one checkpoint for all
        finally:
            connection.close()

    def _checkpoint(self, connection: sqlite3.Connection, page_bytes: int) -> None:
        with self.lock:
            try:
                _, logged, _ = connection.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchone()
            except sqlite3.Error as exc:  # another process checkpointing, a locked file: the next one copies it
                log.debug("background checkpoint skipped: %s", exc)
                return
            if logged >= 0:  # -1 when another process's checkpoint held it off
                self._log_bytes = logged * page_bytes

    def close(self) -> None:
        self._stopping.set()
        self._wanted.set()
        self._thread.join()
