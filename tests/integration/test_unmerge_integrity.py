"""Unmerge gives each person exactly their own data (issue 15): the order merges are undone in,
the consents and names their events decided while merged, their consent history; through the
services, on every storage backend."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest

from app.domain import clock
from app.domain.errors import Conflict
from app.domain.events import RawIdentifier
from app.domain.merge_protection import MergeProtection
from app.domain.privacy import DEFAULT_PURPOSES
from app.domain.profile import Profile
from app.services import merging, privacy, profile_reads, profiles
from app.services.identity_policy import IdentityPolicy
from app.services.ingestion import EventStatus, IngestionPolicy, ingest_events
from app.services.ports import ProfileStore
from tests.builders import event, stored_state

POLICY = IdentityPolicy()
NO_AUTO = IngestionPolicy(identity=IdentityPolicy(protection=MergeProtection(automatic_merges=False)))
PEOPLE = {
    "pat": ("email", "pat@example.com"),
    "quin": ("phone", "+33611111111"),
    "rob": ("customerId", "c-rob"),
    "dan": ("email", "dan@example.com"),
}


async def _ingest(store: ProfileStore, *events: Any) -> None:
    outcomes = await ingest_events(store, list(events), NO_AUTO)
    assert {o.status for o in outcomes} == {EventStatus.ACCEPTED}


async def _person(store: ProfileStore, name: str, *, granted: bool) -> Profile:
    """A person named by an identify event, with an email_marketing decision of their own."""
    ids = [PEOPLE[name]]
    await _ingest(
        store,
        event("identify", identifiers=ids, message_id=f"{name}-named", properties={"firstName": name.title()}),
        event(
            "consent_update",
            identifiers=ids,
            minutes=1,
            message_id=f"{name}-consent",
            properties={"purpose": "email_marketing", "granted": granted},
        ),
    )
    profile = await profile_reads.get_profile_by_identifier(store, *PEOPLE[name])
    assert profile is not None and profile.first_name == name.title()
    return profile


def _live(name: str, type_: str, message_id: str, properties: dict[str, Any]) -> Any:
    """An event of `name`'s, timestamped now: after any merge made before it."""
    return event(type_, identifiers=[PEOPLE[name]], at=clock.now(), message_id=message_id, properties=properties)


async def _decisions(store: ProfileStore, profile_id: str) -> list[str]:
    profile = await store.get_profile(profile_id)
    assert profile is not None
    return sorted((d.message_id or "direct") for d in await privacy.consent_history(store, profile))


async def _everything(store: ProfileStore, ids: list[str]) -> dict[str, Any]:
    return await stored_state(store, ids, [f"{t}:{v}" for t, v in PEOPLE.values()])


def _own(profile: Profile | None) -> tuple[str | None, dict[str, bool]]:
    assert profile is not None and profile.merged_into is None
    return profile.first_name, {purpose: c.granted for purpose, c in profile.consents.items()}


async def test_an_earlier_merge_waits_for_a_later_merge_into_the_same_profile_and_nothing_is_written(
    store: ProfileStore,
) -> None:
    pat = await _person(store, "pat", granted=False)
    quin = await _person(store, "quin", granted=True)
    rob = await _person(store, "rob", granted=False)
    first, _ = await merging.merge_profiles(store, pat.id, [quin.id], reason="r", actor="t", policy=POLICY)
    second, _ = await merging.merge_profiles(store, pat.id, [rob.id], reason="r", actor="t", policy=POLICY)
    ids = [pat.id, quin.id, rob.id]
    before = await _everything(store, ids)

    with pytest.raises(Conflict) as refused:
        await merging.unmerge_profile(store, first.id, actor="t")
    assert refused.value.field == "mergeId"
    assert refused.value.message == (
        f"profile {pat.id} took in later merges that still stand ({second.id}, newest first): undo that merge first"
    )
    assert await _everything(store, ids) == before

    await merging.unmerge_profile(store, second.id, actor="t")
    await merging.unmerge_profile(store, first.id, actor="t")
    assert _own(await store.get_profile(pat.id)) == ("Pat", {"email_marketing": False})
    assert _own(await store.get_profile(quin.id)) == ("Quin", {"email_marketing": True})
    assert _own(await store.get_profile(rob.id)) == ("Rob", {"email_marketing": False})


