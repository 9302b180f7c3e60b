"""How far the embedded store's purges of idempotency keys went (app/store/sqlite/key_purge.py): an
event whose key expires after that is known by its key, and its profile's history is not asked."""

from __future__ import annotations

import sqlite3
from datetime import datetime, timedelta
from pathlib import Path

from app.domain import clock
from app.services.ingestion import EventStatus, ingest_events
from app.services.ports import StoreTransaction
from app.store.sqlite import key_purge
from app.store.sqlite.store import SQLiteStore
from tests.builders import event


async def _purged_through(store: SQLiteStore) -> datetime | None:
    async def read(tx: StoreTransaction) -> datetime | None:
        return await tx.keys_purged_through()

    return await store.run_in_transaction(read)


def _expire(store: SQLiteStore, expiries: dict[str, datetime]) -> None:
    with sqlite3.connect(store.path) as db:
        expired = [(clock.to_iso(at), message_id) for message_id, at in expiries.items()]
        db.executemany("UPDATE processed_messages SET expires_at = ? WHERE message_id = ?", expired)


def _purge(store: SQLiteStore, at: datetime) -> None:
    with sqlite3.connect(store.path) as db:
        key_purge.purge(db, at)


def _forget_purges(store: SQLiteStore) -> None:
    """The store as a version before key_purge left it: nothing said of its purges."""
    with sqlite3.connect(store.path) as db:
        db.execute("DELETE FROM meta WHERE key = ?", (key_purge.PURGED_THROUGH,))


async def test_a_new_store_purged_no_key_and_a_purge_remembers_the_latest_expiry_it_deleted(
    sqlite_store: SQLiteStore,
) -> None:
    assert await _purged_through(sqlite_store) is None
    now = clock.now()
    old = now - timedelta(days=45)
    events = [event("page_view", at=old, minutes=i, message_id=f"m{i}") for i in range(4)]
    await ingest_events(sqlite_store, events)
    _expire(sqlite_store, {"m0": now - timedelta(days=3), "m1": now - timedelta(days=1)})
    _purge(sqlite_store, now)
    assert await _purged_through(sqlite_store) == now - timedelta(days=1)
    _purge(sqlite_store, now - timedelta(days=5))  # nothing expired by then: nothing said
    assert await _purged_through(sqlite_store) == now - timedelta(days=1)
    _expire(sqlite_store, {"m2": now - timedelta(days=2)})
    _purge(sqlite_store, now)  # an earlier expiry than the one remembered
    assert await _purged_through(sqlite_store) == now - timedelta(days=1)
    replayed = await ingest_events(sqlite_store, events)
    assert [o.status for o in replayed] == [EventStatus.DUPLICATE] * 4  # m3 by its key, the others by the history


async def test_a_store_made_before_remembering_its_purges_may_have_purged_every_key_until_now(
    tmp_path: Path,
) -> None:
    store = SQLiteStore(tmp_path / "cdp.sqlite3")
    order = event("order_completed", at=clock.now() - timedelta(days=45), message_id="o1")
    try:
        await ingest_events(store, [order])
        _forget_purges(store)
        with sqlite3.connect(store.path) as db:  # its key purged by that older version: nothing remembered
            db.execute("DELETE FROM processed_messages")
    finally:
        await store.close()
    reopened = SQLiteStore(tmp_path / "cdp.sqlite3")  # opened again, it is not taken for a new store
    try:
        before = clock.now()
        said = await _purged_through(reopened)
        assert said is not None and said >= before
        [replay] = await ingest_events(reopened, [order])
        assert replay.status is EventStatus.DUPLICATE, replay
    finally:
        await reopened.close()
