"""Batches sent to the embedded store at once (app/store/sqlite/commit_groups.py): each is answered
as if it ran alone; one that fails leaves nothing written and takes nothing of the others with it."""

from __future__ import annotations

import asyncio
import sqlite3
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from app.services.ingestion import EventStatus, ingest_events
from app.services.ports import StoreTransaction
from app.store.sqlite.store import SQLiteStore
from tests.builders import event


async def test_concurrent_batches_each_land_and_a_failing_one_leaves_nothing(sqlite_store: SQLiteStore) -> None:
    store = sqlite_store

    async def refused() -> None:
        async def write(tx: StoreTransaction) -> None:
            await tx.record_message("refused-1", "nobody", datetime.now(UTC) + timedelta(days=1))

        await store.run_in_transaction(write)
        raise ValueError("refused after writing")

    batches = [ingest_events(store, [event("page_view", email=f"c{n}@example.com", minutes=n)]) for n in range(20)]
    results = await asyncio.gather(*batches[:10], store.run_batch(refused), *batches[10:], return_exceptions=True)

    failure = results.pop(10)
    assert isinstance(failure, ValueError)
    assert all(not isinstance(r, BaseException) and r[0].status is EventStatus.ACCEPTED for r in results)
    assert await store.count_profiles() == 20
    assert not await store.run_in_transaction(lambda tx: tx.message_seen("refused-1"))


async def test_a_batch_after_a_failed_one_still_commits(sqlite_store: SQLiteStore) -> None:
    store = sqlite_store

    async def failing() -> None:
        raise RuntimeError("boom")

    with pytest.raises(RuntimeError):
        await store.run_batch(failing)
    outcomes = await ingest_events(store, [event("page_view", email="after@example.com")])
    assert outcomes[0].status is EventStatus.ACCEPTED and await store.count_profiles() == 1


async def test_a_batch_sent_while_another_waits_for_another_process_shares_its_transaction(
    sqlite_store: SQLiteStore, tmp_path: Path
) -> None:
    """BEGIN waits for another process's write lock on the writer thread; a batch sent meanwhile
    joins the waiting one's transaction (one COMMIT, each in its savepoint), rather than waiting for
    its commit and then paying a commit of its own."""
    statements: list[str] = []
    sqlite_store._writer.set_trace_callback(statements.append)

    def writing(key: str) -> Callable[[], Awaitable[str]]:
        async def work() -> str:
            await sqlite_store.run_in_transaction(lambda tx: tx.write_meta(key, "written"))
            return key

        return work

    other = sqlite3.connect(tmp_path / "cdp.sqlite3", isolation_level=None)
    try:
        other.execute("BEGIN IMMEDIATE")  # another process's write in progress
        first = asyncio.create_task(sqlite_store.run_batch(writing("first")))
        while not (tmp_path / "cdp.sqlite3-waiting").exists():  # its BEGIN waits (lock_waits.py)
            await asyncio.sleep(0.01)
        second = asyncio.create_task(sqlite_store.run_batch(writing("second")))
        await asyncio.sleep(0)  # sent to the writer thread, whose loop is held by the first one's BEGIN
        other.execute("COMMIT")
    finally:
        other.close()
    assert await asyncio.gather(first, second) == ["first", "second"]
    sqlite_store._writer.set_trace_callback(None)
    assert [s for s in statements if s in ("COMMIT", "SAVEPOINT grouped")] == ["SAVEPOINT grouped"] * 2 + ["COMMIT"]
    assert [await sqlite_store.read_meta(key) for key in ("first", "second")] == ["written", "written"]
