"""The embedded store's matching rows (app/store/sqlite/match_rows.py): what a lookup reads of each
live profile is its match fields as last written, through every kind of write; a row reads back as
the document it was made from; and a store made before the rows, or holding them in their earlier
form, gets them when it is opened."""

from __future__ import annotations

import json
import sqlite3
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from app.domain.events import RawIdentifier
from app.domain.matching.index import MATCH_VIEW_FIELDS, match_view
from app.services import merging, privacy, profiles
from app.services.identity_policy import IdentityPolicy
from app.services.ingestion import EventStatus, ingest_events
from app.store.sqlite import match_rows
from app.store.sqlite.store import SQLiteStore
from tests.builders import event

LYON = {"street": "12 rue Victor Hugo", "city": "Lyon", "postcode": "69002", "country": "FR"}


async def _views_match_documents(store: SQLiteStore, profile_ids: list[str]) -> set[str]:
    """The ids whose matching row is there, each asserted equal to its live document's fields."""
    views = {view.id: view for view in await store.match_views(profile_ids)}
    for profile_id, view in views.items():
        profile = await store.get_profile(profile_id)
        assert profile is not None and profile.merged_into is None
        stored = match_view(profile.to_document())
        assert (view.fields, view.blocking_keys) == (stored.fields, stored.blocking_keys), profile_id
    return set(views)


async def test_the_rows_follow_every_write_of_a_profiles_match_fields(sqlite_store: SQLiteStore) -> None:
    store = sqlite_store
    says = {"firstName": "Emma", "lastName": "Martin", "birthDate": "1990-04-02", "address": LYON}
    [first] = await ingest_events(store, [event("identify", email="emma@example.com", properties=says)])
    emma = first.profile_id or ""
    # A batch (the batch-native path): a city misspelt in a new address, a phone, counters.
    moved = {"address": LYON | {"city": "Lyon 2e"}}
    batch = [
        event("identify", email="emma@example.com", properties=moved, minutes=1),
        event("page_view", identifiers=[("email", "emma@example.com"), ("phone", "+33612345678")], minutes=2),
        event("order_completed", email="emma@example.com", minutes=3),
    ]
    assert {o.status for o in await ingest_events(store, batch)} == {EventStatus.ACCEPTED}
    assert await _views_match_documents(store, [emma]) == {emma}
    [view] = await store.match_views([emma])
    assert "+33612345678" in view.fields.phones and {a.city for a in view.fields.addresses} == {"lyon", "lyon 2e"}
    # An upsert renaming her (one unit of work) and another person's profile to merge.
    await profiles.upsert_profile(store, [RawIdentifier("email", "emma@example.com")], {"last_name": "Martin-Roy"})
    other = await profiles.upsert_profile(store, [RawIdentifier("email", "e.martin@example.com")], {"first_name": "Em"})
    assert await _views_match_documents(store, [emma, other.id]) == {emma, other.id}
    [view] = await store.match_views([emma])
    assert view.fields.last_name == "martin roy"

    record, _ = await merging.merge_profiles(store, emma, [other.id], reason="same", actor="t", policy=IdentityPolicy())
    assert await _views_match_documents(store, [emma, other.id]) == {emma}  # merged away: no row
    [merged] = await store.match_views([emma])
    assert "e.martin@example.com" in merged.fields.emails
    await merging.unmerge_profile(store, record.id, actor="t")
    assert await _views_match_documents(store, [emma, other.id]) == {emma, other.id}

    await privacy.delete_profile(store, other.id, actor="dpo")
    assert await _views_match_documents(store, [emma, other.id]) == {emma}
    keys = (await store.get_profile(emma)).blocking_keys  # type: ignore[union-attr]
    found = await store.profiles_sharing_keys(keys, max_block=100, limit=10)
    assert [v.id for v in found] == [emma]


