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
