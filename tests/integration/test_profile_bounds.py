"""A profile's traits stop growing at their bound: the write that would pass it is refused alone (an
identify event, on the batch path and on the per-event path alike, or an upsert), and the profile
keeps what it had. Each write was within its own bounds, and 450 of them left 25 MB of traits on
one person, whose every later event then took half a second."""

from __future__ import annotations

import orjson
import pytest

from app.domain import profile_bounds
from app.domain.errors import InvalidInput
from app.domain.events import RawEvent, RawIdentifier
from app.domain.person_fields import MOST_ADDRESSES
from app.services import merging, profiles
from app.services.identity_policy import IdentityPolicy
from app.services.ingestion import EventStatus, ingest_each_alone, ingest_events
from app.services.ports import ProfileStore
from tests.builders import event

BOUND = 2_000


def _identify(email: str, number: int) -> RawEvent:
    return event(
        "identify", email=email, message_id=f"{email}-{number}", properties={"traits": {f"k{number}": "x" * 300}}
    )


@pytest.mark.parametrize("ingest", [ingest_events, ingest_each_alone], ids=["batch", "each-alone"])
async def test_the_identify_event_that_would_pass_the_traits_bound_is_refused_alone(
    store: ProfileStore, monkeypatch: pytest.MonkeyPatch, ingest: object
) -> None:
    monkeypatch.setattr(profile_bounds, "MAX_TRAITS_BYTES", BOUND)
    events = [_identify("ada@example.com", n) for n in range(8)]
    events.append(event("page_view", email="ada@example.com", message_id="after"))  # the person is still served
    outcomes = await ingest(store, events)  # type: ignore[operator]
    statuses = [o.status for o in outcomes]
    assert statuses == [EventStatus.ACCEPTED] * 6 + [EventStatus.REJECTED] * 2 + [EventStatus.ACCEPTED], outcomes
    refused = outcomes[6]
    # Named by its place in the batch, as validation's refusals are: a write-time one said `properties.traits`.
    assert refused.field == "events[6].properties.traits", refused
    assert (refused.reason or "").startswith("events[6].properties.traits: ") and "traits would take" in refused.reason
    profile = await store.find_profile_by_identity("email:ada@example.com")
    assert profile is not None
    assert sorted(profile.traits) == [f"k{n}" for n in range(6)]
    assert len(orjson.dumps(profile.traits)) <= BOUND
    assert profile.stats.page_views == 1