async def test_the_refusal_names_every_later_merge_still_standing_newest_first(store: ProfileStore) -> None:
    pat, quin, rob, dan = [await _person(store, name, granted=False) for name in ("pat", "quin", "rob", "dan")]
    merges = [
        (await merging.merge_profiles(store, pat.id, [other.id], reason="r", actor="t", policy=POLICY))[0]
        for other in (quin, rob, dan)
    ]
    first, second, third = (m.id for m in merges)
    with pytest.raises(Conflict, match=f"\\({third}, {second}, newest first\\): undo them first"):
        await merging.unmerge_profile(store, first, actor="t")
    with pytest.raises(Conflict, match=f"\\({third}, newest first\\): undo that merge first"):
        await merging.unmerge_profile(store, second, actor="t")
    for merge_id in (third, second, first):
        await merging.unmerge_profile(store, merge_id, actor="t")
    for person, name in ((pat, "Pat"), (quin, "Quin"), (rob, "Rob"), (dan, "Dan")):
        assert _own(await store.get_profile(person.id)) == (name, {"email_marketing": False})


async def test_a_consent_a_merged_person_sent_while_merged_goes_to_them_alone(store: ProfileStore) -> None:
    pat = await _person(store, "pat", granted=False)
    quin = await _person(store, "quin", granted=False)
    record, _ = await merging.merge_profiles(store, pat.id, [quin.id], reason="r", actor="t", policy=POLICY)
    grant = {"purpose": "email_marketing", "granted": True}
    await _ingest(store, _live("quin", "consent_update", "quin-grant", grant))
    merged = await store.get_profile(pat.id)
    assert merged is not None and merged.consents["email_marketing"].granted  # Quin's decision, on the merged one
    assert "quin-grant" in await _decisions(store, pat.id)

    _, [survivor, restored] = await merging.unmerge_profile(store, record.id, actor="t")
    assert _own(survivor) == ("Pat", {"email_marketing": False})
    assert _own(restored) == ("Quin", {"email_marketing": True})
    assert await _decisions(store, pat.id) == ["pat-consent"]
    assert await _decisions(store, quin.id) == ["quin-consent", "quin-grant"]
    exported = await privacy.export_profile(store, pat.id)
    assert [d["messageId"] for d in exported["consentHistory"]] == ["pat-consent"]
    assert exported["profile"]["consents"]["email_marketing"]["granted"] is False


async def test_a_consent_given_directly_after_the_merge_stays_with_the_id_it_named(store: ProfileStore) -> None:
    """Given through the survivor's id it stays with the survivor; through the merged-away one it was
    that person's (an unsubscribe by their own id), and goes back with them: kept by the survivor, the
    person who opted out was back to receiving marketing once the merge was undone."""
    pat = await _person(store, "pat", granted=True)
    quin = await _person(store, "quin", granted=False)
    record, _ = await merging.merge_profiles(store, pat.id, [quin.id], reason="r", actor="t", policy=POLICY)
    await privacy.set_consent(store, quin.id, "email_marketing", False, "preference centre", purposes=DEFAULT_PURPOSES)
    await privacy.set_consent(store, pat.id, "analytics", True, "cookie banner", purposes=DEFAULT_PURPOSES)
    # Then Quin's own event grants email_marketing, over the decision made on the merged profile.
    grant = {"purpose": "email_marketing", "granted": True}
    await _ingest(
        store,
        event(
            "consent_update",
            identifiers=[PEOPLE["quin"]],
            at=clock.now() + timedelta(seconds=1),
            message_id="quin-grant",
            properties=grant,
        ),
    )

    _, [survivor, restored] = await merging.unmerge_profile(store, record.id, actor="t")
    assert _own(survivor) == ("Pat", {"email_marketing": True, "analytics": True})
    assert _own(restored) == ("Quin", {"email_marketing": True})  # its own later event over the decision
    assert await _decisions(store, pat.id) == ["direct", "pat-consent"]
    assert await _decisions(store, quin.id) == ["direct", "quin-consent", "quin-grant"]


