"""The write-ahead log is copied back into the database file by the store's checkpointer thread, not
by the commits (app/store/sqlite/checkpoints.py): committed data reaches the main file while the
store stays open (closing the last connection would checkpoint too, so the store stays open here)."""

from __future__ import annotations

import asyncio
import sqlite3
import threading
from collections.abc import Iterator
from contextlib import closing, contextmanager
from pathlib import Path

import pytest

from app.services.ingestion import EventStatus, ingest_events
from app.store.sqlite import checkpoints
from app.store.sqlite.store import SQLiteStore
from tests.builders import event

WAIT_SECONDS = 10.0


async def _in_main_file(store: SQLiteStore, marker: bytes) -> bool:
    """Whether `marker` reaches the database file itself (not its -wal) within WAIT_SECONDS."""
    for _ in range(int(WAIT_SECONDS / 0.05)):
        if marker in store.path.read_bytes():
            return True
        await asyncio.sleep(0.05)
    return False


async def test_committed_pages_reach_the_database_file_while_the_store_is_open(sqlite_store: SQLiteStore) -> None:
    store = sqlite_store
    surname = "Checkpointovich"
    identify = event("identify", email="cp@example.com", properties={"firstName": "Ada", "lastName": surname})
    outcomes = await ingest_events(store, [identify])
    assert outcomes[0].status is EventStatus.ACCEPTED
    assert await _in_main_file(store, surname.encode())
    assert (await store.get_profile(outcomes[0].profile_id or "")) is not None


async def test_a_batch_reaches_the_log_at_its_commit_not_before(sqlite_store: SQLiteStore) -> None:
    """The writer's page cache holds a large batch's pages (store.WRITER_CACHE_KIB): with SQLite's
    default of 2 MiB, they spilled into the log while the transaction ran, and were written twice."""
    store = sqlite_store
    log = store.path.with_name(store.path.name + "-wal")
    before_commit: list[int] = []

    def traced(statement: str) -> None:
        if statement.strip().upper().startswith("COMMIT"):
            before_commit.append(log.stat().st_size)

    start = log.stat().st_size
    store._writer.set_trace_callback(traced)
    try:
        filler = "x" * 3_000  # ~7 MB of interactions and profiles: over 1,500 pages, past 2 MiB
        batch = [
            event(email=f"cache{n}@example.com", message_id=f"cache-{n}", properties={"url": "/p", "note": filler})
            for n in range(1_000)  # the most a batch holds
        ]
        outcomes = await ingest_events(store, batch)
    finally:
        store._writer.set_trace_callback(None)
    assert all(o.status is EventStatus.ACCEPTED for o in outcomes)
    assert log.stat().st_size > start + 3_000_000  # the batch is in the log now
    assert before_commit and before_commit[-1] <= start, "the batch's pages were in the log before its COMMIT"


@contextmanager
def _reading_flat_out(path: Path) -> Iterator[list[int]]:
    """Another connection reading short queries without a pause, as a server's readers do (each read
    that begins while the log holds pages not yet copied back reads through the log)."""
    stop, reads = threading.Event(), [0]

    def read() -> None:
        with closing(sqlite3.connect(path, isolation_level=None)) as db:
            while not stop.is_set():
                db.execute("SELECT id, doc FROM profiles ORDER BY random() LIMIT 1").fetchall()
                reads[0] += 1

    reader = threading.Thread(target=read, name="test-reader")
    reader.start()
    try:
        yield reads
    finally:
        stop.set()
        reader.join()


