"""Snapshot reads: a large batch's reads and in-memory work done before it takes the write lock.

SQLite lets one writer at a time hold the lock, and a 1,000-event batch held it for all of its work:
reading its profiles, applying its events in memory, writing them, committing. With several worker
processes on one file, one process's batch waited while the other's computed, and two processes
ingested no faster than one. Here a batch reads and computes on a connection of its own (in WAL mode
a reader never waits for the writer); under the lock it reads again what it read (each profile
document's revision, profile_revisions.py, with `changed_since`; identifier owners, suppressions and
messageIds with the port's own reads) and writes.

Each statement is its own read transaction: a transaction held over the whole computation kept the
log from being restarted (checkpoints.py) and an erasure's pages in it (wipe_deleted) while it ran.
Reads made at different moments are as good: every one is checked under the lock against what the
store holds then, and a document is read with its revision in one statement.

The unit of work runs on the calling thread, driven step by step without an event loop: it awaits
nothing but this connection's reads, which are synchronous, and a turn given (asyncio.sleep(0)).
Before each step it waits while this process's writer holds the write lock (write_lock_held.py).
"""

from __future__ import annotations

import sqlite3
import threading
from collections.abc import Awaitable, Callable, Collection
from typing import Any, TypeVar

from app.services.ports import Snapshot, StoreTransaction
from app.store.documents import loads
from app.store.sqlite.transaction import ABSENT, SQLiteTransaction, selected
from app.store.sqlite.write_lock_held import WriteLockHeld

T = TypeVar("T")


class SnapshotTransaction(SQLiteTransaction):
    """The unit of work's reads on a read-only connection; each profile document is read with its
    revision, which `revisions` keeps (the first one read, for a profile read twice)."""

    def __init__(self, connection: sqlite3.Connection, *, page_bytes: int) -> None:
        super().__init__(connection, page_bytes=page_bytes)
        self.revisions: dict[str, object] = {}

    async def get_profile_documents(self, profile_ids: Collection[str]) -> dict[str, dict[str, Any]]:
        wanted = list(profile_ids)
        rows = selected(self._db, "SELECT id, revision, doc FROM profiles WHERE id IN ({marks})", wanted)
        for profile_id, revision, _ in rows:
            self.revisions.setdefault(profile_id, revision)
        for profile_id in wanted:
            self.revisions.setdefault(profile_id, ABSENT)
        return {profile_id: loads(text) for profile_id, _, text in rows}


class Snapshots:
    """Read-only connections kept for snapshot reads, one per thread taking one at a time."""

    def __init__(self, connect: Callable[[], sqlite3.Connection], lock_held: WriteLockHeld, *, page_bytes: int) -> None:
        self._connect = connect
        self._lock_held = lock_held
        self._page_bytes = page_bytes  # the file's, as its transactions take it (profile_rows.py)
        self._idle: list[sqlite3.Connection] = []
        self._lock = threading.Lock()
        self._closed = False

    def run(self, work: Callable[[StoreTransaction], Awaitable[T]]) -> Snapshot[T]:
        """`work` on this thread (a worker thread: never the server's loop), with the revisions of the
        profile documents it read; each of its steps once this process's writer holds no write lock."""
        connection = self._take()
        try:
            tx = SnapshotTransaction(connection, page_bytes=self._page_bytes)
            return Snapshot(_driven(work(tx), self._lock_held.wait_free), tx.revisions)
        finally:
            self._give_back(connection)

    def close(self) -> None:
        with self._lock:
            self._closed = True
            idle, self._idle = self._idle, []
        for connection in idle:
            connection.close()

    def _take(self) -> sqlite3.Connection:
        with self._lock:
            if self._closed:
                raise sqlite3.ProgrammingError("Cannot operate on a closed database.")
            if self._idle:
                return self._idle.pop()
        return self._connect()

    def _give_back(self, connection: sqlite3.Connection) -> None:
        with self._lock:
            if not self._closed and not connection.in_transaction:
                self._idle.append(connection)
                return
        connection.close()


def _driven(step: Awaitable[T], give_way: Callable[[], None]) -> T:
    """What `step` returns, run to its end on this thread, `give_way` called before each of its steps.
    A turn it gives (asyncio.sleep(0)) is taken then; anything else it waits for would need a loop,
    which a snapshot's work must not."""
    coroutine = step.__await__()
    try:
        while True:
            give_way()
            if coroutine.send(None) is not None:
                coroutine.close()
                raise RuntimeError("a snapshot's work waited for something other than the store's reads")
    except StopIteration as done:
        return done.value  # type: ignore[no-any-return]
