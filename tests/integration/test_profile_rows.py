"""Each profile row of the embedded store has its pages of the file to itself
(app/store/sqlite/profile_rows.py): whatever its document's size, a row fills the room its leaf page
has for one row, and its overflow pages; a new segment membership (written in SQL) keeps its length;
a store from before the pad column gets the column, and its rows are padded as they are next
written. The documents read back as they were written."""

from __future__ import annotations

import sqlite3
from contextlib import closing
from pathlib import Path

from app.services import profile_reads
from app.services.ingestion import EventStatus, ingest_events
from app.services.ports import StoreTransaction
from app.store.sqlite.profile_rows import MARGIN_BYTES
from app.store.sqlite.store import SQLiteStore
from tests.builders import event

# What a filled page may have left: the margin for the row's other columns, never used in full.
FILLED = 2 * MARGIN_BYTES


def _pages(path: Path) -> list[tuple[str, int, int]]:
    """(page type, rows, unused bytes) of each leaf and overflow page of the profiles table."""
    with closing(sqlite3.connect(path)) as db:
        return db.execute(
            "SELECT pagetype, ncell, unused FROM dbstat WHERE name = 'profiles' AND pagetype != 'internal'"
        ).fetchall()


def _row_bytes(path: Path, profile_id: str) -> tuple[int, int | None]:
    """The stored document's bytes and its pad's (None: no pad)."""
    with closing(sqlite3.connect(path)) as db:
        row = db.execute(
            "SELECT length(CAST(doc AS BLOB)), length(pad) FROM profiles WHERE id = ?", (profile_id,)
        ).fetchone()
    return row[0], row[1]


async def _customer(store: SQLiteStore, email: str, events: int) -> str:
    outcomes = await ingest_events(
        store, [event("identify", email=email), *(event("page_view", email=email, minutes=n) for n in range(events))]
    )
    assert {o.status for o in outcomes} == {EventStatus.ACCEPTED}
    found = await profile_reads.get_profile_by_identifier(store, "email", email)
    assert found is not None and found.stats.events_total == events + 1
    return found.id


async def test_a_profile_row_of_any_size_fills_pages_of_its_own(sqlite_store: SQLiteStore) -> None:
    # 0 to 60 events: documents from under 1 KB to several pages.
    events = range(0, 61, 5)
    ids = [await _customer(sqlite_store, f"c{n}@example.com", n) for n in events]
    sizes = [_row_bytes(sqlite_store.path, profile_id)[0] for profile_id in ids]
    assert min(sizes) < 2048 and max(sizes) > 3 * 4096  # small ones would share a page, big ones overflow
    pages = _pages(sqlite_store.path)
    leaves = [page for page in pages if page[0] == "leaf"]
    assert len(leaves) == len(ids)
    assert all(rows == 1 and unused < FILLED for _, rows, unused in leaves)
    assert all(unused < FILLED for kind, _, unused in pages if kind == "overflow")  # the last one of each row too
    for n, profile_id in zip(events, ids, strict=True):
        found = await sqlite_store.get_profile(profile_id)
        assert found is not None and found.stats.events_total == n + 1


async def test_an_event_keeps_a_row_that_still_fits_its_page_as_long(sqlite_store: SQLiteStore) -> None:
    emma = await _customer(sqlite_store, "emma@example.com", 1)
    doc_before, pad_before = _row_bytes(sqlite_store.path, emma)
    assert pad_before is not None
    outcomes = await ingest_events(sqlite_store, [event("page_view", email="emma@example.com", minutes=5)])
    assert outcomes[0].status is EventStatus.ACCEPTED
    doc_after, pad_after = _row_bytes(sqlite_store.path, emma)
    assert doc_after > doc_before
    assert pad_after is not None and doc_after + pad_after == doc_before + pad_before


async def test_a_new_segment_membership_keeps_the_row_as_long(sqlite_store: SQLiteStore) -> None:
    emma = await _customer(sqlite_store, "emma@example.com", 2)
    doc_before, pad_before = _row_bytes(sqlite_store.path, emma)
    assert pad_before is not None

    async def join(tx: StoreTransaction) -> None:
        await tx.set_segments({emma: ["frequent-visitors", "newsletter"]})

    await sqlite_store.run_in_transaction(join)
    found = await sqlite_store.get_profile(emma)
    assert found is not None and found.segments == ["frequent-visitors", "newsletter"]
    doc_after, pad_after = _row_bytes(sqlite_store.path, emma)
    assert doc_after > doc_before
    assert pad_after is not None and doc_after + pad_after == doc_before + pad_before


async def test_a_store_from_before_the_pad_gets_it_and_pads_a_row_when_it_is_written(tmp_path: Path) -> None:
    path = tmp_path / "cdp.sqlite3"
    store = SQLiteStore(path)
    emma = await _customer(store, "emma@example.com", 2)
    await store.close()
    with closing(sqlite3.connect(path)) as db:
        db.execute("ALTER TABLE profiles DROP COLUMN pad")
        db.commit()

    store = SQLiteStore(path)
    try:
        assert _row_bytes(path, emma)[1] is None  # the column is back, the row as it was
        before = await store.get_profile(emma)
        assert before is not None and before.stats.events_total == 3
        outcomes = await ingest_events(store, [event("page_view", email="emma@example.com", minutes=9)])
        assert outcomes[0].status is EventStatus.ACCEPTED
        assert _row_bytes(path, emma)[1] is not None
        leaves = [page for page in _pages(path) if page[0] == "leaf"]
        assert leaves == [("leaf", 1, leaves[0][2])] and leaves[0][2] < FILLED
    finally:
        await store.close()