async def test_the_log_stays_short_while_batches_and_reads_never_pause(
    sqlite_store: SQLiteStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    """With a batch always following the last and a reader always reading, the log was never found
    copied back and unread at a write's start, the only moment SQLite starts it again: it grew by
    every batch (2.1 GB building the bench's store). Past its limit, the writer restarts it."""
    limit = 1_000_000
    monkeypatch.setattr(checkpoints, "LOG_LIMIT_BYTES", limit)
    monkeypatch.setattr(checkpoints, "RESTART_WAIT_MS", 1_000)  # this test's readers are never long
    # A reader is long at times when the cores are busy (its thread not run while it reads): a restart
    # it held off is tried again at the next batch here, not seconds later as after a server's long
    # scan. The log reached 26 batches once in a full run of the suite; with one core kept busy by
    # two other processes, a reader held two restarts off and it reached 32.
    monkeypatch.setattr(checkpoints, "RESTART_BACKOFF_SECONDS", (0.0,))
    store = sqlite_store
    log = store.path.with_name(store.path.name + "-wal")
    filler = "x" * 3_000
    longest, batches, first_batch = 0, 24, 0
    with _reading_flat_out(store.path) as reads:
        for number in range(batches):
            batch = [
                event(email=f"log{number}-{n}@example.com", message_id=f"log-{number}-{n}",
                      properties={"url": "/p", "note": filler})
                for n in range(200)
            ]  # fmt: skip
            outcomes = await ingest_events(store, batch)  # one after another, as a client sending flat out
            assert all(o.status is EventStatus.ACCEPTED for o in outcomes)
            first_batch = first_batch or log.stat().st_size
            longest = max(longest, log.stat().st_size)
    assert reads[0] > batches  # the reader read all along
    # Not `limit` plus one batch: the checkpoint that finds the log too long runs at most every
    # GAP_SECONDS, so a few more batches may come first. Not restarted, it held all of them.
    assert longest < batches * first_batch / 2, f"the log reached {longest:,} bytes ({first_batch:,} a batch)"


def test_a_log_file_past_the_limit_is_restarted_though_no_checkpoint_measured_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The checkpoints that measure the log run in the background class after bulk batches, and with
    every core busy they may not run for minutes: the writer reads the log file's own length too."""
    monkeypatch.setattr(checkpoints, "LOG_LIMIT_BYTES", 1_000)
    database, log_file = tmp_path / "cdp.sqlite3", tmp_path / "cdp.sqlite3-wal"
    checkpointer = checkpoints.Checkpointer(lambda: sqlite3.connect(database), database=database, name="ckpt-test")
    restarts: list[int] = []

    def restart(wait_ms: int) -> bool:
        restarts.append(wait_ms)
        return False  # not held off

    try:
        checkpointer.keep_log_short(restart)  # no log yet
        log_file.write_bytes(b"x" * 1_000)
        checkpointer.keep_log_short(restart)  # at the limit, not past it
        assert restarts == []
        log_file.write_bytes(b"x" * 1_001)  # no checkpoint has run: only the file says how long it is
        checkpointer.keep_log_short(restart)
        assert restarts == [checkpoints.RESTART_WAIT_MS]
        # Restarted, the file keeps its length until a commit writes to the log again: a transaction
        # that wrote nothing meanwhile is no reason for another restart; a log grown since is.
        checkpointer.keep_log_short(restart)
        assert len(restarts) == 1
        log_file.write_bytes(b"x" * 1_500)
        checkpointer.keep_log_short(restart)
        assert len(restarts) == 2
    finally:
        checkpointer.close()


def test_a_restart_after_copying_starts_the_log_again_unless_a_reader_holds_it(tmp_path: Path) -> None:
    """The writer's restart (restart_after_copying): a PASSIVE checkpoint copies the log back while
    other processes' writers go on, then a RESTART copies what is left and waits for readers; the
    next commit then writes the log from its beginning. A reader still in the log holds it off."""
    database = tmp_path / "cdp.sqlite3"
    with closing(sqlite3.connect(database, isolation_level=None)) as writer:
        writer.execute("PRAGMA journal_mode=WAL")
        writer.execute("PRAGMA wal_autocheckpoint=0")
        writer.execute("CREATE TABLE t (n INTEGER PRIMARY KEY, pad TEXT)")
        writer.executemany("INSERT INTO t VALUES (?, ?)", [(n, "x" * 2_000) for n in range(200)])

        def frames_after_one_more_commit() -> int:
            writer.execute("INSERT INTO t (pad) VALUES ('y')")
            _, frames, _ = writer.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchone()
            return int(frames)

        with closing(sqlite3.connect(database, isolation_level=None)) as reader:
            reader.execute("BEGIN")
            assert reader.execute("SELECT count(*) FROM t").fetchone() == (200,)  # reading from the log
            assert checkpoints.restart_after_copying(writer, wait_ms=50, then_ms=5_000)  # held off
            assert frames_after_one_more_commit() > 100  # appended to the old log
            reader.execute("COMMIT")
        assert not checkpoints.restart_after_copying(writer, wait_ms=50, then_ms=5_000)
        assert frames_after_one_more_commit() < 10  # the log written again from its start
        assert writer.execute("PRAGMA busy_timeout").fetchone() == (5_000,)
