"""The embedded store clears the checks of an upkeep that had nothing else to write with its next write
transaction (app/store/sqlite/owed_clears.py): seen cleared at once by this process, written to the
file by the next commit or, with none coming, by a transaction of its own; never lost to a rollback,
and never clearing a check that a later write added to."""

from __future__ import annotations

import asyncio
import sqlite3
from collections.abc import AsyncIterator
from datetime import timedelta
from pathlib import Path

import pytest

from app.domain import clock
from app.domain.segments.upkeep import EVERY_SEGMENT
from app.services.ingestion import ingest_events
from app.services.profile_changes import events_landed
from app.services.segment_bus import SegmentBus
from app.services.segments import SegmentEngine
from app.store.sqlite import store as sqlite_store_module
from app.store.sqlite.store import SQLiteStore
from tests.builders import event


@pytest.fixture
def path(tmp_path: Path) -> Path:
    return tmp_path / "cdp.sqlite3"


@pytest.fixture
async def store(path: Path, monkeypatch: pytest.MonkeyPatch) -> AsyncIterator[SQLiteStore]:
    # No transaction of their own during a test, unless the test asks for one.
    monkeypatch.setattr(sqlite_store_module, "CLEAR_OWED_AFTER_SECONDS", 3600.0)
    opened = SQLiteStore(path)
    yield opened
    await opened.close()


def checks_in_file(path: Path) -> dict[str, int]:
    """profile id → writes of each check of every segment, as another process reads the file."""
    with sqlite3.connect(path) as db:
        rows = db.execute("SELECT profile_id, writes FROM segment_checks WHERE segment_id = ?", (EVERY_SEGMENT,))
        return dict(rows.fetchall())


async def ingested(store: SQLiteStore, email: str) -> str:
    (outcome,) = await ingest_events(store, [event("order_completed", email=email)])
    return outcome.profile_id or pytest.fail(f"{email}: {outcome.status}")


async def upkeep(store: SQLiteStore, *profile_ids: str) -> None:
    """The upkeep of an ingested batch, with no segment defined: nothing to write but the clearing."""
    landed = events_landed({profile_id: {"order_completed"} for profile_id in profile_ids})
    await SegmentEngine(store, SegmentBus()).profiles_changed(landed)


async def test_the_clearing_is_seen_at_once_and_written_with_the_next_write(store: SQLiteStore, path: Path) -> None:
    zoe = await ingested(store, "zoe@example.com")
    await upkeep(store, zoe)

    assert checks_in_file(path) == {zoe: 1}, "the upkeep wrote a transaction of its own"
    assert await store.pending_writes([zoe]) == {}, "this process must see its upkeep's clearing"
    assert await store.next_check_at() is None
    assert await store.due_checks(clock.now() + timedelta(days=1), limit=10) == []
    assert checks_in_file(path) == {zoe: 1}, "a read of the checks wrote a transaction"

    ann = await ingested(store, "ann@example.com")
    assert checks_in_file(path) == {ann: 1}, "the next write must carry the clearing"


async def test_with_no_write_coming_the_clearing_gets_a_transaction_of_its_own(
    store: SQLiteStore, path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(sqlite_store_module, "CLEAR_OWED_AFTER_SECONDS", 0.01)
    zoe = await ingested(store, "zoe@example.com")
    await upkeep(store, zoe)

    for _ in range(500):
        if not checks_in_file(path):
            break
        await asyncio.sleep(0.01)
    assert checks_in_file(path) == {}


async def test_a_transaction_that_rolls_back_keeps_the_clearing_for_the_next(store: SQLiteStore, path: Path) -> None:
    zoe = await ingested(store, "zoe@example.com")
    await upkeep(store, zoe)

    async def failing(_: object) -> None:
        raise RuntimeError("the unit fails")

    with pytest.raises(RuntimeError):
        await store.run_in_transaction(failing)
    assert checks_in_file(path) == {zoe: 1}
    assert await store.pending_writes([zoe]) == {}

    ann = await ingested(store, "ann@example.com")
    assert checks_in_file(path) == {ann: 1}


async def test_a_check_another_process_wrote_to_since_the_count_stays(store: SQLiteStore, path: Path) -> None:
    zoe = await ingested(store, "zoe@example.com")
    await upkeep(store, zoe)  # counted one write
    other = SQLiteStore(path)  # another worker process, writing the same person meanwhile
    try:
        await ingested(other, "zoe@example.com")
    finally:
        await other.close()

    assert await store.pending_writes([zoe]) == {zoe: 2}, "a write whose upkeep has not run was seen cleared"
    await ingested(store, "ann@example.com")
    assert checks_in_file(path)[zoe] == 2, "the clearing took the check of a write it did not count"


async def test_a_write_of_the_same_profile_clears_first_then_leaves_its_own_check(
    store: SQLiteStore, path: Path
) -> None:
    zoe = await ingested(store, "zoe@example.com")
    await upkeep(store, zoe)
    await ingested(store, "zoe@example.com")

    assert checks_in_file(path) == {zoe: 1}
    assert await store.pending_writes([zoe]) == {zoe: 1}, "the second write's upkeep must count it alone"


async def test_closing_writes_what_is_owed(path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(sqlite_store_module, "CLEAR_OWED_AFTER_SECONDS", 3600.0)
    store = SQLiteStore(path)
    zoe = await ingested(store, "zoe@example.com")
    await upkeep(store, zoe)
    assert checks_in_file(path) == {zoe: 1}

    await store.close()

    assert checks_in_file(path) == {}, "a server stopped gracefully would catch the upkeep up with a warning"
