"""The embedded store keeps the profiles its reads decoded (app/store/sqlite/decoded_profiles.py): a
read of an unchanged profile is served without decoding, a change made by any process is read as
it is, an erased person is dropped at once, and the memory budget holds. A list read takes a kept
profile by its stored revision (app/store/sqlite/profile_revisions.py): every kind of write gives a
new one, whichever process makes it, a write without one is refused, and a store from before the
revision column gets it."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest

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


async def test_a_list_read_while_nothing_was_committed_asks_for_no_revision(sqlite_store: SQLiteStore) -> None:
    """Kept profiles whose revisions a read found after the last commit are taken as they are; a commit
    by this process's own writer, or by another process, sends the next read to the rows again."""
    ids = [await _customer(sqlite_store, f"c{n}@example.com") for n in range(20)]
    first = await sqlite_store.get_profiles(ids)
    statements: list[str] = []
    sqlite_store.trace(statements.append)
    try:
        again = await sqlite_store.get_profiles(ids)
        assert all(again[i] is first[i] for i in ids)
        assert not [s for s in statements if "profiles" in s]  # only the check for commits ran

        outcomes = await ingest_events(sqlite_store, [event("page_view", email="c0@example.com", minutes=5)])
        assert [o.status for o in outcomes] == [EventStatus.ACCEPTED]
        statements.clear()
        after_ingest = await sqlite_store.get_profiles(ids)
        assert [s for s in statements if "profiles" in s]
        assert after_ingest[ids[0]].stats.page_views == first[ids[0]].stats.page_views + 1
        assert all(after_ingest[i] is first[i] for i in ids[1:])

        await rename_from_another_process(sqlite_store.path, "c1@example.com", "Renamed")
        assert (await sqlite_store.get_profiles(ids))[ids[1]].first_name == "Renamed"
    finally:
        sqlite_store.trace(None)


# The store as an earlier version left it: no revision column, and the first version's table of
# revisions with the triggers that kept it (and no history view, which names the profiles table).
_EARLIER_LAYOUT = (
    "DROP VIEW history",
    "DROP TRIGGER profile_inserted_with_revision",
    "DROP TRIGGER profile_written_with_new_revision",
    "CREATE TABLE earlier (id TEXT PRIMARY KEY, doc TEXT NOT NULL, version INTEGER NOT NULL, merged_into TEXT)",
    "INSERT INTO earlier SELECT id, doc, version, merged_into FROM profiles",
    "DROP TABLE profiles",
    "ALTER TABLE earlier RENAME TO profiles",
    "CREATE TABLE profile_revisions (revision INTEGER PRIMARY KEY AUTOINCREMENT, profile_id TEXT NOT NULL UNIQUE)",
    """CREATE TRIGGER profile_revision_on_update AFTER UPDATE OF doc ON profiles
    BEGIN INSERT OR REPLACE INTO profile_revisions (profile_id) VALUES (NEW.id); END""",
)


async def test_a_store_from_before_the_revision_column_gets_it_and_reads_every_write(tmp_path: Path) -> None:
    path = tmp_path / "cdp.sqlite3"
    store = SQLiteStore(path)
    ids = [await _customer(store, f"c{n}@example.com") for n in range(20)]
    await store.close()
    with sqlite3.connect(path) as db:
        for statement in _EARLIER_LAYOUT:
            db.execute(statement)

    reopened = SQLiteStore(path)
    try:
        schema = {name for (name,) in reopened._reader.execute("SELECT name FROM sqlite_master")}
        assert "profile_revisions" not in schema and "profile_revision_on_update" not in schema
        before = await reopened.get_profiles(ids)
        assert sorted(before) == sorted(ids)
        assert all(reopened.decoded.revision_of(i) is None for i in ids)  # read in full until written
        await rename_from_another_process(path, "c0@example.com", "Renamed")
        after = await reopened.get_profiles(ids)
        assert after[ids[0]].first_name == "Renamed" and after[ids[1]].first_name == before[ids[1]].first_name
        assert reopened.decoded.revision_of(ids[0]) is not None  # written since: taken by revision from now on
        assert reopened.decoded.revision_of(ids[1]) is None
        again = await reopened.get_profiles(ids)
        assert all(again[i] is after[i] for i in ids)
    finally:
        await reopened.close()


async def test_a_write_of_a_document_without_a_new_revision_is_refused(sqlite_store: SQLiteStore) -> None:
    """No statement added later can leave a kept profile looking current: the store refuses it."""
    emma = await _customer(sqlite_store, "emma@example.com")
    stored = sqlite_store._reader.execute("SELECT doc, revision FROM profiles WHERE id = ?", (emma,)).fetchone()
    with sqlite3.connect(sqlite_store.path) as db:
        with pytest.raises(sqlite3.IntegrityError, match="new revision"):
            db.execute("UPDATE profiles SET doc = json_set(doc, '$.segments', json('[]')) WHERE id = ?", (emma,))
        with pytest.raises(sqlite3.IntegrityError, match="with a revision"):
            db.execute("INSERT INTO profiles (id, doc, version) VALUES ('p-new', '{}', 1)")
    assert sqlite_store._reader.execute("SELECT doc, revision FROM profiles WHERE id = ?", (emma,)).fetchone() == stored
