"""Undoing every merge gives each person back exactly what is theirs, whatever happened between.

Four people, each with an email, a phone and a customer id. Random sequences of events carrying
some of one person's identifiers (names among them, and consent decisions), merges of any two
current profiles and unmerges of any merge still in force (those refused because a later merge
into or of its survivor still stands are skipped); then every merge still in force is undone,
newest first. Each person's profile must then hold exactly the events that named them, the stats,
first name and consents a store that never merged anyone gives for those events, their own consent
history and exactly their own identifiers. Runs on the embedded store and on the MongoDB store over
its in-memory fake.
"""

from __future__ import annotations

import asyncio
import tempfile
from datetime import timedelta
from pathlib import Path
from typing import Any
from unittest.mock import patch

import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from app.domain import clock
from app.domain.errors import Conflict
from app.domain.events import RawIdentifier
from app.domain.merge_protection import MergeProtection
from app.domain.profile import Profile
from app.domain.profile_query import InteractionFilter
from app.services import merging, privacy, profile_reads
from app.services.identity_policy import IdentityPolicy
from app.services.ingestion import EventStatus, IngestionPolicy, ingest_events
from app.services.ports import ProfileStore
from app.services.profiles import upsert_profile
from app.store.sqlite.store import SQLiteStore
from tests.builders import event
from tests.conftest import make_store

IDENTITY = IdentityPolicy(protection=MergeProtection(automatic_merges=False))
NO_AUTO = IngestionPolicy(identity=IDENTITY)
PEOPLE = [
    [("email", "ann@example.com"), ("phone", "+33611111111"), ("customerId", "c-ann")],
    [("email", "bob@example.com"), ("phone", "+33622222222"), ("customerId", "c-bob")],
    [("email", "cat@example.com"), ("phone", "+33633333333"), ("customerId", "c-cat")],
    [("email", "dan@example.com"), ("phone", "+33644444444"), ("customerId", "c-dan")],
]
TYPES = [
    "page_view",
    "order_completed",
    "order_returned",
    "email_open",
    "cart_abandoned",
    "survey_response",
    "identify",
    "consent_update",
]
NAMES = ["Ann", "Bob", "Cat", "Dan"]
PURPOSES = ["email_marketing", "sms_marketing"]

Op = tuple[Any, ...]
ingests = st.tuples(
    st.just("ingest"),
    st.integers(0, len(PEOPLE) - 1),
    st.lists(st.integers(0, 2), min_size=1, max_size=3, unique=True),  # which of the person's identifiers
    st.sampled_from(TYPES),
    # Minutes after the previous event: in time order, so that the stats of a profile no merge
    # touched (counted as events arrive) and of a rebuilt one (replayed in time order) agree. The
    # last event is a few minutes ahead of the clock, so events close to it come after the merges.
    st.one_of(st.integers(0, 2), st.integers(0, 90)),
    st.integers(0, 3),  # a consent's purpose and decision
)
merges = st.tuples(st.just("merge"), st.integers(0, 3), st.integers(0, 3))  # survivor, merged: among current
unmerges = st.tuples(st.just("unmerge"), st.integers(0, 5))  # among merges still in force
operations = st.lists(st.one_of(ingests, merges, unmerges), min_size=1, max_size=16)


async def _history(store: ProfileStore, profile_id: str) -> list[str]:
    items = await store.list_interactions(profile_id, before=None, where=InteractionFilter(), limit=10_000)
    return sorted(i.message_id for i in items)


async def _consent_history(store: ProfileStore, profile: Profile) -> list[str]:
    return sorted(d.message_id or "" for d in await privacy.consent_history(store, profile))