async def test_an_upsert_that_would_pass_the_traits_bound_is_refused_and_changes_nothing(
    store: ProfileStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(profile_bounds, "MAX_TRAITS_BYTES", BOUND)
    ada = [RawIdentifier("email", "ada@example.com")]
    written = await profiles.upsert_profile(
        store, ada, {"first_name": "Ada", "traits": {"a": "x" * 1500}}, source="crm"
    )
    with pytest.raises(InvalidInput) as refused:
        await profiles.upsert_profile(store, ada, {"first_name": "Adele", "traits": {"b": "y" * 600}}, source="crm")
    assert refused.value.field == "traits"
    profile = await store.get_profile(written.id)
    assert profile is not None and profile.first_name == "Ada" and sorted(profile.traits) == ["a"]


async def test_upserts_written_together_refuse_the_one_past_the_bound_alone(
    store: ProfileStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Upserts sent together (the demo data's CRM file) share one commit, each its own unit of work:
    the one refused in its transaction (the traits bound) and the one refused before it (a bad email)
    write nothing, and the others before and after them are written."""
    monkeypatch.setattr(profile_bounds, "MAX_TRAITS_BYTES", BOUND)
    ada = [RawIdentifier("email", "ada@example.com")]
    upserts = [
        (ada, {"first_name": "Ada", "traits": {"a": "x" * 1500}}),
        ([RawIdentifier("email", "not-an-email")], {"first_name": "Nobody"}),
        (ada, {"first_name": "Adele", "traits": {"b": "y" * 600}}),
        ([RawIdentifier("email", "bob@example.com")], {"first_name": "Bob"}),
    ]
    written = await profiles.upsert_profiles(store, upserts, source="crm")
    first, bad_email, past_bound, bob = written
    assert isinstance(bad_email, InvalidInput) and bad_email.field == "identifiers[0].value"
    assert isinstance(past_bound, InvalidInput) and past_bound.field == "traits"
    assert not isinstance(first, InvalidInput) and not isinstance(bob, InvalidInput)
    profile = await store.get_profile(first.id)
    assert profile is not None and profile.first_name == "Ada" and sorted(profile.traits) == ["a"]
    assert (await store.get_profile(bob.id) or pytest.fail()).first_name == "Bob"
    assert await store.count_profiles() == 2


async def test_stated_preferences_are_bounded_as_traits_are(
    store: ProfileStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Found by an audit: 60 upserts of new preference keys, each within one write's bound, left a
    3.4 MB profile that every later event of the person read and wrote."""
    monkeypatch.setattr(profile_bounds, "MAX_TRAITS_BYTES", BOUND)
    ada = [RawIdentifier("email", "ada@example.com")]
    written = await profiles.upsert_profile(store, ada, {"preferences": {"a": "x" * 1500}})
    with pytest.raises(InvalidInput, match="preferences would take") as refused:
        await profiles.upsert_profile(store, ada, {"first_name": "Adele", "preferences": {"b": "y" * 600}})
    assert refused.value.field == "preferences"
    profile = await store.get_profile(written.id)
    assert profile is not None and profile.first_name is None and sorted(profile.qualitative.preferences) == ["a"]


@pytest.mark.parametrize("ingest", [ingest_events, ingest_each_alone], ids=["batch", "each-alone"])
async def test_identify_events_keep_as_many_addresses_as_an_upsert_may_set(store: ProfileStore, ingest: object) -> None:
    """Found by an audit: 300 identify events, each with another address, left 300 on the profile."""
    moves = [
        event("identify", email="ada@example.com", minutes=n, properties={"address": {"city": f"City {n}"}})
        for n in range(MOST_ADDRESSES + 5)
    ]
    await ingest(store, moves)  # type: ignore[operator]
    profile = await store.find_profile_by_identity("email:ada@example.com")
    assert profile is not None
    assert [a.city for a in profile.addresses] == [f"City {n}" for n in reversed(range(5, MOST_ADDRESSES + 5))]


async def _two_people_with_traits(store: ProfileStore) -> tuple[str, str]:
    """Ada and her duplicate (her phone's profile), each holding traits within the bound, together
    past it. One name: another given name would keep them apart on its own (`another_person`)."""
    ada = await profiles.upsert_profile(
        store, [RawIdentifier("email", "ada@example.com")], {"first_name": "Ada", "traits": {"a": "x" * 1200}}
    )
    adele = await profiles.upsert_profile(
        store, [RawIdentifier("phone", "+33612345678")], {"first_name": "Ada", "traits": {"b": "y" * 1200}}
    )
    return ada.id, adele.id


@pytest.mark.parametrize("ingest", [ingest_events, ingest_each_alone], ids=["batch", "each-alone"])
async def test_an_event_linking_profiles_whose_traits_together_pass_the_bound_merges_nothing(
    store: ProfileStore, monkeypatch: pytest.MonkeyPatch, ingest: object
) -> None:
    """Found by a review: each write was bounded, merges were not; a hundred profiles at the bound,
    linked, made one holding a hundred times it. The event lands, as merge protection's refusals do."""
    monkeypatch.setattr(profile_bounds, "MAX_TRAITS_BYTES", BOUND)
    ada_id, adele_id = await _two_people_with_traits(store)
    link = event("page_view", identifiers=[("email", "ada@example.com"), ("phone", "+33612345678")], message_id="l")
    [outcome] = await ingest(store, [link])  # type: ignore[operator]
    assert outcome.status is EventStatus.ACCEPTED and not outcome.merged, outcome
    ada, adele = await store.get_profile(ada_id), await store.get_profile(adele_id)
    assert ada is not None and adele is not None and ada.merged_into is None and adele.merged_into is None
    assert sorted(ada.traits) == ["a"] and sorted(adele.traits) == ["b"]
    assert await store.merges_of(ada_id) == []
    [refusal] = await store.refusals_of(ada_id)
    assert sorted(refusal.profile_ids) == sorted([ada_id, adele_id])
    assert refusal.reason.startswith("the merged profile's traits could take "), refusal.reason


async def test_a_steward_merge_past_the_traits_bound_is_refused_and_writes_nothing(
    store: ProfileStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(profile_bounds, "MAX_TRAITS_BYTES", BOUND)
    ada_id, adele_id = await _two_people_with_traits(store)
    with pytest.raises(InvalidInput, match=r"traits could take .* remove what the profiles no longer need") as refused:
        await merging.merge_profiles(
            store, ada_id, [adele_id], reason="same person", actor="steward", policy=IdentityPolicy()
        )
    assert refused.value.field == "mergedIds"
    assert await store.merges_of(ada_id) == [] and await store.merges_of(adele_id) == []
    ada, adele = await store.get_profile(ada_id), await store.get_profile(adele_id)
    assert ada is not None and adele is not None and adele.merged_into is None and sorted(ada.traits) == ["a"]
    # Within the bound, the same merge is made.
    monkeypatch.setattr(profile_bounds, "MAX_TRAITS_BYTES", 3 * BOUND)
    _, merged = await merging.merge_profiles(
        store, ada_id, [adele_id], reason="same person", actor="steward", policy=IdentityPolicy()
    )
    assert sorted(merged.traits) == ["a", "b"]


async def test_a_merge_keeps_as_many_addresses_as_one_profile_may_hold(store: ProfileStore) -> None:
    """Each profile held its bound of addresses; the union of a merge held them all."""
    people = []
    for n in range(3):
        addresses = [{"city": f"City {n}-{k}"} for k in range(MOST_ADDRESSES)]
        written = await profiles.upsert_profile(
            store, [RawIdentifier("email", f"p{n}@example.com")], {"first_name": "Ada", "addresses": addresses}
        )
        people.append(written.id)
    _, merged = await merging.merge_profiles(
        store, people[0], people[1:], reason="same person", actor="steward", policy=IdentityPolicy()
    )
    stored = await store.get_profile(merged.id)
    assert stored is not None
    assert [a.city for a in stored.addresses] == [f"City 0-{k}" for k in range(MOST_ADDRESSES)]