async def test_a_name_a_merged_person_sent_while_merged_goes_to_them_alone(store: ProfileStore) -> None:
    pat = await _person(store, "pat", granted=False)
    quin = await _person(store, "quin", granted=False)
    record, _ = await merging.merge_profiles(store, pat.id, [quin.id], reason="r", actor="t", policy=POLICY)
    renamed = {"firstName": "Quincy", "traits": {"tier": "gold"}, "address": {"city": "Lyon"}}
    await _ingest(store, _live("quin", "identify", "quin-renamed", renamed))
    merged = await store.get_profile(pat.id)
    assert merged is not None and merged.first_name == "Quincy"

    _, [survivor, restored] = await merging.unmerge_profile(store, record.id, actor="t")
    assert (survivor.first_name, survivor.traits, survivor.addresses) == ("Pat", {}, [])
    assert (restored.first_name, restored.traits) == ("Quincy", {"tier": "gold"})
    assert [a.city for a in restored.addresses] == ["Lyon"]


async def test_a_name_set_directly_after_the_merge_stays_with_the_survivor(store: ProfileStore) -> None:
    pat = await _person(store, "pat", granted=False)
    quin = await _person(store, "quin", granted=False)
    record, _ = await merging.merge_profiles(store, pat.id, [quin.id], reason="r", actor="t", policy=POLICY)
    await profiles.upsert_profile(store, [RawIdentifier(*PEOPLE["pat"])], {"last_name": "Martin"}, policy=POLICY)
    await _ingest(store, _live("pat", "identify", "pat-renamed", {"firstName": "Patrick"}))

    _, [survivor, restored] = await merging.unmerge_profile(store, record.id, actor="t")
    assert (survivor.first_name, survivor.last_name) == ("Patrick", "Martin")
    assert (restored.first_name, restored.last_name) == ("Quin", None)


async def test_an_upsert_stays_over_an_earlier_event_dated_ahead_when_a_merge_is_undone(store: ProfileStore) -> None:
    """An event may be dated a few minutes ahead (a client's clock); an upsert after it states what is
    true now. Undoing an unrelated merge replays the profile's writes, newest value by time: the
    upsert's name was dated before the event's, and the event's came back."""
    pat_id = [PEOPLE["pat"]]
    ahead = clock.now() + timedelta(minutes=4)
    await _ingest(store, event("identify", identifiers=pat_id, at=ahead, properties={"firstName": "Eve"}))
    (pat,) = await profiles.upsert_profiles(store, [([RawIdentifier(*PEOPLE["pat"])], {"first_name": "Ava"})])
    assert isinstance(pat, Profile) and pat.first_name == "Ava"
    quin = await _person(store, "quin", granted=False)
    record, _ = await merging.merge_profiles(store, pat.id, [quin.id], reason="r", actor="t", policy=POLICY)

    _, [survivor, _restored] = await merging.unmerge_profile(store, record.id, actor="t")
    assert survivor.first_name == "Ava"


