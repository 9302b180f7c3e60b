"""A given name written as its initial ("M.") does not replace the full given name it abbreviates
("Marie"), on every storage backend and every path that writes one: an upsert, an identify event
(one at a time and in a batch, in either arrival order) and a merge. Before, "M." replaced "Marie",
and the profile then took in a twin sister's records: nothing in it said Marie any more."""

from __future__ import annotations

from typing import Any

from app.domain.events import RawIdentifier
from app.domain.profile import Profile
from app.services import merging, profiles
from app.services.identity_policy import IdentityPolicy
from app.services.ingestion import EventStatus, ingest_events
from app.services.ports import ProfileStore
from app.services.profile_writes import ANOTHER_PERSON
from tests.builders import event

MAILBOX = ("email", "marie.b@example.com")
MARIE = {"first_name": "Marie", "last_name": "Berger", "birth_date": "1994-01-14"}


async def _upsert(store: ProfileStore, ids: list[tuple[str, str]], fields: dict[str, Any]) -> Profile:
    return await profiles.upsert_profile(store, [RawIdentifier(t, v) for t, v in ids], fields)


async def _given_name(store: ProfileStore, profile_id: str | None) -> str | None:
    profile = await store.get_profile(profile_id or "")
    assert profile is not None
    return profile.first_name


async def test_an_upserts_initial_leaves_the_full_given_name_and_writes_the_rest(store: ProfileStore) -> None:
    marie = await _upsert(store, [MAILBOX], MARIE)
    written = await _upsert(store, [MAILBOX], {"first_name": "M.", "last_name": "Bergier", "job_title": "nurse"})
    assert written.id == marie.id
    assert (written.first_name, written.last_name, written.job_title) == ("Marie", "Bergier", "nurse")
    assert await _given_name(store, marie.id) == "Marie"
    # Another initial, or a full name, is another given name: it replaces, as any newer value does.
    assert (await _upsert(store, [MAILBOX], {"first_name": "S."})).first_name == "S."
    assert (await _upsert(store, [MAILBOX], {"first_name": "Sophie"})).first_name == "Sophie"


async def test_a_full_given_name_replaces_its_initial(store: ProfileStore) -> None:
    initial = await _upsert(store, [MAILBOX], MARIE | {"first_name": "M."})
    assert (await _upsert(store, [MAILBOX], {"first_name": "Marie"})).id == initial.id
    assert await _given_name(store, initial.id) == "Marie"


def _identify(first_name: str, minutes: float) -> Any:
    says = {"firstName": first_name, "lastName": "Berger", "birthDate": MARIE["birth_date"]}
    return event("identify", identifiers=[MAILBOX], properties=says, minutes=minutes)


async def test_identify_events_keep_the_full_given_name_in_either_arrival_order_one_at_a_time(
    store: ProfileStore,
) -> None:
    full, initial = _identify("Marie", 0), _identify("M.", 5)  # the initial is the newer
    [first] = await ingest_events(store, [initial])
    [second] = await ingest_events(store, [full])  # late: older than the initial the profile holds
    assert first.profile_id == second.profile_id
    assert await _given_name(store, first.profile_id) == "Marie"
    [third] = await ingest_events(store, [_identify("M.", 10)])
    assert await _given_name(store, third.profile_id) == "Marie"


async def test_identify_events_keep_the_full_given_name_in_either_arrival_order_in_one_batch(
    store: ProfileStore,
) -> None:
    outcomes = await ingest_events(store, [_identify("M.", 5), _identify("Marie", 0), _identify("M.", 10)])
    assert [o.status for o in outcomes] == [EventStatus.ACCEPTED] * 3
    assert len({o.profile_id for o in outcomes}) == 1
    assert await _given_name(store, outcomes[0].profile_id) == "Marie"


async def test_a_merge_keeps_the_full_given_name_over_a_newer_initial(store: ProfileStore) -> None:
    marie = await _upsert(store, [MAILBOX], MARIE)
    initial = await _upsert(store, [("phone", "+33612345678")], MARIE | {"first_name": "M."})  # newer
    _, merged = await merging.merge_profiles(
        store, initial.id, [marie.id], reason="one person", actor="steward", policy=IdentityPolicy()
    )
    assert merged.first_name == "Marie"


async def test_a_twins_records_stay_apart_from_a_profile_written_with_her_sisters_initial(
    store: ProfileStore,
) -> None:
    """Marie's records, the last with only her initial; then her twin Sylvie's, through their mailbox."""
    marie = await _upsert(store, [MAILBOX, ("phone", "+33612345678")], MARIE)
    await _upsert(store, [MAILBOX], MARIE | {"first_name": "M.", "last_name": "Bergier"})
    sylvie = await _upsert(store, [MAILBOX, ("phone", "+33698765432")], MARIE | {"first_name": "Sylvie"})
    assert sylvie.id != marie.id and sylvie.first_name == "Sylvie"
    assert await _given_name(store, marie.id) == "Marie"
    assert [r.reason for r in await merging.merge_refusals(store, marie.id)] == [ANOTHER_PERSON]