async def test_an_older_store_gets_its_matching_rows_when_opened(tmp_path: Path) -> None:
    path = tmp_path / "cdp.sqlite3"
    store = SQLiteStore(path)
    ids = []
    for n, name in enumerate(["Emma", "Emma", "Lucas"]):
        written = await profiles.upsert_profile(
            store, [RawIdentifier("email", f"p{n}@example.com")], {"first_name": name, "last_name": "Martin"}
        )
        ids.append(written.id)
    await merging.merge_profiles(store, ids[0], [ids[1]], reason="same", actor="t", policy=IdentityPolicy())
    await store.close()

    with sqlite3.connect(path) as db:  # as a store from before the rows: no table, no mark
        db.execute("DROP TABLE match_rows")
        db.execute("DELETE FROM meta WHERE key IN ('matchRows', ?)", (match_rows.FILLED_MARK,))
    reopened = SQLiteStore(path)
    try:
        assert await _views_match_documents(reopened, ids) == {ids[0], ids[2]}
    finally:
        await reopened.close()


_WRITTEN = "2026-01-01T00:00:00.000Z"
_DOCUMENTS = {
    "everything": {
        "_id": "p1", "createdAt": _WRITTEN, "updatedAt": _WRITTEN, "blockingKeys": ["b:19900402", "s:EM|MRTN"],
        "firstName": "Émma", "lastName": "Martin-Roy", "birthDate": "1990-04-02",
        "identifiers": [{"type": "email", "value": "emma@example.com", "addedAt": _WRITTEN},
                        {"type": "phone", "value": "+33612345678", "addedAt": _WRITTEN},
                        {"type": "loyalty", "value": "L-1", "addedAt": _WRITTEN}],
        "addresses": [LYON, {"street": "1 Main St", "line2": "Flat 2", "city": "Leeds", "country": "GB"}],
    },
    "nothing but an id": {"_id": "p2", "createdAt": _WRITTEN, "updatedAt": _WRITTEN},
    # Another shape (a birth date written with a time): kept as the projected fields, read through Profile.
    "another shape": {
        "_id": "p3", "createdAt": _WRITTEN, "updatedAt": _WRITTEN, "blockingKeys": [], "firstName": "Lucas",
        "birthDate": datetime(1990, 4, 2, tzinfo=UTC),
    },
}  # fmt: skip


@pytest.mark.parametrize("document", _DOCUMENTS.values(), ids=_DOCUMENTS.keys())
def test_a_row_reads_back_as_the_document_it_was_made_from(document: dict[str, Any]) -> None:
    text = match_rows.row(document)
    read, expected = match_rows.view(text), match_view(document)
    assert (read.id, read.blocking_keys, read.fields) == (expected.id, expected.blocking_keys, expected.fields)
    assert (read.names, read.contacts, read.birth_date) == (expected.names, expected.contacts, expected.birth_date)
    kept = json.loads(text)
    assert isinstance(kept, dict if document["_id"] == "p3" else list)  # only another shape keeps its names
    assert "createdAt" not in text or isinstance(kept, dict)


async def test_a_store_holding_the_rows_as_documents_gets_them_as_arrays_when_opened(tmp_path: Path) -> None:
    path = tmp_path / "cdp.sqlite3"
    store = SQLiteStore(path)
    ids = []
    for n, name in enumerate(["Emma", "Lucas"]):
        says = {"first_name": name, "last_name": "Martin", "addresses": [LYON]}
        ids.append((await profiles.upsert_profile(store, [RawIdentifier("email", f"p{n}@example.com")], says)).id)
    await store.close()

    with sqlite3.connect(path) as db:  # as the previous version left them: projected documents
        for profile_id, doc in db.execute("SELECT id, doc FROM profiles").fetchall():
            document = json.loads(doc)
            earlier = json.dumps({k: document[k] for k in MATCH_VIEW_FIELDS if k in document})
            db.execute("UPDATE match_rows SET doc = ? WHERE profile_id = ?", (earlier, profile_id))
        db.execute("DELETE FROM meta WHERE key = ?", (match_rows.FILLED_MARK,))
        db.execute("PRAGMA user_version = 4")
    with sqlite3.connect(path) as db:  # read as they are, before the store is opened again
        assert all(isinstance(json.loads(doc), dict) for (doc,) in db.execute("SELECT doc FROM match_rows"))
    reopened = SQLiteStore(path)
    try:
        assert await _views_match_documents(reopened, ids) == set(ids)
    finally:
        await reopened.close()
    with sqlite3.connect(path) as db:
        assert all(isinstance(json.loads(doc), list) for (doc,) in db.execute("SELECT doc FROM match_rows"))
        assert db.execute("PRAGMA user_version").fetchone()[0] == 5