async def test_an_unmerge_names_every_merge_to_undo_first_newest_first(store: ProfileStore) -> None:
    """The survivor was given a later merge and then merged away itself: both are named, newest first,
    and nothing is written. Before, only the one that merged it away was; undoing it showed the other."""
    pat = await _person(store, "pat", granted=False)
    quin = await _person(store, "quin", granted=True)
    rob = await _person(store, "rob", granted=False)
    dan = await _person(store, "dan", granted=True)
    first, _ = await merging.merge_profiles(store, pat.id, [quin.id], reason="r", actor="t", policy=POLICY)
    later, _ = await merging.merge_profiles(store, pat.id, [rob.id], reason="r", actor="t", policy=POLICY)
    away, _ = await merging.merge_profiles(store, dan.id, [pat.id], reason="r", actor="t", policy=POLICY)
    ids = [pat.id, quin.id, rob.id, dan.id]
    before = await _everything(store, ids)

    with pytest.raises(Conflict) as refused:
        await merging.unmerge_profile(store, first.id, actor="t")
    assert refused.value.message == (
        f"profile {pat.id} was itself merged afterwards and took in later merges that still stand "
        f"({away.id}, {later.id}, newest first): undo them first"
    )
    assert await _everything(store, ids) == before
    for merge in (away, later, first):  # as named: each undoes
        await merging.unmerge_profile(store, merge.id, actor="t")
    assert _own(await store.get_profile(quin.id)) == ("Quin", {"email_marketing": True})


async def test_undoing_a_merge_twice_says_when_it_was_undone(store: ProfileStore) -> None:
    pat = await _person(store, "pat", granted=False)
    quin = await _person(store, "quin", granted=True)
    merge, _ = await merging.merge_profiles(store, pat.id, [quin.id], reason="r", actor="t", policy=POLICY)
    undone, _ = await merging.unmerge_profile(store, merge.id, actor="t")
    with pytest.raises(Conflict) as refused:
        await merging.unmerge_profile(store, merge.id, actor="t")
    assert undone.unmerged_at is not None
    assert refused.value.message == f"merge {merge.id} was already undone at {clock.to_iso(undone.unmerged_at)}"


async def _history(store: ProfileStore, profile_id: str) -> list[str]:
    return sorted(i.message_id for i in await store.run_in_transaction(lambda tx: tx.history(profile_id)))


async def _keys(store: ProfileStore, profile_id: str) -> set[str]:
    profile = await store.get_profile(profile_id)
    assert profile is not None and profile.merged_into is None
    return profile.identifier_keys()


async def test_an_identifier_first_sent_while_merged_follows_the_person_who_sent_it(store: ProfileStore) -> None:
    """Quin, wrongly merged into Pat, names himself with a new email, stronger than the phone Pat has
    never had: undone, the event, its name and the email are Quin's, as if nobody had merged them (README:
    "Identifiers first seen after the merge follow their events"). They stayed with Pat before."""
    pat = await _person(store, "pat", granted=False)
    quin = await _person(store, "quin", granted=False)
    record, _ = await merging.merge_profiles(store, pat.id, [quin.id], reason="wrong", actor="t", policy=POLICY)
    named = event(
        "identify",
        identifiers=[PEOPLE["quin"], ("email", "quin@example.com")],
        at=clock.now(),  # after the name Quin gave before the merge
        message_id="quin-email",
        properties={"firstName": "Quentin"},
    )
    await _ingest(store, named, event("page_view", identifiers=[("email", "quin@example.com")], message_id="quin-view"))

    await merging.unmerge_profile(store, record.id, actor="t")
    assert "email:quin@example.com" in await _keys(store, quin.id)
    assert "email:quin@example.com" not in await _keys(store, pat.id)
    assert {"quin-email", "quin-view"} <= set(await _history(store, quin.id))
    assert not {"quin-email", "quin-view"} & set(await _history(store, pat.id))
    restored = await store.get_profile(quin.id)
    assert restored is not None and restored.first_name == "Quentin"
    survivor = await store.get_profile(pat.id)
    assert survivor is not None and survivor.first_name == "Pat"
    # A new event of that email lands on Quin.
    await _ingest(store, event("page_view", identifiers=[("email", "quin@example.com")], message_id="after"))
    assert "after" in await _history(store, quin.id)


