"""Merges and unmerges through the service layer, on every storage backend."""

from __future__ import annotations

import asyncio
import itertools
from dataclasses import replace
from datetime import timedelta
from typing import Any

import pytest

from app.domain import clock
from app.domain.errors import Conflict, InvalidInput, LimitExceeded, NotFound
from app.domain.events import RawIdentifier
from app.domain.merge_protection import MergeProtection
from app.domain.profile import Profile
from app.domain.profile_query import InteractionFilter
from app.services import merging, privacy, profile_reads, profiles
from app.services.identity_policy import IdentityPolicy
from app.services.ingestion import EventStatus, IngestionPolicy, ingest_events
from app.services.merging import MAX_MERGED_AT_ONCE
from app.services.ports import ProfileStore
from app.settings import Settings
from tests.builders import event
from tests.key_purges import purge_keys

POLICY = IdentityPolicy()
NO_AUTO = IngestionPolicy(identity=IdentityPolicy(protection=MergeProtection(automatic_merges=False)))


async def _customer(store: ProfileStore, ids: list[tuple[str, str]], *events: Any) -> Profile:
    outcomes = await ingest_events(store, [event(e, identifiers=ids) for e in events], NO_AUTO)
    assert {o.status for o in outcomes} == {EventStatus.ACCEPTED}
    profile = await profile_reads.get_profile_by_identifier(store, *ids[0])
    assert profile is not None
    return profile


async def _two_duplicates(store: ProfileStore) -> tuple[Profile, Profile]:
    web = await _customer(store, [("email", "emma@example.com")], "identify", "page_view", "order_completed")
    shop = await _customer(
        store,
        [("phone", "+33612345678"), ("loyaltyId", "L1")],
        "order_completed",
        "order_returned",
        "consent_update",
    )
    return web, shop


async def _history(store: ProfileStore, profile_id: str) -> list[str]:
    items = await store.list_interactions(profile_id, before=None, where=InteractionFilter(), limit=10_000)
    return [i.message_id for i in items]


def _comparable(profile: Profile | None) -> dict[str, Any]:
    assert profile is not None
    document = profile.to_document()
    for volatile in ("version", "updatedAt"):
        document.pop(volatile)
    document["identifiers"] = sorted(document["identifiers"], key=lambda r: (r["type"], r["value"]))
    return document


async def test_merge_unites_identifiers_history_and_stats_counting_each_event_once(store: ProfileStore) -> None:
    web, shop = await _two_duplicates(store)
    record, merged = await merging.merge_profiles(
        store, web.id, [shop.id], reason="same person", actor="tester", policy=POLICY
    )
    assert (record.survivor_id, record.merged_ids, record.actor) == (web.id, [shop.id], "tester")
    assert merged.id == web.id
    assert {(i.type, i.value) for i in merged.identifiers} == {
        ("email", "emma@example.com"),
        ("phone", "+33612345678"),
        ("loyaltyId", "L1"),
    }
    assert (merged.stats.orders, merged.stats.returns, merged.stats.events_total) == (2, 1, 6)
    assert merged.stats.revenue_cents == web.stats.revenue_cents + shop.stats.revenue_cents
    assert merged.first_name == "Emma" and merged.consents["email_marketing"].granted is True
    assert sorted(await _history(store, web.id)) == sorted(
        await _history(store, web.id) + await _history(store, shop.id)
    )
    assert len(await _history(store, web.id)) == 6
    assert len(merged.recent) == 6
    stored = await store.get_profile(web.id)
    assert stored == merged


async def test_a_message_that_landed_on_both_profiles_counts_once_in_the_merged_one(store: ProfileStore) -> None:
    """Found by a review: resent under the other person's identifiers once its idempotency key was
    purged, a message landed on two profiles; merged, it counted twice (and the embedded store's
    history kept one copy), and once the merge no longer replayed the larger profile's history, no
    later merge took the second count out. The merge counts it once, as the larger profile does."""
    at = clock.now() - timedelta(days=60)
    order = event("order_completed", email="ann@example.com", at=at, message_id="m")
    ann = await _customer(store, [("email", "ann@example.com")], "page_view", "email_open")
    await ingest_events(store, [order], NO_AUTO)
    await purge_keys(store, ["m"])  # as CDP_IDEMPOTENCY_TTL_DAYS after receipt does
    resent = replace(order, identifiers=[RawIdentifier("email", "bob@example.com")])
    [outcome] = await ingest_events(store, [resent], NO_AUTO)
    assert outcome.status is EventStatus.ACCEPTED and outcome.profile_id != ann.id  # Bob's history did not hold it
    assert outcome.profile_id is not None

    _, merged = await merging.merge_profiles(store, ann.id, [outcome.profile_id], reason="r", actor="t", policy=POLICY)

    assert (merged.stats.events_total, merged.stats.orders) == (3, 1)
    assert [i.message_id for i in merged.recent].count("m") == 1


