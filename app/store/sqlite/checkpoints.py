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
"""

from __future__ import annotations

import logging
import sqlite3
import threading
from collections.abc import Callable
from typing import TypeVar

from app.thread_priority import SchedulingClass, start_thread

T = TypeVar("T")
log = logging.getLogger("cdp.store")
GAP_SECONDS = 0.25  # at most four checkpoints a second, however many small commits come


class Checkpointer:
    """Checkpoints the log of one database after `committed()` is called, on a thread of its own."""

    def __init__(self, connect: Callable[[], sqlite3.Connection], *, name: str, nice: int = 0) -> None:
        self._connect = connect
        self._wanted = threading.Event()
        self._stopping = threading.Event()
        self.lock = threading.Lock()  # held while a checkpoint runs: `exclusive` waits for it
        self._wanted_lock = threading.Lock()  # guards `_foreground_wanted`
        self._foreground_wanted = False  # a commit not of bulk work since the last checkpoint began
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

    def _serve(self, scheduling: SchedulingClass) -> None:
        connection = self._connect()
        try:
            while True:
                self._wanted.wait()
                if self._stopping.is_set():
                    return
                self._wanted.clear()
                with self._wanted_lock:
                    background, self._foreground_wanted = not self._foreground_wanted, False
                with scheduling.background(background):
                    self._checkpoint(connection)
                self._stopping.wait(GAP_SECONDS)  # commits meanwhile set the event again: one checkpoint for all
        finally:
            connection.close()

    def _checkpoint(self, connection: sqlite3.Connection) -> None:
        with self.lock:
            try:
                connection.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchone()
            except sqlite3.Error as exc:  # another process checkpointing, a locked file: the next one copies it
                log.debug("background checkpoint skipped: %s", exc)

    def close(self) -> None:
        self._stopping.set()
        self._wanted.set()
        self._thread.join()