async def test_an_identifier_a_new_one_brought_follows_them_and_is_erased_with_them(store: ProfileStore) -> None:
    """While merged, Quin's phone brings a new device, then the device alone sends an event: undone, both
    are Quin's; erasing Quin then leaves Pat nothing of his (before, Pat kept the device and its event,
    and the device's later events landed on Pat instead of being refused)."""
    pat = await _person(store, "pat", granted=False)
    quin = await _person(store, "quin", granted=False)
    record, _ = await merging.merge_profiles(store, pat.id, [quin.id], reason="wrong", actor="t", policy=POLICY)
    device = ("deviceId", "quin-phone-app")
    await _ingest(
        store,
        event("page_view", identifiers=[PEOPLE["quin"], device], message_id="both"),
        event("page_view", identifiers=[device], message_id="device-only", properties={"url": "/quin-private"}),
    )
    await merging.unmerge_profile(store, record.id, actor="t")
    assert "deviceId:quin-phone-app" in await _keys(store, quin.id)
    assert {"both", "device-only"} <= set(await _history(store, quin.id))

    await privacy.delete_profile(store, quin.id, actor="t")
    assert "deviceId:quin-phone-app" not in await _keys(store, pat.id)
    assert not {"both", "device-only"} & set(await _history(store, pat.id))
    refused = await ingest_events(store, [event("page_view", identifiers=[device], message_id="later")], NO_AUTO)
    assert refused[0].status is EventStatus.REJECTED


async def test_the_idempotency_key_of_an_event_sent_while_merged_follows_its_sender(store: ProfileStore) -> None:
    """Found by an audit of export and erasure: an event's idempotency key stayed with the profile it
    landed on when the merge was undone. Erasing Pat then deleted the key of Quin's order, whose resend
    counted it twice on Quin; erasing Quin left his message id in the store, under Pat."""
    pat = await _person(store, "pat", granted=False)
    quin = await _person(store, "quin", granted=False)
    record, _ = await merging.merge_profiles(store, pat.id, [quin.id], reason="wrong", actor="t", policy=POLICY)
    order = _live("quin", "order_completed", "quin-order", {"orderId": "o-1", "total": 40.0})
    await _ingest(store, order)
    await merging.unmerge_profile(store, record.id, actor="t")

    await privacy.delete_profile(store, pat.id, actor="t")
    resent = await ingest_events(store, [order], NO_AUTO)
    assert resent[0].status is EventStatus.DUPLICATE
    kept = await store.get_profile(quin.id)
    assert kept is not None and kept.stats.orders == 1
    await privacy.delete_profile(store, quin.id, actor="t")
    assert await store.run_in_transaction(lambda tx: tx.known_messages(["quin-order"])) == set()


async def test_a_refusal_given_through_the_survivors_id_while_merged_goes_with_both(store: ProfileStore) -> None:
    """Found by an audit of consent: while Quin was merged into Pat, looking Quin up by their email
    answered Pat's id, so Quin's unsubscribe went through it; undoing the merge left it with Pat, and
    Quin was opted in again, their history holding no trace of it. A refusal made through the
    survivor's id while merged is now both people's (a grant stays the survivor's)."""
    pat = await _person(store, "pat", granted=True)
    quin = await _person(store, "quin", granted=True)
    record, _ = await merging.merge_profiles(store, pat.id, [quin.id], reason="r", actor="t", policy=POLICY)
    await privacy.set_consent(store, pat.id, "email_marketing", False, "unsubscribe link", purposes=DEFAULT_PURPOSES)
    await privacy.set_consent(store, pat.id, "analytics", True, "cookie banner", purposes=DEFAULT_PURPOSES)

    _, [survivor, restored] = await merging.unmerge_profile(store, record.id, actor="t")
    assert _own(survivor) == ("Pat", {"email_marketing": False, "analytics": True})
    assert _own(restored) == ("Quin", {"email_marketing": False})
    assert await _decisions(store, quin.id) == ["direct", "quin-consent"]
