"""The write-ahead log is copied back into the database file by the store's checkpointer thread, not
by the commits (app/store/sqlite/checkpoints.py): committed data reaches the main file while the
store stays open (closing the last connection would checkpoint too, so the store stays open here)."""

from __future__ import annotations

import asyncio

from app.services.ingestion import EventStatus, ingest_events
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
