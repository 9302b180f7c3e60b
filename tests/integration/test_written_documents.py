"""The embedded store's writer keeps the documents it wrote (app/store/sqlite/written_documents.py):
a later batch's read of an unchanged profile takes it without decoding, any other write to the row
(another process, segment upkeep's in-place `json_set`, the per-event path) is read as it is, a
document is never handed to two readers, and an erased person is dropped at once."""

from __future__ import annotations

import sqlite3
import weakref

from app.domain.events import RawEvent
from app.services import privacy, profile_reads
from app.services.ingestion import EventStatus, ingest_events
from app.store.sqlite.store import SQLiteStore
from app.store.sqlite.written_documents import BYTES_PER_TEXT_BYTE, WrittenDocuments
from tests.builders import event, rename_from_another_process


async def _ingest(store: SQLiteStore, *events: RawEvent) -> None:
    outcomes = await ingest_events(store, list(events))
    assert {o.status for o in outcomes} == {EventStatus.ACCEPTED}, outcomes


async def _id_of(store: SQLiteStore, email: str) -> str:
    found = await profile_reads.get_profile_by_identifier(store, "email", email)
    assert found is not None
    return found.id


async def test_a_later_batch_takes_the_document_the_writer_wrote(sqlite_store: SQLiteStore) -> None:
    await _ingest(sqlite_store, event("identify", email="emma@example.com"))
    await _ingest(sqlite_store, event("page_view", email="emma@example.com", minutes=1))
    taken = sqlite_store.written.taken
    await _ingest(sqlite_store, event("page_view", email="emma@example.com", minutes=2))
    assert sqlite_store.written.taken == taken + 1
    stored = await sqlite_store.get_profile(await _id_of(sqlite_store, "emma@example.com"))
    assert stored is not None and stored.stats.page_views == 2


async def test_a_row_written_by_another_process_is_read_as_it_is(sqlite_store: SQLiteStore) -> None:
    await _ingest(sqlite_store, event("page_view", email="emma@example.com", minutes=1))
    await rename_from_another_process(sqlite_store.path, "emma@example.com", "Emmeline")
    await _ingest(sqlite_store, event("page_view", email="emma@example.com", minutes=2))
    stored = await sqlite_store.get_profile(await _id_of(sqlite_store, "emma@example.com"))
    assert stored is not None and stored.first_name == "Emmeline" and stored.stats.page_views == 2


async def test_a_change_made_in_place_without_a_new_version_is_kept(sqlite_store: SQLiteStore) -> None:
    """Segment upkeep writes `segments` with json_set and no version bump: the version alone would
    not show the kept document is stale, and the next batch would write the old list back."""
    await _ingest(sqlite_store, event("page_view", email="emma@example.com", minutes=1))
    emma = await _id_of(sqlite_store, "emma@example.com")
    elsewhere = sqlite3.connect(sqlite_store.path)
    with elsewhere:
        elsewhere.execute(
            "UPDATE profiles SET revision = random(), doc = json_set(doc, '$.segments', json('[\"seg_vip\"]')) "
            "WHERE id = ?",
            (emma,),
        )
    elsewhere.close()
    await _ingest(sqlite_store, event("page_view", email="emma@example.com", minutes=2))
    stored = await sqlite_store.get_profile(emma)
    assert stored is not None and stored.segments == ["seg_vip"] and stored.stats.page_views == 2


def test_a_document_is_handed_over_once_and_only_for_its_own_text() -> None:
    written = WrittenDocuments()
    document = {"_id": "p1", "version": 2}
    written.keep("p1", '{"_id":"p1","version":2}', document)
    assert written.take("p1", '{"_id":"p1","version":3}') is None  # another text: decoded anew
    written.keep("p1", '{"_id":"p1","version":2}', document)
    assert written.take("p1", '{"_id":"p1","version":2}') is document
    assert written.take("p1", '{"_id":"p1","version":2}') is None  # its reader may be changing it


def test_the_memory_budget_holds_oldest_written_first_out() -> None:
    text = '{"_id":"p","pad":"' + "x" * 100 + '"}'
    written = WrittenDocuments(budget_bytes=9 * len(text) * BYTES_PER_TEXT_BYTE)
    for n in range(12):
        written.keep(f"p{n}", text, {"n": n})
    assert len(written) == 9
    assert written.take("p0", text) is None and written.take("p11", text) == {"n": 11}


def test_documents_pushed_out_are_freed_when_released_not_while_kept() -> None:
    """Freeing a batch's worth of pushed-out documents is work: the store does it once its write
    lock is released (SQLiteStore._end), not in the middle of the writes."""

    class Marker:
        pass

    text = '{"_id":"p","pad":"' + "x" * 100 + '"}'
    written = WrittenDocuments(budget_bytes=9 * len(text) * BYTES_PER_TEXT_BYTE)
    marker = Marker()
    freed = weakref.ref(marker)
    written.keep("p0", text, {"marker": marker})
    del marker
    for n in range(1, 10):  # the tenth pushes the first out
        written.keep(f"p{n}", text, {"n": n})
    assert written.take("p0", text) is None and freed() is not None
    written.release()
    assert freed() is None


async def test_an_erased_person_is_dropped_from_what_the_writer_keeps(sqlite_store: SQLiteStore) -> None:
    await _ingest(sqlite_store, event("page_view", email="emma@example.com", minutes=1))
    await _ingest(sqlite_store, event("page_view", email="someone.else@example.com", minutes=1))
    emma = await _id_of(sqlite_store, "emma@example.com")
    kept = len(sqlite_store.written)
    await privacy.delete_profile(sqlite_store, emma, actor="dpo")
    assert len(sqlite_store.written) == kept - 1
