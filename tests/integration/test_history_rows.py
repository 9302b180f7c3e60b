"""Each interaction is kept once by the embedded store (app/store/sqlite/history_rows.py): in its
profile's recent list while the list holds it, else as a row of the interactions table. Whatever
moved entries out of the lists (the cap, a late event, a merge of two full lists, its undoing, a
batch or one event at a time), every profile's whole history reads back, each event once; an
erasure counts those only in a list; a store written before the rule (every interaction in both)
reads each once."""

from __future__ import annotations

import sqlite3
from contextlib import closing
from datetime import timedelta

from app.domain.profile import RECENT_INTERACTIONS_CAP
from app.domain.profile_query import InteractionFilter
from app.services import merging, profile_reads
from app.services.identity_policy import IdentityPolicy
from app.services.ingestion import EventStatus, ingest_each_alone, ingest_events
from app.services.privacy import delete_profile
from app.store.sqlite.store import SQLiteStore
from tests.builders import BASE_TIME, event

MORE_THAN_THE_CAP = RECENT_INTERACTIONS_CAP + 12


def _table_rows(store: SQLiteStore, profile_id: str) -> set[str]:
    with closing(sqlite3.connect(store.path)) as db:
        return {r[0] for r in db.execute("SELECT message_id FROM interactions WHERE profile_id = ?", (profile_id,))}


async def _history(store: SQLiteStore, profile_id: str) -> list[str]:
    """The profile's whole history as the API pages it: message ids, newest first."""
    page = await store.list_interactions(profile_id, before=None, where=InteractionFilter(), limit=10_000)
    return [i.message_id for i in page]


async def _customer(store: SQLiteStore, email: str, events: int, *, alone: bool = False, start: int = 0) -> str:
    raw = [event("page_view", email=email, minutes=start + n, message_id=f"{email}-{start + n}") for n in range(events)]
    outcomes = await (ingest_each_alone(store, raw) if alone else ingest_events(store, raw))
    assert {o.status for o in outcomes} == {EventStatus.ACCEPTED}
    found = await profile_reads.get_profile_by_identifier(store, "email", email)
    assert found is not None
    return found.id


async def test_an_interaction_its_recent_list_holds_has_no_row(sqlite_store: SQLiteStore) -> None:
    profile_id = await _customer(sqlite_store, "young@example.com", 5)
    assert _table_rows(sqlite_store, profile_id) == set()
    assert sorted(await _history(sqlite_store, profile_id)) == sorted(f"young@example.com-{n}" for n in range(5))
    counted = await sqlite_store.count_interactions([profile_id], InteractionFilter())
    assert counted == {profile_id: 5}


async def test_entries_pushed_out_by_the_cap_get_rows_in_batches_and_alone(sqlite_store: SQLiteStore) -> None:
    for alone in (False, True):
        email = f"regular-{alone}@example.com"
        profile_id = await _customer(sqlite_store, email, 30, alone=alone)
        await _customer(sqlite_store, email, MORE_THAN_THE_CAP - 30, alone=alone, start=30)
        history = await _history(sqlite_store, profile_id)
        assert history == [f"{email}-{n}" for n in reversed(range(MORE_THAN_THE_CAP))]
        profile = await sqlite_store.get_profile(profile_id)
        assert profile is not None and len(profile.recent) == RECENT_INTERACTIONS_CAP
        # The table holds at least those the list no longer does (the list copied when it filled up).
        outside = set(history) - {i.message_id for i in profile.recent}
        assert len(outside) == MORE_THAN_THE_CAP - RECENT_INTERACTIONS_CAP
        assert outside <= _table_rows(sqlite_store, profile_id)


async def test_a_late_event_that_never_enters_a_full_list_has_its_row(sqlite_store: SQLiteStore) -> None:
    profile_id = await _customer(sqlite_store, "full@example.com", RECENT_INTERACTIONS_CAP)
    late = event("page_view", email="full@example.com", at=BASE_TIME - timedelta(days=3), message_id="late")
    assert (await ingest_events(sqlite_store, [late]))[0].status is EventStatus.ACCEPTED
    profile = await sqlite_store.get_profile(profile_id)
    assert profile is not None and "late" not in {i.message_id for i in profile.recent}
    history = await _history(sqlite_store, profile_id)
    assert history[-1] == "late" and len(history) == RECENT_INTERACTIONS_CAP + 1


async def test_a_merge_of_two_full_lists_and_its_undoing_keep_every_event_once(sqlite_store: SQLiteStore) -> None:
    ann = await _customer(sqlite_store, "ann@example.com", 40)
    bob = await _customer(sqlite_store, "bob@example.com", 40, start=1000)
    theirs = {ann: await _history(sqlite_store, ann), bob: await _history(sqlite_store, bob)}
    record, merged = await merging.merge_profiles(
        sqlite_store, ann, [bob], reason="test", actor="t", policy=IdentityPolicy()
    )
    assert len(merged.recent) == RECENT_INTERACTIONS_CAP  # 80 events: 30 left the lists
    assert sorted(await _history(sqlite_store, ann)) == sorted(theirs[ann] + theirs[bob])
    assert await _history(sqlite_store, bob) == []  # merged away: its history is the survivor's
    await _customer(sqlite_store, "bob@example.com", 3, start=2000)  # lands on the survivor meanwhile
    await merging.unmerge_profile(sqlite_store, record.id, actor="t")
    assert await _history(sqlite_store, ann) == theirs[ann]
    assert sorted(await _history(sqlite_store, bob)) == sorted(
        [*theirs[bob], *(f"bob@example.com-{n}" for n in range(2000, 2003))]
    )


async def test_an_erasure_counts_the_events_only_a_list_held(sqlite_store: SQLiteStore) -> None:
    profile_id = await _customer(sqlite_store, "gone@example.com", RECENT_INTERACTIONS_CAP + 5)
    erasure = await delete_profile(sqlite_store, profile_id, actor="t")
    assert erasure.interactions == RECENT_INTERACTIONS_CAP + 5
    assert _table_rows(sqlite_store, profile_id) == set()


async def test_a_store_holding_every_interaction_twice_reads_each_once(sqlite_store: SQLiteStore) -> None:
    profile_id = await _customer(sqlite_store, "old@example.com", 7)
    with closing(sqlite3.connect(sqlite_store.path)) as db, db:  # as a store of format 2 holds them
        db.execute(
            "INSERT INTO interactions SELECT p.id, r.value ->> '$.timestamp', r.value ->> '$.messageId', "
            "r.value ->> '$.type', r.value ->> '$.channel', r.value FROM profiles p, json_each(p.doc, '$.recent') r"
        )
    assert len(_table_rows(sqlite_store, profile_id)) == 7
    assert sorted(await _history(sqlite_store, profile_id)) == sorted(f"old@example.com-{n}" for n in range(7))
    assert await sqlite_store.count_interactions([profile_id], InteractionFilter()) == {profile_id: 7}