async def test_merged_ids_and_their_identifiers_resolve_to_the_survivor(store: ProfileStore) -> None:
    web, shop = await _two_duplicates(store)
    await merging.merge_profiles(store, web.id, [shop.id], reason="dup", actor="t", policy=POLICY)
    assert (await profile_reads.get_profile(store, shop.id)).id == web.id  # type: ignore[union-attr]
    by_phone = await profile_reads.get_profile_by_identifier(store, "phone", "+33 6 12 34 56 78")
    assert by_phone is not None and by_phone.id == web.id
    tomb = await store.get_profile(shop.id)
    assert tomb is not None and tomb.merged_into == web.id
    assert (tomb.first_name, tomb.identifiers, tomb.recent) == (None, [], [])  # no personal data left behind
    [outcome] = await ingest_events(store, [event("email_open", identifiers=[("loyaltyId", "L1")])])
    assert outcome.profile_id == web.id


async def test_merging_into_a_tombstone_follows_it(store: ProfileStore) -> None:
    web, shop = await _two_duplicates(store)
    third = await _customer(store, [("deviceId", "d9")], "page_view")
    await merging.merge_profiles(store, web.id, [shop.id], reason="dup", actor="t", policy=POLICY)
    _, merged = await merging.merge_profiles(store, shop.id, [third.id], reason="dup", actor="t", policy=POLICY)
    assert merged.id == web.id and merged.stats.events_total == 7


@pytest.mark.parametrize(
    ("survivor", "merged", "error", "field"),
    [
        pytest.param("web", ["web"], InvalidInput, "mergedIds[0]", id="itself"),
        pytest.param("web", ["nope"], NotFound, "mergedIds[0]", id="unknown-merged"),
        pytest.param("nope", ["web"], NotFound, "survivorId", id="unknown-survivor"),
        pytest.param("web", [], InvalidInput, "mergedIds", id="nothing-to-merge"),
    ],
)
async def test_bad_merges_are_clear_errors_and_write_nothing(
    store: ProfileStore, survivor: str, merged: list[str], error: type[Exception], field: str
) -> None:
    web, shop = await _two_duplicates(store)
    ids = {"web": web.id, "shop": shop.id}
    with pytest.raises(error) as raised:
        await merging.merge_profiles(
            store, ids.get(survivor, survivor), [ids.get(m, m) for m in merged], reason="r", actor="t", policy=POLICY
        )
    assert raised.value.field == field  # type: ignore[attr-defined]
    assert await store.get_profile(web.id) == web and await store.get_profile(shop.id) == shop
    assert await merging.merge_history(store, web.id) == []


async def test_merge_then_unmerge_gives_back_the_same_profiles(store: ProfileStore) -> None:
    web, shop = await _two_duplicates(store)
    histories = {p.id: sorted(await _history(store, p.id)) for p in (web, shop)}
    record, _ = await merging.merge_profiles(store, web.id, [shop.id], reason="oops", actor="t", policy=POLICY)
    undone, restored = await merging.unmerge_profile(store, record.id, actor="steward")
    assert undone.status == "UNMERGED" and undone.unmerged_by == "steward"
    assert [p.id for p in restored] == [web.id, shop.id]
    for before in (web, shop):
        after = await store.get_profile(before.id)
        assert _comparable(after) == _comparable(before)
        assert sorted(await _history(store, before.id)) == histories[before.id]
    assert (await profile_reads.get_profile_by_identifier(store, "phone", "+33612345678")).id == shop.id  # type: ignore[union-attr]
    kinds = [(r.id, r.status) for r in await merging.merge_history(store, shop.id)]
    assert kinds == [(record.id, "UNMERGED")]