async def _run(backend: str, ops: list[Op], root: Path) -> None:
    store = await make_store(backend, root)
    untouched = SQLiteStore(root / "untouched.sqlite3")  # the same events, never merged
    try:
        ids: list[str] = []
        for identifiers in PEOPLE:
            raw = [RawIdentifier(t, v) for t, v in identifiers]
            ids.append((await upsert_profile(store, raw, {}, policy=IDENTITY)).id)
            await upsert_profile(untouched, raw, {}, policy=IDENTITY)
        in_force: list[str] = []
        minutes = 0
        start = clock.now() + timedelta(minutes=4) - timedelta(minutes=sum(op[4] for op in ops if op[0] == "ingest"))
        for number, op in enumerate(ops):
            if op[0] == "ingest":
                _, person, which, type_, gap, choice = op
                minutes += gap
                carried = [PEOPLE[person][i] for i in which]
                properties = {
                    "identify": {"firstName": f"{NAMES[person]}{number}"},
                    "consent_update": {"purpose": PURPOSES[choice % 2], "granted": choice > 1},
                }.get(type_)
                sent = event(
                    type_,
                    identifiers=carried,
                    at=start,
                    minutes=minutes,
                    message_id=f"{person}-{number:02d}",
                    properties=properties,
                )
                # Both stores receive it at one instant: a consent dated ahead counts from its receipt.
                with patch.object(clock, "now", return_value=clock.now()):
                    for target in (store, untouched):
                        [outcome] = await ingest_events(target, [sent], NO_AUTO)
                        assert outcome.status is EventStatus.ACCEPTED
            elif op[0] == "merge":
                current = [i for i in ids if (await store.get_profile(i)).merged_into is None]  # type: ignore[union-attr]
                survivor, merged = current[op[1] % len(current)], current[op[2] % len(current)]
                if survivor != merged:
                    record, _ = await merging.merge_profiles(
                        store, survivor, [merged], reason="test", actor="t", policy=IDENTITY
                    )
                    in_force.append(record.id)
            elif in_force:
                merge_id = in_force[op[1] % len(in_force)]
                try:
                    await merging.unmerge_profile(store, merge_id, actor="t")
                except Conflict:  # a later merge into or of its survivor stands: that one comes off first
                    continue
                in_force.remove(merge_id)
        for merge_id in reversed(in_force):
            await merging.unmerge_profile(store, merge_id, actor="t")

        for index, (person_id, identifiers) in enumerate(zip(ids, PEOPLE, strict=True)):
            profile = await store.get_profile(person_id)
            assert profile is not None and profile.merged_into is None
            expected = await untouched.find_profile_by_identity(f"{identifiers[0][0]}:{identifiers[0][1]}")
            assert expected is not None
            history = await _history(store, person_id)
            assert history == await _history(untouched, expected.id)
            assert all(message_id.startswith(f"{index}-") for message_id in history)  # named this person
            assert profile.stats == expected.stats
            assert (profile.first_name, profile.consents) == (expected.first_name, expected.consents)
            assert await _consent_history(store, profile) == await _consent_history(untouched, expected)
            assert [i.message_id for i in profile.recent] == [i.message_id for i in expected.recent]
            assert sorted(profile.identifier_keys()) == sorted(expected.identifier_keys())
            for type_, value in identifiers:
                owner = await profile_reads.get_profile_by_identifier(store, type_, value)
                assert owner is not None and owner.id == person_id
    finally:
        await store.close()
        await untouched.close()


@pytest.mark.parametrize("backend", ["sqlite", "mongo-fake"])
@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(ops=operations)
@example(  # the reported sequence: merge, an event with only the merged person's phone, unmerge, merge, unmerge
    ops=[
        ("merge", 0, 1),
        ("ingest", 1, [1], "order_completed", 5, 0),
        ("unmerge", 0),
        ("merge", 0, 1),
        ("unmerge", 0),
    ]
)
@example(  # a chain: the survivor is merged in turn, an event names the first person merged, both undone
    ops=[("merge", 0, 1), ("merge", 2, 0), ("ingest", 1, [1], "page_view", 5, 0)]
)
@example(  # two merges into one survivor, the first undone first: it waits for the second
    ops=[
        ("ingest", 0, [0], "identify", 0, 0),
        ("ingest", 1, [0], "identify", 0, 0),
        ("ingest", 1, [1], "consent_update", 0, 3),
        ("merge", 0, 1),
        ("merge", 0, 1),
        ("unmerge", 0),
    ]
)
@example(  # the merged person decides a consent and names themself while merged, after the merge
    ops=[
        ("merge", 0, 1),
        ("ingest", 1, [1], "consent_update", 0, 3),
        ("ingest", 1, [2], "identify", 0, 0),
        ("unmerge", 0),
    ]
)
def test_undoing_every_merge_gives_each_person_exactly_their_events_stats_names_consents_and_identifiers(
    backend: str, ops: list[Op]
) -> None:
    with tempfile.TemporaryDirectory() as root:
        asyncio.run(_run(backend, ops, Path(root)))
