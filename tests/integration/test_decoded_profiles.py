"""The embedded store keeps the profiles its reads decoded (app/store/sqlite/decoded_profiles.py): a
read of an unchanged profile is served without decoding, a change made by any process is read as
it is, an erased person is dropped at once, and the memory budget holds."""

from __future__ import annotations

from pathlib import Path

from app.services import privacy, profile_reads
from app.services.ingestion import EventStatus, ingest_events
from app.store.sqlite.decoded_profiles import OBJECT_BYTES_PER_TEXT_BYTE
from app.store.sqlite.store import SQLiteStore
from tests.builders import event, rename_from_another_process


async def _customer(store: SQLiteStore, email: str) -> str:
    outcomes = await ingest_events(store, [event("identify", email=email), event("page_view", email=email, minutes=1)])
    assert {o.status for o in outcomes} == {EventStatus.ACCEPTED}
    found = await profile_reads.get_profile_by_identifier(store, "email", email)
    assert found is not None
    return found.id


async def test_an_unchanged_profile_is_read_without_decoding_it_again(sqlite_store: SQLiteStore) -> None:
    emma = await _customer(sqlite_store, "emma@example.com")
    first = await sqlite_store.get_profile(emma)
    misses = sqlite_store.decoded.misses
    again = [
        await sqlite_store.get_profile(emma),
        (await sqlite_store.get_profiles([emma]))[emma],
        await sqlite_store.find_profile_by_identity("email:emma@example.com"),
    ]
    assert all(found is first for found in again)
    assert sqlite_store.decoded.misses == misses


async def test_a_change_made_by_another_process_is_read_as_it_is(sqlite_store: SQLiteStore) -> None:
    emma = await _customer(sqlite_store, "emma@example.com")
    before = await sqlite_store.get_profile(emma)
    assert before is not None and before.first_name != "Emmeline"
    await rename_from_another_process(sqlite_store.path, "emma@example.com", "Emmeline")
    for read in (
        await sqlite_store.get_profile(emma),
        (await sqlite_store.get_profiles([emma]))[emma],
        await sqlite_store.find_profile_by_identity("email:emma@example.com"),
    ):
        assert read is not None and read.first_name == "Emmeline" and read.version > before.version


async def test_an_erased_person_is_dropped_from_what_reads_keep(sqlite_store: SQLiteStore) -> None:
    emma = await _customer(sqlite_store, "emma@example.com")
    other = await _customer(sqlite_store, "someone.else@example.com")
    await sqlite_store.get_profiles([emma, other])
    kept = len(sqlite_store.decoded)
    await privacy.delete_profile(sqlite_store, emma, actor="dpo")
    assert len(sqlite_store.decoded) == kept - 1  # at the erasure, before any read
    assert await sqlite_store.get_profile(emma) is None
    assert await sqlite_store.get_profile(other) is not None


async def test_the_memory_budget_holds_least_recently_read_first_out(tmp_path: Path) -> None:
    path = tmp_path / "cdp.sqlite3"
    writer = SQLiteStore(path)
    ids = [await _customer(writer, f"c{n}@example.com") for n in range(12)]
    longest = writer._reader.execute("SELECT max(length(doc)) FROM profiles").fetchone()[0]
    await writer.close()
    # Room for nine profiles (one kept profile may take an eighth of the budget at most).
    store = SQLiteStore(path, decoded_budget_bytes=9 * longest * OBJECT_BYTES_PER_TEXT_BYTE + 1)
    try:
        for profile_id in ids:
            await store.get_profile(profile_id)
        assert 0 < len(store.decoded) <= 9
        misses = store.decoded.misses
        await store.get_profile(ids[-1])  # the newest read stays
        assert store.decoded.misses == misses
        await store.get_profile(ids[0])  # the oldest went first
        assert store.decoded.misses == misses + 1
    finally:
        await store.close()
    nothing_kept = SQLiteStore(path, decoded_budget_bytes=0)
    try:
        assert (await nothing_kept.get_profile(ids[0])) is not (await nothing_kept.get_profile(ids[0]))
        assert len(nothing_kept.decoded) == 0
    finally:
        await nothing_kept.close()