async def test_unmerge_routes_what_arrived_after_the_merge_by_its_identifiers(store: ProfileStore) -> None:
    web, shop = await _two_duplicates(store)
    record, _ = await merging.merge_profiles(store, web.id, [shop.id], reason="oops", actor="t", policy=POLICY)
    later = [
        event("order_completed", identifiers=[("loyaltyId", "L1"), ("deviceId", "pos-7")], message_id="after-shop"),
        event("page_view", identifiers=[("email", "emma@example.com")], message_id="after-web"),
    ]
    await ingest_events(store, later)
    _, [survivor, restored] = await merging.unmerge_profile(store, record.id, actor="t")
    assert "after-shop" in await _history(store, shop.id) and "after-web" in await _history(store, web.id)
    assert (restored.stats.orders, survivor.stats.orders) == (2, 1)
    assert (restored.stats.events_total, survivor.stats.events_total) == (4, 4)
    device = await profile_reads.get_profile_by_identifier(store, "deviceId", "pos-7")
    assert device is not None and device.id == shop.id  # the new identifier followed its event


async def test_unmerge_is_refused_twice_and_after_a_later_merge_of_the_survivor(store: ProfileStore) -> None:
    web, shop = await _two_duplicates(store)
    third = await _customer(store, [("customerId", "C3")], "page_view")
    record, _ = await merging.merge_profiles(store, web.id, [shop.id], reason="r", actor="t", policy=POLICY)
    later, _ = await merging.merge_profiles(store, third.id, [web.id], reason="r", actor="t", policy=POLICY)
    with pytest.raises(Conflict, match=later.id):
        await merging.unmerge_profile(store, record.id, actor="t")
    await merging.unmerge_profile(store, later.id, actor="t")
    await merging.unmerge_profile(store, record.id, actor="t")
    with pytest.raises(Conflict, match="already undone"):
        await merging.unmerge_profile(store, record.id, actor="t")
    with pytest.raises(NotFound):
        await merging.unmerge_profile(store, "mrg_nope", actor="t")
    assert _comparable(await store.get_profile(shop.id)) == _comparable(shop)


async def test_an_event_naming_two_profiles_merges_them(store: ProfileStore) -> None:
    web, shop = await _two_duplicates(store)
    [outcome] = await ingest_events(
        store, [event("order_completed", identifiers=[("email", "emma@example.com"), ("phone", "+33612345678")])]
    )
    assert outcome.profile_id == web.id  # email is stronger than phone: its profile survives
    merged = await store.get_profile(web.id)
    assert merged is not None and merged.stats.orders == 3 and merged.stats.events_total == 7
    [record] = await merging.merge_history(store, shop.id)
    assert record.automatic and record.actor == "system" and record.merged_ids == [shop.id]


async def test_protection_refuses_a_merge_past_the_identifier_limit_and_records_why(store: ProfileStore) -> None:
    first = await _customer(store, [("customerId", "C1"), ("email", "emma@example.com")], "page_view")
    second = await _customer(store, [("customerId", "C2"), ("phone", "+33612345678")], "page_view")
    [outcome] = await ingest_events(
        store,
        [
            event(
                "order_completed",
                identifiers=[("email", "emma@example.com"), ("phone", "+33612345678")],
                message_id="m-x",
            )
        ],
    )
    assert outcome.status is EventStatus.ACCEPTED and outcome.profile_id == first.id  # email is the stronger
    assert await store.count_profiles() == 2
    [refusal] = await merging.merge_refusals(store, first.id)
    assert refusal.reason == "the merged profile would hold 2 customerId identifiers (limit 1)"
    assert refusal.message_id == "m-x" and set(refusal.profile_ids) == {first.id, second.id}


async def test_a_profile_a_steward_took_past_a_limit_still_joins_a_visitor_who_adds_nothing_of_that_type(
    store: ProfileStore,
) -> None:
    """Found by an audit: once a steward merged two customerIds (the steward decides), every automatic
    merge into that customer was refused, counting its two customerIds, even an anonymous visitor's
    profile holding none: the customer's own sessions never joined it again."""
    old = await _customer(store, [("customerId", "OLD-7")], "page_view")
    new = await _customer(store, [("customerId", "NEW-7")], "page_view")
    await merging.merge_profiles(store, new.id, [old.id], reason="renumbered", actor="steward", policy=IdentityPolicy())
    visitor = await _customer(store, [("anonymousId", "sess-1")], "product_view")
    identify = event("identify", identifiers=[("anonymousId", "sess-1"), ("customerId", "NEW-7")], message_id="m-s")
    [outcome] = await ingest_events(store, [identify])
    assert outcome.status is EventStatus.ACCEPTED and outcome.profile_id == new.id
    assert (await store.get_profile(visitor.id)).merged_into == new.id  # type: ignore[union-attr]
    assert await merging.merge_refusals(store, new.id) == []
    # A third customerId is still refused: it would take the profile past what it holds.
    third = await _customer(store, [("customerId", "C3"), ("anonymousId", "sess-3")], "page_view")
    naming = [("anonymousId", "sess-3"), ("customerId", "NEW-7")]
    await ingest_events(store, [event("page_view", identifiers=naming, message_id="m-3")])
    assert (await store.get_profile(third.id)).merged_into is None  # type: ignore[union-attr]
    [refusal] = await merging.merge_refusals(store, new.id)
    assert refusal.reason == "the merged profile would hold 3 customerId identifiers (limit 1)"


