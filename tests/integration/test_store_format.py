"""A store says which format it is, and MongoDB's documents stay within its limit.

A store says which format it is (the embedded store in its file's header, MongoDB in a `meta`
document), and a server refuses one written by a newer version of itself, before anything is written.
Found by an audit of upgrades: an older server opened a newer store without a word, then failed every
write, or wrote rows the newer one's one-time repairs had already passed (list filters that then
found no one)."""

from __future__ import annotations

import sqlite3
from contextlib import closing
from pathlib import Path

import bson
import pytest
from pymongo import IndexModel
from pymongo.errors import BulkWriteError

from app.domain.errors import InvalidInput
from app.domain.profile_query import ProfileFilter
from app.restoring import restore_backup
from app.services import merging
from app.services.identity_policy import IdentityPolicy
from app.services.ingestion import ingest_events
from app.services.ports import ProfileStore
from app.store.mongo.store import BUCKET_BYTES, COLLECTIONS, STORE_FORMAT_KEY, MongoStore, _failed_index
from app.store.mongo.store import STORE_FORMAT as MONGO_FORMAT
from app.store.sqlite.backups import back_up, check_backup, store_id
from app.store.sqlite.schema import STORE_FORMAT
from app.store.sqlite.store import SQLiteStore
from tests.builders import event
from tests.fakes.async_mongo import FakeClient


def _format(path: Path) -> int:
    with closing(sqlite3.connect(path)) as db:
        return int(db.execute("PRAGMA user_version").fetchone()[0])


def _set_format(path: Path, value: int) -> None:
    with closing(sqlite3.connect(path)) as db:
        db.execute(f"PRAGMA user_version = {value}")


async def test_a_store_is_of_this_codes_format_and_one_of_a_newer_is_refused_untouched(tmp_path: Path) -> None:
    database = tmp_path / "cdp.sqlite3"
    store = SQLiteStore(database)
    await ingest_events(store, [event("page_view")])
    await store.close()
    assert _format(database) == STORE_FORMAT
    _set_format(database, STORE_FORMAT + 1)  # written by the next version
    before = database.read_bytes()

    with pytest.raises(InvalidInput, match="written by a newer version of this server") as refused:
        SQLiteStore(database)

    assert refused.value.field == "CDP_DATABASE_URL"
    assert f"store format {STORE_FORMAT + 1}" in refused.value.message
    assert database.read_bytes() == before and not Path(f"{database}-wal").exists()  # not even WAL mode


async def test_a_store_from_before_formats_is_migrated_and_marked(tmp_path: Path) -> None:
    database = tmp_path / "cdp.sqlite3"
    store = SQLiteStore(database)
    await ingest_events(store, [event("page_view")])
    await store.close()
    _set_format(database, 0)  # as every store made before formats were kept

    store = SQLiteStore(database)
    try:
        assert await store.count_profiles() == 1
    finally:
        await store.close()
    assert _format(database) == STORE_FORMAT


async def test_a_backup_of_a_newer_format_is_not_restored(tmp_path: Path) -> None:
    database, copy = tmp_path / "cdp.sqlite3", tmp_path / "backup.sqlite3"
    store = SQLiteStore(database)
    await ingest_events(store, [event("page_view")])
    back_up(database, copy)
    await store.close()
    _set_format(copy, STORE_FORMAT + 1)
    before = database.read_bytes()

    with pytest.raises(InvalidInput, match="newer version") as refused:
        check_backup(copy)
    assert refused.value.field == "backup"
    with pytest.raises(InvalidInput, match="newer version"):
        await restore_backup(copy, database)
    assert database.read_bytes() == before


async def test_a_restored_backup_without_a_store_id_keeps_the_id_of_the_store_it_replaces(tmp_path: Path) -> None:
    """Found by the same audit: a plain copy, or a backup made before stores had an id, was given a
    new one, so the scheduled backups made before were no longer the store's own and none was ever
    deleted past CDP_BACKUP_KEEP."""
    database, copy = tmp_path / "cdp.sqlite3", tmp_path / "backup.sqlite3"
    store = SQLiteStore(database)
    await ingest_events(store, [event("page_view")])
    back_up(database, copy)
    await store.close()
    ours = store_id(database)
    with closing(sqlite3.connect(copy)) as db:
        db.execute("DELETE FROM meta WHERE key = 'storeId'")
        db.commit()

    await restore_backup(copy, database)

    assert ours is not None and store_id(database) == ours


async def test_a_mongodb_database_of_a_newer_format_is_refused() -> None:
    client = FakeClient()
    store = MongoStore(client, "cdp_format")
    await store.ensure_indexes()
    assert await store.read_meta(STORE_FORMAT_KEY) == str(MONGO_FORMAT)
    # Every collection is made then, none within a transaction (a sharded cluster refuses that).
    assert set(await client["cdp_format"].list_collection_names()) >= COLLECTIONS
    await MongoStore(client, "cdp_format").ensure_indexes()  # a second worker, or a second start
    await client["cdp_format"].meta.update_one({"_id": STORE_FORMAT_KEY}, {"$set": {"value": MONGO_FORMAT + 1}})

    with pytest.raises(InvalidInput, match="written by a newer version of this server") as refused:
        await MongoStore(client, "cdp_format").ensure_indexes()
    assert refused.value.field == "CDP_DATABASE_URL"


