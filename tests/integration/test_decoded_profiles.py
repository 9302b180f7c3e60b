"""The embedded store keeps the profiles its reads decoded (app/store/sqlite/decoded_profiles.py): a
read of an unchanged profile is served without decoding, a change made by any process is read as
it is, an erased person is dropped at once, and the memory budget holds. A list read takes a kept
profile by its stored revision (app/store/sqlite/profile_revisions.py): every kind of write gives a
new one, whichever process makes it, and a store from before revisions numbers its profiles."""

from __future__ import annotations

import sqlite3
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


async def test_a_list_read_takes_kept_profiles_by_revision_and_sees_every_write(sqlite_store: SQLiteStore) -> None:
    ids = [await _customer(sqlite_store, f"c{n}@example.com") for n in range(20)]  # more than FEW_ON_THE_LOOP
    first = await sqlite_store.get_profiles(ids)
    misses = sqlite_store.decoded.misses
    again = await sqlite_store.get_profiles(ids)
    assert all(again[i] is first[i] for i in ids) and sqlite_store.decoded.misses == misses

    other_process = SQLiteStore(sqlite_store.path)
    try:
        # A write of the segments alone (SQL's json_set, no new version number), then an erasure.
        await other_process.run_in_transaction(lambda tx: tx.set_segments({ids[0]: ["vip"]}))
        await privacy.delete_profile(other_process, ids[1], actor="dpo")
    finally:
        await other_process.close()
    await rename_from_another_process(sqlite_store.path, "c2@example.com", "Renamed")

    read = await sqlite_store.get_profiles(ids)
    assert read[ids[0]].segments == ["vip"]
    assert ids[1] not in read and sqlite_store.decoded.revision_of(ids[1]) is None
    assert read[ids[2]].first_name == "Renamed"
    assert all(read[i] is first[i] for i in ids[3:])
    assert sqlite_store.decoded.misses == misses + 2


async def test_profiles_stored_before_revisions_are_numbered_when_the_store_opens(tmp_path: Path) -> None:
    path = tmp_path / "cdp.sqlite3"
    store = SQLiteStore(path)
    ids = [await _customer(store, f"c{n}@example.com") for n in range(3)]
    await store.close()
    with sqlite3.connect(path) as db:  # the store as an earlier version left it
        for trigger in ("insert", "update", "delete"):
            db.execute(f"DROP TRIGGER profile_revision_on_{trigger}")
        db.execute("DROP TABLE profile_revisions")
        db.execute("DELETE FROM meta WHERE key = 'profile_revisions_filled'")

    reopened = SQLiteStore(path)
    try:
        numbered = reopened._reader.execute("SELECT profile_id, revision FROM profile_revisions").fetchall()
        assert sorted(p for p, _ in numbered) == sorted(ids)
        before = await reopened.get_profiles(ids)
        assert all(reopened.decoded.revision_of(i) == r for i, r in numbered)
        await rename_from_another_process(path, "c0@example.com", "Renamed")
        after = await reopened.get_profiles(ids)
        assert after[ids[0]].first_name == "Renamed" and after[ids[1]] is before[ids[1]]
        latest = reopened._reader.execute("SELECT revision FROM profile_revisions WHERE profile_id = ?", (ids[0],))
        assert latest.fetchone()[0] > max(r for _, r in numbered)  # a number never given before
    finally:
        await reopened.close()