async def test_a_write_naming_more_identifiers_of_a_type_than_a_profile_holds_is_refused(store: ProfileStore) -> None:
    """Two customerIds in one event (or upsert) are two customers: landed on either profile, or on a
    new one holding both, it would give one customer's order to the other. Nothing is written."""
    first = await _customer(store, [("customerId", "C1")], "page_view")
    await _customer(store, [("customerId", "C2")], "page_view")
    both = [("customerId", "C2"), ("customerId", "C1")]
    [known, new] = await ingest_events(
        store,
        [
            event("order_completed", identifiers=both, message_id="m-x"),
            event("order_completed", identifiers=[("customerId", "C3"), ("customerId", "C4")], message_id="m-y"),
        ],
    )
    for outcome in (known, new):
        assert outcome.status is EventStatus.REJECTED and outcome.field == f"events[{outcome is new:d}].identifiers"
        assert "2 customerId identifiers (limit 1)" in (outcome.reason or "")
    assert await store.count_profiles() == 2
    assert await profile_reads.get_profile_by_identifier(store, "customerId", "C3") is None
    assert await merging.merge_refusals(store, first.id) == []
    with pytest.raises(InvalidInput, match="2 customerId identifiers") as refused:
        await profiles.upsert_profile(store, [RawIdentifier("customerId", "C5"), RawIdentifier("customerId", "C6")], {})
    assert refused.value.field == "identifiers"
    assert await store.count_profiles() == 2


async def test_a_stronger_identifier_past_the_profile_limit_is_another_person(store: ProfileStore) -> None:
    """A family mailbox: customer C2 signs in with the email of customer C1's profile. C1's profile
    may hold one customerId, and C2 is stronger than the email that linked the event to it: the event
    is C2's, on a profile of C2's own without C1's email (as when their two profiles' merge is
    refused). Before, it landed on C1's profile, with C2 added to it or, later, without it."""
    first = await _customer(store, [("customerId", "C1"), ("email", "emma@example.com")], "page_view")
    carried = [("customerId", "C2"), ("email", "emma@example.com"), ("phone", "+33612345678")]
    [outcome] = await ingest_events(store, [event("order_completed", identifiers=carried, message_id="m-x")])
    assert outcome.status is EventStatus.ACCEPTED and outcome.profile_id != first.id
    theirs = await store.get_profile(outcome.profile_id or "")
    assert theirs is not None and theirs.stats.orders == 1
    assert {(r.type, r.value) for r in theirs.identifiers} == {("customerId", "C2"), ("phone", "+33612345678")}
    mine = await store.get_profile(first.id)
    assert mine is not None and mine.stats.orders == 0 and len(mine.identifiers) == 2
    [refusal] = await merging.merge_refusals(store, first.id)
    assert refusal.reason == "the profile would hold 2 customerId identifiers (limit 1)"
    assert refusal.message_id == "m-x" and refusal.profile_ids == [first.id, theirs.id]
    [order] = await store.list_interactions(theirs.id, before=None, where=InteractionFilter(), limit=10)
    assert "email:emma@example.com" not in order.identifiers and "customerId:C2" in order.identifiers
    # The same through an upsert.
    await profiles.upsert_profile(
        store, [RawIdentifier("email", "emma@example.com"), RawIdentifier("customerId", "C3")], {"first_name": "Cy"}
    )
    third = await profile_reads.get_profile_by_identifier(store, "customerId", "C3")
    assert third is not None and third.id not in {first.id, theirs.id} and third.first_name == "Cy"
    assert (await store.get_profile(first.id)).first_name is None  # type: ignore[union-attr]


