"""A consent decision holds through merges and unmerges: a profiling refusal keeps RFM and computed
traits away from the person whatever profile or snapshot they are rebuilt from, and a decision made
with setConsent is not undone by an event recorded earlier but dated a little ahead."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest

from app.domain import clock
from app.domain.events import RawIdentifier
from app.domain.privacy import DEFAULT_PURPOSES
from app.domain.profile import Profile
from app.domain.profile_change import ProfileChange
from app.services import merging, privacy, profile_reads, profiles
from app.services.identity_policy import IdentityPolicy
from app.services.ingestion import EventStatus, ingest_events
from app.services.ports import ProfileStore, StoreTransaction
from tests.builders import event

POLICY = IdentityPolicy()
RFM = {"recencyScore": 5, "frequencyScore": 4, "monetaryScore": 5, "segment": "Champions"}


async def _customer(store: ProfileStore, customer_id: str, *, profiled: bool) -> str:
    profile = await profiles.upsert_profile(store, [RawIdentifier("customerId", customer_id)], {"first_name": "Ann"})
    if profiled:  # as the traits job leaves it

        async def work(tx: StoreTransaction) -> None:
            await tx.update_profile(profile.id, ProfileChange(set={"rfm": RFM}))

        await store.run_in_transaction(work)
    return profile.id


async def _refuse_profiling(store: ProfileStore, profile_id: str) -> None:
    await privacy.set_consent(store, profile_id, "profiling", False, "preference centre", purposes=DEFAULT_PURPOSES)


async def test_a_merge_keeps_the_profiling_of_a_person_who_refused_it_away(store: ProfileStore) -> None:
    profiled = await _customer(store, "C-1", profiled=True)
    refusing = await _customer(store, "C-2", profiled=False)
    await _refuse_profiling(store, refusing)
    _, merged = await merging.merge_profiles(store, profiled, [refusing], reason="same", actor="t", policy=POLICY)
    assert merged.consents["profiling"].granted is False
    assert (merged.rfm, merged.computed) == (None, None)  # the survivor's scores were kept before


async def test_an_unmerge_does_not_bring_back_the_profiling_of_a_person_who_refused_it(store: ProfileStore) -> None:
    survivor = await _customer(store, "C-1", profiled=True)
    other = await _customer(store, "C-2", profiled=True)
    record, _ = await merging.merge_profiles(store, survivor, [other], reason="same", actor="t", policy=POLICY)
    await _refuse_profiling(store, survivor)  # cleared at once on the merged person
    _, restored = await merging.unmerge_profile(store, record.id, actor="t")
    back = {p.id: p for p in restored}[survivor]
    assert back.consents["profiling"].granted is False
    assert (back.rfm, back.computed) == (None, None)  # rebuilt from the snapshot, which held them


async def test_a_refusal_made_now_outlasts_a_grant_dated_a_little_ahead_through_a_merge(store: ProfileStore) -> None:
    ahead = clock.now() + timedelta(minutes=4)  # within the skew accepted from clients' clocks
    grant = event("consent_update", identifiers=[("customerId", "C-1")], at=ahead,
                  properties={"purpose": "personalisation", "granted": True})  # fmt: skip
    [landed] = await ingest_events(store, [grant])
    assert landed.status is EventStatus.ACCEPTED and landed.profile_id
    refused = await privacy.set_consent(
        store, landed.profile_id, "personalisation", False, "preference centre", purposes=DEFAULT_PURPOSES
    )
    assert refused.consents["personalisation"].granted is False
    other = await _customer(store, "C-9", profiled=False)
    _, merged = await merging.merge_profiles(store, landed.profile_id, [other], reason="same", actor="t", policy=POLICY)
    assert merged.consents["personalisation"].granted is False  # the replay gave the grant back before


async def test_a_refusal_sent_after_a_grant_dated_ahead_stands_live_and_through_a_merge(store: ProfileStore) -> None:
    """The sender's clock ran four minutes fast for the grant; the refusal, from a right clock, came
    after the grant arrived. Dated by its timestamp alone, the grant stayed the newer decision."""
    received = clock.now()
    grant = event("consent_update", identifiers=[("customerId", "C-1")], at=received + timedelta(minutes=4),
                  properties={"purpose": "email_marketing", "granted": True}, message_id="grant")  # fmt: skip
    refusal = event("consent_update", identifiers=[("customerId", "C-1")], at=received + timedelta(seconds=30),
                    properties={"purpose": "email_marketing", "granted": False}, message_id="refusal")  # fmt: skip
    [granted] = await ingest_events(store, [grant])
    [refused] = await ingest_events(store, [refusal])
    assert granted.status is refused.status is EventStatus.ACCEPTED and granted.profile_id == refused.profile_id
    person = granted.profile_id
    assert person is not None
    live = await store.get_profile(person)
    assert live is not None and live.consents["email_marketing"].granted is False
    history = await privacy.consent_history(store, live)
    assert [d.granted for d in history] == [False, True]  # the refusal the newest, the grant dated on arrival
    assert history[1].at <= clock.now()

    other = await _customer(store, "C-9", profiled=False)
    record, merged = await merging.merge_profiles(store, person, [other], reason="same", actor="t", policy=POLICY)
    assert merged.consents["email_marketing"].granted is False  # the replay reads the same dates
    _, restored = await merging.unmerge_profile(store, record.id, actor="t")
    assert {p.id: p for p in restored}[person].consents["email_marketing"].granted is False


@pytest.mark.parametrize("refusal_first", [True, False], ids=["refusal-first", "grant-first"])
async def test_of_two_decisions_at_one_instant_the_refusal_stands_however_they_are_replayed(
    store: ProfileStore, refusal_first: bool
) -> None:
    """A grant and a refusal (and an NPS 10 and 0) with one timestamp, in two batches: the later
    arrival won live, the larger messageId when a merge or an unmerge replayed them, so a merge
    turned the opt-out back into an opt-in. Now the refusal (and the lower score) stand, in any order."""
    ana = [("email", "ana@example.com")]

    def answers(grant: bool) -> list[Any]:
        name = "z" if grant else "a"  # the grant's messageIds sort last, as in the audit's case
        purpose = {"purpose": "email_marketing", "granted": grant}
        return [
            event("consent_update", identifiers=ana, message_id=f"{name}-consent", properties=purpose),
            event("survey_response", identifiers=ana, message_id=f"{name}-nps", properties={"nps": 10 if grant else 0}),
        ]

    batches = [answers(False), answers(True)] if refusal_first else [answers(True), answers(False)]
    for batch in batches:
        assert {o.status for o in await ingest_events(store, batch)} == {EventStatus.ACCEPTED}
    [bob] = await ingest_events(store, [event("page_view", identifiers=[("email", "bob@example.com")])])
    ana_profile = await profile_reads.get_profile_by_identifier(store, *ana[0])
    assert ana_profile is not None and bob.profile_id is not None

    def opted_out(profile: Profile | None) -> bool:
        assert profile is not None
        return profile.consents["email_marketing"].granted is False and profile.qualitative.nps_score == 0

    assert opted_out(ana_profile)
    record, merged = await merging.merge_profiles(
        store, bob.profile_id, [ana_profile.id], reason="same", actor="t", policy=POLICY
    )
    assert opted_out(merged)
    await merging.unmerge_profile(store, record.id, actor="t")
    assert opted_out(await store.get_profile(ana_profile.id))