async def test_a_mongodb_history_bucket_stays_within_the_document_limit_whatever_its_events_weigh() -> None:
    """Found by an audit: events within the 64 KB bound of their properties as JSON can weigh 4-5 times
    that as BSON (arrays of small numbers); 200 of them in one bucket passed MongoDB's 16 MB document
    limit, which failed the batch's write on a real server (the fake has no limit)."""
    store = MongoStore(FakeClient(), "cdp_buckets")
    await store.ensure_indexes()
    heavy = {"url": "/p", **{f"k{n}": [0] * 1000 for n in range(31)}}  # ~62 KB as JSON, ~276 KB as BSON
    events = [event("page_view", email="heavy@example.com", minutes=n, properties=heavy) for n in range(40)]
    for start in range(0, len(events), 10):
        outcomes = await ingest_events(store, events[start : start + 10])
        assert all(o.status.value == "ACCEPTED" for o in outcomes), outcomes
    buckets = await store._db.interactions.find({}).to_list(None)
    assert sum(len(b["items"]) for b in buckets) == 40
    assert len(buckets) > 1 and max(len(bson.encode(b)) for b in buckets) <= BUCKET_BYTES + 1024


def test_only_a_duplicate_key_reads_as_a_lost_race_on_mongodb() -> None:
    """Found by an audit of the MongoDB backend: any failure of a bulk insert (a document too large, a
    write concern not met) was read as an identifier or a message another writer took first, retried
    as a lost race and reported as one."""
    duplicate = BulkWriteError({"writeErrors": [{"index": 2, "code": 11000, "errmsg": "E11000 duplicate key"}]})
    too_large = BulkWriteError({"writeErrors": [{"index": 0, "code": 10334, "errmsg": "object to insert too large"}]})
    assert _failed_index(duplicate) == 2
    with pytest.raises(BulkWriteError) as raised:
        _failed_index(too_large)
    assert raised.value is too_large


async def test_a_mongodb_index_in_the_way_of_the_servers_own_is_one_line_naming_it() -> None:
    """Found by an audit of the MongoDB backend: an index of the same keys with other options (made by
    hand, or by another tool) stopped the start with a driver's traceback."""
    client = FakeClient()
    await client["cdp_indexes"].identities.create_indexes([IndexModel([("profileId", 1)], unique=True)])
    with pytest.raises(InvalidInput, match="conflicts with one this server makes") as refused:
        await MongoStore(client, "cdp_indexes").ensure_indexes()
    assert refused.value.field == "CDP_DATABASE_URL" and "profileId_1" in refused.value.message


async def test_a_mongodb_database_of_format_1_is_given_its_profiles_folds_at_start() -> None:
    """Names and cities are filtered on their folds, kept in each document since format 2
    (app/store/mongo/profile_folds.py): profiles written before are given theirs once, at the first
    start of this version, or a list filtered on a name or a city would not find them."""
    client = FakeClient()
    store = MongoStore(client, "cdp_folds")
    await store.ensure_indexes()
    identify = {"firstName": "Émile", "lastName": "Zola", "address": {"city": "Médan", "country": "FR"}}
    await ingest_events(store, [event("identify", email="emile@example.com", properties=identify)])
    profiles, meta = client["cdp_folds"].profiles, client["cdp_folds"].meta
    await profiles.update_many({}, {"$unset": {"folded": ""}})  # as a version before folds wrote them
    await meta.update_one({"_id": STORE_FORMAT_KEY}, {"$set": {"value": 1}})

    await MongoStore(client, "cdp_folds").ensure_indexes()

    assert await store.read_meta(STORE_FORMAT_KEY) == str(MONGO_FORMAT)
    for query in (ProfileFilter(name_prefix="ÉMI"), ProfileFilter(name_prefix="zo"), ProfileFilter(city="MÉDAN")):
        assert [p.first_name for p in await store.list_profiles(query, after=None, limit=10)] == ["Émile"], query


async def test_a_merge_record_does_not_grow_with_the_profiles_recent_events(store: ProfileStore) -> None:
    """Found by an audit of MongoDB's limits: a merge record saved each profile with its recent list (50
    events of up to 64 KB), so eleven such profiles merged at once made a 17.5 MB record, past MongoDB's
    16 MB, and the merge failed. An unmerge rebuilds that list from the history: the record keeps none."""
    heavy = {"url": "/p", **{f"part{n}": "x" * 8_000 for n in range(4)}}  # 32 KB, strings of at most 8,192
    ids = []
    for person in range(3):
        events = [event("page_view", email=f"p{person}@example.com", minutes=n, properties=heavy) for n in range(50)]
        outcomes = await ingest_events(store, events)
        ids.append(outcomes[0].profile_id or "")
    record, _ = await merging.merge_profiles(store, ids[0], ids[1:], reason="same", actor="t", policy=IdentityPolicy())
    [kept] = await store.merges_of(ids[0])
    assert len(bson.encode(kept.to_document())) < 200_000  # the recent lists alone weighed 4.8 MB
    _, back = await merging.unmerge_profile(store, record.id, actor="t")
    assert sorted(len(p.recent) for p in back) == [50, 50, 50]