async def test_a_weaker_identifier_past_the_profile_limit_stays_nobodys_and_the_event_lands_without_it(
    store: ProfileStore,
) -> None:
    """Segment Unify's rule: a profile at its limit takes no more values of that type, and the event
    still resolves to it when what linked it there is as strong: a sixth email with C1's customerId."""
    emails = [("email", f"e{n}@example.com") for n in range(5)]
    first = await _customer(store, [("customerId", "C1"), *emails], "page_view")
    carried = [("customerId", "C1"), ("email", "e5@example.com"), ("phone", "+33612345678")]
    [outcome] = await ingest_events(store, [event("order_completed", identifiers=carried, message_id="m-x")])
    assert outcome.status is EventStatus.ACCEPTED and outcome.profile_id == first.id
    profile = await store.get_profile(first.id)
    assert profile is not None and profile.stats.orders == 1
    held = {(r.type, r.value) for r in profile.identifiers}
    assert ("email", "e5@example.com") not in held and ("phone", "+33612345678") in held  # its type had room
    assert await profile_reads.get_profile_by_identifier(store, "email", "e5@example.com") is None
    [refusal] = await merging.merge_refusals(store, first.id)
    assert refusal.reason == "the profile would hold 6 email identifiers (limit 5)"
    assert refusal.message_id == "m-x" and refusal.profile_ids == [first.id]
    items = await store.list_interactions(first.id, before=None, where=InteractionFilter(), limit=10)
    [order] = [i for i in items if i.message_id == "m-x"]
    assert "email:e5@example.com" not in order.identifiers and "customerId:C1" in order.identifiers
    [alone] = await ingest_events(store, [event("page_view", identifiers=[("email", "e5@example.com")])])
    assert alone.status is EventStatus.ACCEPTED and alone.profile_id != first.id
    # In one batch, on the profile its first event made.
    zoe = [("customerId", "C9"), *[("email", f"z{n}@example.com") for n in range(5)]]
    made, later = await ingest_events(
        store,
        [event("page_view", identifiers=zoe), event("page_view", identifiers=[zoe[0], ("email", "z5@example.com")])],
    )
    assert later.status is EventStatus.ACCEPTED and later.profile_id == made.profile_id
    assert await profile_reads.get_profile_by_identifier(store, "email", "z5@example.com") is None


async def test_a_profile_holds_a_bounded_number_of_identifiers_of_all_types_together(store: ProfileStore) -> None:
    """Found by an audit: the types without a limit (anonymousId, custom ones) grew without end, 20 an
    event, until the profile was too large to write (16 MB on MongoDB: every later event failed)."""
    few = IngestionPolicy(identity=IdentityPolicy(protection=MergeProtection(max_identifiers=4)))
    sessions = [("anonymousId", f"s{n}") for n in range(3)]
    first = await _customer(store, [("customerId", "C1"), *sessions], "page_view")
    carried = [("customerId", "C1"), ("anonymousId", "s3"), ("anonymousId", "s4")]
    [outcome] = await ingest_events(store, [event("order_completed", identifiers=carried, message_id="m-x")], few)
    assert outcome.status is EventStatus.ACCEPTED and outcome.profile_id == first.id  # it lands, without them
    profile = await store.get_profile(first.id)
    assert profile is not None and profile.stats.orders == 1 and len(profile.identifiers) == 4
    assert await profile_reads.get_profile_by_identifier(store, "anonymousId", "s3") is None
    [refusal] = await merging.merge_refusals(store, first.id)
    assert refusal.reason == "the profile would hold 6 identifiers (limit 4)"

    # Nor does an event that links the profile with another make one past it.
    other = await _customer(store, [("anonymousId", "t0"), ("anonymousId", "t1")], "page_view")
    linking = [("anonymousId", "s0"), ("anonymousId", "t0")]
    [linked] = await ingest_events(store, [event("page_view", identifiers=linking, message_id="m-y")], few)
    assert linked.status is EventStatus.ACCEPTED
    assert {p.id for p in [first, other] if (await store.get_profile(p.id)).merged_into is None} == {  # type: ignore[union-attr]
        first.id,
        other.id,
    }
    reasons = {r.reason for r in await merging.merge_refusals(store, first.id)}
    assert "the merged profile would hold 6 identifiers (limit 4)" in reasons

    # A stronger new identifier past the bound lands there too, without it: found by an audit, it
    # went to a new profile of its own (a type's limit says "another person"; the size bound does
    # not), and the person's identify landed there, their name off their own profile.
    identify = event(
        "identify", identifiers=[("anonymousId", "s0"), ("email", "nine@example.com")], message_id="m-z",
        properties={"firstName": "Nine"},
    )  # fmt: skip
    [named] = await ingest_events(store, [identify], few)
    assert named.status is EventStatus.ACCEPTED and named.profile_id == first.id
    assert (await store.get_profile(first.id)).first_name == "Nine"  # type: ignore[union-attr]
    assert await profile_reads.get_profile_by_identifier(store, "email", "nine@example.com") is None
    # Past a type's limit as well, the limit decides: another customer, through the full profile's
    # session, is theirs (the first version of the change above landed Bob on this profile). No given
    # name: one far from Nine's would say so first (tests/integration/test_households.py).
    bob = event(
        "identify", identifiers=[("anonymousId", "s1"), ("customerId", "C9")], message_id="m-b",
        properties={"lastName": "Bob"},
    )  # fmt: skip
    [theirs] = await ingest_events(store, [bob], few)
    assert theirs.status is EventStatus.ACCEPTED and theirs.profile_id != first.id
    split = [r for r in await merging.merge_refusals(store, first.id) if r.message_id == "m-b"]
    assert split[0].reason == "the profile would hold 2 customerId identifiers (limit 1); 5 identifiers (limit 4)"
    assert (await store.get_profile(first.id)).first_name == "Nine"  # type: ignore[union-attr]
    assert (await profile_reads.get_profile_by_identifier(store, "customerId", "C9")).last_name == "Bob"  # type: ignore[union-attr]


async def test_blocklisted_values_never_link_and_alone_are_rejected(store: ProfileStore) -> None:
    a = await _customer(store, [("email", "emma@example.com")], "page_view")
    [linked] = await ingest_events(
        store, [event("page_view", identifiers=[("email", "test@test.com"), ("deviceId", "d1")])]
    )
    [other] = await ingest_events(
        store, [event("page_view", identifiers=[("email", "test@test.com"), ("deviceId", "d2")])]
    )
    assert linked.profile_id != other.profile_id and a.id not in {linked.profile_id, other.profile_id}
    [alone] = await ingest_events(store, [event("page_view", identifiers=[("email", "TEST@test.com")])])
    assert alone.status is EventStatus.REJECTED and alone.reason is not None and "blocklist" in alone.reason


async def test_concurrent_merges_touching_one_profile_lose_nothing(store: ProfileStore) -> None:
    hub = await _customer(store, [("customerId", "HUB")], "order_completed")
    spokes = [await _customer(store, [("deviceId", f"d{n}")], "page_view", "email_open") for n in range(4)]
    results = await asyncio.gather(
        *(merging.merge_profiles(store, hub.id, [s.id], reason="r", actor="t", policy=POLICY) for s in spokes)
    )
    assert len({record.id for record, _ in results}) == 4
    final = await store.get_profile(hub.id)
    assert final is not None and final.stats.events_total == 9 and len(final.identifiers) == 5
    assert len(await _history(store, hub.id)) == 9


async def test_unmerge_after_a_re_merge_sends_each_event_to_the_person_it_carried(store: ProfileStore) -> None:
    web, shop = await _two_duplicates(store)
    first, _ = await merging.merge_profiles(store, web.id, [shop.id], reason="oops", actor="t", policy=POLICY)
    await ingest_events(store, [event("order_completed", identifiers=[("phone", "+33612345678")], message_id="q")])
    await merging.unmerge_profile(store, first.id, actor="t")
    assert "q" in await _history(store, shop.id)
    again, _ = await merging.merge_profiles(store, web.id, [shop.id], reason="again", actor="t", policy=POLICY)
    _, [survivor, restored] = await merging.unmerge_profile(store, again.id, actor="t")
    assert "q" in await _history(store, shop.id) and "q" not in await _history(store, web.id)
    assert (restored.stats.orders, survivor.stats.orders) == (2, 1)
    assert (restored.stats.events_total, survivor.stats.events_total) == (4, 3)


async def test_the_same_refusal_is_recorded_once_however_many_events_repeat_it(store: ProfileStore) -> None:
    """A family mailbox: each event of customer C2 names the email of C1's profile. One refusal was
    recorded per event, and both profiles' mergeRefusals grew without bound."""
    first = await _customer(store, [("customerId", "C1"), ("email", "family@example.com")], "page_view")
    both = [("customerId", "C2"), ("email", "family@example.com")]
    outcomes = await ingest_events(store, [event("page_view", identifiers=both, minutes=n) for n in range(6)])
    second = {o.profile_id for o in outcomes}
    assert len(second) == 1 and first.id not in second and {o.status for o in outcomes} == {EventStatus.ACCEPTED}
    refusals = await merging.merge_refusals(store, first.id)
    assert sorted(r.reason for r in refusals) == [
        "the merged profile would hold 2 customerId identifiers (limit 1)",  # its later events
        "the profile would hold 2 customerId identifiers (limit 1)",  # its first, which made its profile
    ]
    assert [r.id for r in await merging.merge_refusals(store, second.pop())] == [r.id for r in refusals]


async def test_a_merge_of_more_profiles_than_a_person_has_is_refused_and_nothing_is_merged(store: ProfileStore) -> None:
    """Found by an audit: 999 profiles merged in one call held the writer, then made the person's
    erasure take 30 s."""
    survivor = await _customer(store, [("email", "s@example.com")], "page_view")
    others = [(await _customer(store, [("deviceId", f"d{n}")], "page_view")).id for n in range(MAX_MERGED_AT_ONCE + 1)]
    with pytest.raises(LimitExceeded) as refused:
        await merging.merge_profiles(store, survivor.id, others, reason="same", actor="t", policy=POLICY)
    assert refused.value.field == "mergedIds"
    assert await merging.merge_history(store, survivor.id) == []
    assert await store.count_profiles() == MAX_MERGED_AT_ONCE + 2


async def test_a_blocklist_set_as_people_write_values_matches_the_identifiers(
    store: ProfileStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Found by an audit: `CDP_MERGE_BLOCKLIST='["Shared@Family.com","+33 6 00 00 00 01"]'` was compared as
    written with normalised identifiers, matched nothing, and the family mailbox merged two people."""
    monkeypatch.setenv("CDP_MERGE_BLOCKLIST", '["Shared@Family.com", "+33 6 00 00 00 01"]')
    policy = IngestionPolicy(identity=Settings().identity_policy())
    a = await _customer(store, [("customerId", "A"), ("email", "ann@example.com")], "page_view")
    [linking] = await ingest_events(
        store, [event("page_view", identifiers=[("email", "Shared@Family.com"), ("email", "ann@example.com")])], policy
    )
    assert linking.status is EventStatus.ACCEPTED and linking.profile_id == a.id and not linking.merged
    for blocked in ("shared@family.com", "+33600000001"):
        type_ = "phone" if blocked.startswith("+") else "email"
        [alone] = await ingest_events(store, [event("page_view", identifiers=[(type_, blocked)])], policy)
        assert alone.status is EventStatus.REJECTED and "blocklist" in (alone.reason or ""), alone
    assert await profile_reads.get_profile_by_identifier(store, "email", "shared@family.com") is None


def test_a_blocklisted_value_no_identifier_can_have_is_kept_as_written(monkeypatch: pytest.MonkeyPatch) -> None:
    """A list copied from the old default (+10000000000, no phone number) still starts the server."""
    monkeypatch.setenv("CDP_MERGE_BLOCKLIST", '["+10000000000", "Shared@Family.com"]')
    assert Settings().merge_blocklist == ["+10000000000", "shared@family.com"]


async def test_an_old_id_finds_its_person_however_many_merges_followed(store: ProfileStore) -> None:
    """Found by an audit: 19 profiles merged one into the next left the first three ids unfound after
    16 hops: `profile`, an export and an erasure by an old id said NOT_FOUND, though the data was there."""
    chain = [
        (await profiles.upsert_profile(store, [RawIdentifier("email", f"p{n}@example.com")], {"first_name": "Ada"})).id
        for n in range(20)
    ]
    for previous, survivor in itertools.pairwise(chain):
        await merging.merge_profiles(store, survivor, [previous], reason="same person", actor="t", policy=POLICY)
    found = await profile_reads.get_profile(store, chain[0])
    assert found is not None and found.id == chain[-1]
    assert (await profile_reads.get_profiles(store, chain[:1]))[chain[0]] == found
    erasure = await privacy.delete_profile(store, chain[0], actor="dpo")
    assert erasure.profiles == 20 and await store.count_profiles() == 0
