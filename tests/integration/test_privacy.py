"""Consent, export and erasure through the services, on every storage backend."""

from __future__ import annotations

import asyncio
import json
import sqlite3
import textwrap
from collections.abc import Awaitable, Callable
from datetime import timedelta
from pathlib import Path

import pytest

from app.bootstrap import Services
from app.domain import clock
from app.domain.errors import InvalidInput, NotFound
from app.domain.events import RawIdentifier
from app.domain.merge_protection import MergeProtection
from app.domain.privacy import DEFAULT_PURPOSES
from app.domain.segments.segment import ERASURE_EXITS_KEPT, MembershipChange, SegmentEvent
from app.services import merging, privacy, profile_reads, profiles
from app.services.identity_policy import IdentityPolicy
from app.services.ingestion import EventOutcome, EventStatus, IngestionPolicy, ingest_each_alone, ingest_events
from app.services.ports import ProfileStore, StoreTransaction
from app.settings import Settings
from app.store.sqlite.store import SQLiteStore
from tests.builders import event
from tests.faults import run_script
from tests.interleaving import HeldBatches

BUYERS = {"name": "Buyers", "condition": {"compare": {"path": "stats.orders", "op": "gte", "value": 1}}}

PURPOSES = DEFAULT_PURPOSES


async def _customer(store: ProfileStore, *types: str, email: str = "emma@example.com") -> str:
    outcomes = await ingest_events(store, [event(t, email=email, minutes=n) for n, t in enumerate(types)])
    assert {o.status for o in outcomes} == {EventStatus.ACCEPTED}
    profile = await profile_reads.get_profile_by_identifier(store, "email", email)
    assert profile is not None
    return profile.id


async def test_set_consent_keeps_the_state_and_the_history(
    store: ProfileStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    profile_id = await _customer(store, "page_view", "consent_update")  # email_marketing granted by event
    await privacy.set_consent(store, profile_id, "email_marketing", False, "preference centre", purposes=PURPOSES)
    # The next decision a second later: two in one millisecond are listed refusal first (the one in effect).
    real = clock.now
    monkeypatch.setattr(clock, "now", lambda: real() + timedelta(seconds=1))
    profile = await privacy.set_consent(store, profile_id, "analytics", True, "cookie banner", purposes=PURPOSES)
    assert not profile.consents["email_marketing"].granted and profile.consents["analytics"].granted
    assert profile.consents["email_marketing"].source == "preference centre"

    history = await privacy.consent_history(store, profile)
    assert [(d.purpose, d.granted, d.source) for d in history] == [
        ("analytics", True, "cookie banner"),
        ("email_marketing", False, "preference centre"),
        ("email_marketing", True, "web"),  # the consent_update event, with its message id
    ]
    assert history[-1].message_id is not None and history[0].at >= history[1].at >= history[2].at


async def test_bad_consent_requests_write_nothing(store: ProfileStore) -> None:
    profile_id = await _customer(store, "page_view")
    before = await store.get_profile(profile_id)
    with pytest.raises(InvalidInput, match="unknown purpose 'ads'") as unknown:
        await privacy.set_consent(store, profile_id, "ads", True, "form", purposes=PURPOSES)
    assert unknown.value.field == "purpose"
    with pytest.raises(InvalidInput, match="source"):
        await privacy.set_consent(store, profile_id, "analytics", True, "", purposes=PURPOSES)
    with pytest.raises(NotFound):
        await privacy.set_consent(store, "nobody", "analytics", True, "form", purposes=PURPOSES)
    after = await store.get_profile(profile_id)
    assert after == before and await store.consent_history([profile_id]) == []


async def test_a_purpose_taken_out_of_the_settings_can_still_be_withdrawn(store: ProfileStore) -> None:
    profile_id = await _customer(store, "page_view", "consent_update")  # email_marketing granted by event
    remaining = tuple(p for p in PURPOSES if p != "email_marketing")
    with pytest.raises(InvalidInput, match="unknown purpose 'email_marketing'"):
        await privacy.set_consent(store, profile_id, "email_marketing", True, "form", purposes=remaining)
    with pytest.raises(InvalidInput, match="unknown purpose 'ads'"):  # never held: nothing to withdraw
        await privacy.set_consent(store, profile_id, "ads", False, "form", purposes=remaining)
    assert len(await store.consent_history([profile_id])) == 1

    by_event = event("consent_update", properties={"purpose": "email_marketing", "granted": False})
    [refused] = await ingest_events(store, [by_event], IngestionPolicy(consent_purposes=remaining))
    assert refused.status is EventStatus.REJECTED and refused.field == "events[0].properties.purpose"
    assert "is withdrawn with setConsent" in (refused.reason or "")
    assert len(await store.consent_history([profile_id])) == 1

    profile = await privacy.set_consent(store, profile_id, "email_marketing", False, "unsubscribe", purposes=remaining)
    assert not profile.consents["email_marketing"].granted
    newest = (await privacy.consent_history(store, profile))[0]
    assert (newest.purpose, newest.granted, newest.source) == ("email_marketing", False, "unsubscribe")


async def test_export_holds_everything_about_the_person(store: ProfileStore) -> None:
    web = await _customer(store, "identify", "page_view", "order_completed", "consent_update")
    shop = await _customer(store, "order_completed", "support_contact", email="e.martin@example.com")
    await merging.merge_profiles(store, web, [shop], reason="same person", actor="steward", policy=IdentityPolicy())

    exported = await privacy.export_profile(store, shop)  # a merged-away id stands for the person
    json.dumps(exported)  # one JSON document
    assert exported["profile"]["_id"] == web and exported["mergedProfileIds"] == [shop]
    assert {i["value"] for i in exported["profile"]["identifiers"]} == {"emma@example.com", "e.martin@example.com"}
    assert len(exported["interactions"]) == 6 and "recent" not in exported["profile"]
    assert [d["purpose"] for d in exported["consentHistory"]] == ["email_marketing"]
    assert [m["survivorId"] for m in exported["merges"]] == [web]
    assert exported["segmentHistory"] == []  # no segments defined here; see test_segments for entries
    with pytest.raises(NotFound):
        await privacy.export_profile(store, "nobody")


async def test_export_holds_every_segment_change_of_the_person(store: ProfileStore) -> None:
    """The export read one page of them, 1,000, the newest only."""
    person = await _customer(store, "page_view")
    changes = [
        SegmentEvent(_id=f"e{n}", segment_id="seg", profile_id=person,
                     change=MembershipChange.ENTERED if n % 2 == 0 else MembershipChange.EXITED,
                     at=clock.now() - timedelta(minutes=n), cause="test")
        for n in range(1_100)
    ]  # fmt: skip

    async def write(tx: StoreTransaction) -> None:
        await tx.insert_segment_events(changes)

    await store.run_in_transaction(write)
    exported = await privacy.export_profile(store, person)
    assert len(exported["segmentHistory"]) == 1_100


async def test_erasure_forgets_the_person_for_good(store: ProfileStore) -> None:
    old_events = [event(t, email="emma@example.com", minutes=n) for n, t in enumerate(["identify", "order_completed"])]
    assert {o.status for o in await ingest_events(store, old_events)} == {EventStatus.ACCEPTED}
    emma = await profile_reads.get_profile_by_identifier(store, "email", "emma@example.com")
    assert emma is not None
    other = await _customer(store, "page_view", email="someone.else@example.com")

    erasure = await privacy.delete_profile(store, emma.id, actor="dpo")
    assert (erasure.profiles, erasure.identifiers, erasure.interactions, erasure.actor) == (1, 1, 2, "dpo")
    assert "emma" not in json.dumps(erasure.model_dump(mode="json"))
    assert [e.id for e in await store.erasures(limit=5)] == [erasure.id]
    assert await store.get_profile(emma.id) is None
    assert await profile_reads.get_profile_by_identifier(store, "email", "emma@example.com") is None
    assert await store.count_profiles() == 1

    # Replayed and late events for her are dropped and never recreate the profile; others still land.
    replayed = await ingest_events(store, [*old_events, event("page_view", email="Emma@Example.com ", minutes=9)])
    assert {o.status for o in replayed} == {EventStatus.REJECTED}
    assert "erased" in (replayed[0].reason or "") and replayed[0].field == "events[0].identifiers"
    assert [o.field for o in replayed] == [f"events[{n}].identifiers" for n in range(3)]  # each by its place
    assert (await ingest_events(store, [event("page_view", email="someone.else@example.com")]))[0].profile_id == other
    with pytest.raises(InvalidInput, match="erased"):
        await profiles.upsert_profile(store, [RawIdentifier("email", "emma@example.com")], {"first_name": "Emma"})
    assert await store.count_profiles() == 1
    with pytest.raises(NotFound):
        await privacy.delete_profile(store, emma.id, actor="dpo")


@pytest.mark.parametrize("path", [ingest_events, ingest_each_alone], ids=["batch", "per-event"])
async def test_an_erased_persons_shared_device_neither_blocks_nor_joins_the_others_events(
    store: ProfileStore, path: Callable[..., Awaitable[list[EventOutcome]]]
) -> None:
    """Found by an audit of erasure: Bea's erasure suppressed the family tablet's deviceId with her
    identifiers, and every later event of Cal's from the tablet (his email and the tablet's id) was
    refused for good. An event whose strongest identifier is someone else's already is theirs: it
    lands without the erased person's identifiers, which nobody claims again. One whose strongest is
    Bea's (her old email from the tablet), or naming hers alone, or whose strongest is nobody's yet
    (a shop connected since, sending her email with its own new customer id: found by the review of
    that change, it recreated her), is refused as before."""
    tablet = ("deviceId", "family-tablet")
    await ingest_events(store, [event("page_view", identifiers=[("email", "bea@example.com"), tablet])])
    cal = await _customer(store, "page_view", email="cal@example.com")
    bea = await profile_reads.get_profile_by_identifier(store, "email", "bea@example.com")
    assert bea is not None
    await privacy.delete_profile(store, bea.id, actor="dpo")

    sent = [
        event("page_view", identifiers=[("email", "cal@example.com"), tablet], message_id="cal-on-tablet"),
        event("page_view", identifiers=[("email", "bea@example.com"), tablet], message_id="bea-on-tablet"),
        event("page_view", identifiers=[tablet], message_id="tablet-alone"),
        event("page_view", identifiers=[("email", "dora@example.com"), tablet], message_id="nobody-yet"),
        event("identify", identifiers=[("customerId", "shop-1"), ("email", "bea@example.com")], message_id="shop"),
    ]
    outcomes = await path(store, sent)
    assert [o.status for o in outcomes] == [EventStatus.ACCEPTED] + [EventStatus.REJECTED] * 4, outcomes
    assert outcomes[0].profile_id == cal
    profile = await store.get_profile(cal)
    assert profile is not None and "deviceId:family-tablet" not in profile.identifier_keys()
    history = await store.run_in_transaction(lambda tx: tx.history(cal))
    assert all("deviceId:family-tablet" not in i.identifiers for i in history), history
    assert await store.count_profiles() == 1  # Cal alone: nobody recreated
    assert await profile_reads.get_profile_by_identifier(store, *tablet) is None
    upserted = await profiles.upsert_profile(
        store, [RawIdentifier("email", "cal@example.com"), RawIdentifier(*tablet)], {}
    )
    assert upserted.id == cal and "deviceId:family-tablet" not in upserted.identifier_keys()
    for identifiers in ([RawIdentifier(*tablet)], [RawIdentifier("customerId", "crm-9"), RawIdentifier(*tablet)]):
        with pytest.raises(InvalidInput, match="erased"):
            await profiles.upsert_profile(store, identifiers, {"first_name": "Bea"})


async def test_two_first_erasures_at_once_both_keep_their_people_out(store: ProfileStore) -> None:
    """The store's first two erasures, at once: each creates the key its suppressed identifiers are
    hashed with unless the other did first, and both must hash with the one key that stays; each one's
    wipe of the files waits for the other's batch (it took the writer's lock on the wrong loop)."""
    emma = await _customer(store, "page_view", email="emma@example.com")
    leo = await _customer(store, "page_view", email="leo@example.com")
    await asyncio.gather(
        privacy.delete_profile(store, emma, actor="dpo"), privacy.delete_profile(store, leo, actor="dpo")
    )
    late = await ingest_events(store, [event("page_view", email=e) for e in ("emma@example.com", "leo@example.com")])
    assert [(o.status, o.field) for o in late] == [(EventStatus.REJECTED, f"events[{n}].identifiers") for n in (0, 1)]
    assert await store.count_profiles() == 0


async def test_events_waiting_for_the_writer_while_the_first_erasure_runs_do_not_bring_the_person_back(
    store: ProfileStore,
) -> None:
    emma = await _customer(store, "page_view", email="emma@example.com")
    held = HeldBatches(store)
    late = asyncio.create_task(ingest_events(held, [event("order_completed", email="emma@example.com", minutes=5)]))  # type: ignore[arg-type]
    await held.waiting.wait()  # the events are judged, their batch not begun
    await privacy.delete_profile(store, emma, actor="dpo")  # the store's first erasure
    held.go.set()
    outcome = (await late)[0]
    assert (outcome.status, outcome.field) == (EventStatus.REJECTED, "events[0].identifiers")
    assert await profile_reads.get_profile_by_identifier(store, "email", "emma@example.com") is None
    assert await store.count_profiles() == 0


async def test_erasure_survives_an_earlier_merge(store: ProfileStore) -> None:
    web = await _customer(store, "identify", "page_view")
    phone_event = event("order_completed", identifiers=[("phone", "+33612345678")])
    shop_outcome = (await ingest_events(store, [phone_event], IngestionPolicy()))[0]
    assert shop_outcome.profile_id is not None
    await merging.merge_profiles(
        store, web, [shop_outcome.profile_id], reason="same person", actor="steward", policy=IdentityPolicy()
    )

    erasure = await privacy.delete_profile(store, shop_outcome.profile_id, actor="dpo")  # the merged-away id
    assert (erasure.profiles, erasure.identifiers) == (2, 2)
    for profile_id in (web, shop_outcome.profile_id):
        assert await store.get_profile(profile_id) is None
        assert await store.merges_of(profile_id) == []  # merge records held snapshots of her data
    assert await store.count_profiles() == 0
    again = await ingest_events(store, [event("page_view", identifiers=[("phone", "+33 6 12 34 56 78")])])
    assert again[0].status is EventStatus.REJECTED and await store.count_profiles() == 0


async def test_erasure_leaves_nothing_readable_in_the_database_files(sqlite_store: SQLiteStore) -> None:
    """Deleted rows linger in free pages and in the write-ahead log unless they are overwritten: the
    erased person's email and name must be found in none of the store's files, read as raw bytes."""
    store = sqlite_store
    email, surname = "zanzibar.quixote@example.com", "Quixotissimo"
    identify = event("identify", email=email, properties={"firstName": "Zanzibar", "lastName": surname})
    others = [event("page_view", email=f"someone{n}@example.com", properties={"url": f"/p/{n}"}) for n in range(50)]
    outcomes = await ingest_events(store, [identify, event("order_completed", email=email, minutes=1), *others])
    assert {o.status for o in outcomes} == {EventStatus.ACCEPTED}
    await profiles.upsert_profile(
        store, [RawIdentifier("email", email)], {"addresses": [{"street": f"1 rue {surname}", "city": "Lyon"}]}
    )
    files = sorted(store.path.parent.glob(store.path.name + "*"))
    assert any(surname.encode() in f.read_bytes() for f in files)  # the person is on disk before

    profile_id = outcomes[0].profile_id
    assert profile_id is not None
    await privacy.delete_profile(store, profile_id, actor="dpo")

    for path in sorted(store.path.parent.glob(store.path.name + "*")):
        content = path.read_bytes()
        for secret in (email, surname):
            assert secret.encode() not in content, f"{secret} is still readable in {path.name}"
    assert await store.count_profiles() == 50  # the others are untouched


async def _on_disk(store: SQLiteStore, email: str, surname: str) -> str:
    """A person on the store's files (their row, and the log's frames), with 50 others; their id."""
    identify = event("identify", email=email, properties={"firstName": "Zanzibar", "lastName": surname})
    others = [event("page_view", email=f"someone{n}@example.com", properties={"url": f"/p/{n}"}) for n in range(50)]
    outcomes = await ingest_events(store, [identify, *others])
    assert any(surname.encode() in f.read_bytes() for f in _files(store))
    return outcomes[0].profile_id or pytest.fail()


def _files(store: SQLiteStore) -> list[Path]:
    return sorted(store.path.parent.glob(store.path.name + "*"))


def _readable(store: SQLiteStore, *secrets: str) -> list[str]:
    return [f"{s} in {p.name}" for p in _files(store) for s in secrets if s.encode() in p.read_bytes()]


async def test_a_wipe_another_connection_held_off_is_done_once_the_log_is_free(sqlite_store: SQLiteStore) -> None:
    store, email, surname = sqlite_store, "zanzibar.quixote@example.com", "Quixotissimo"
    profile_id = await _on_disk(store, email, surname)
    reader = sqlite3.connect(store.path)  # e.g. another worker's long scan
    reader.execute("BEGIN")
    reader.execute("SELECT count(*) FROM profiles").fetchone()

    await privacy.delete_profile(store, profile_id, actor="dpo")  # its wipe cannot empty the log now
    assert await store.wipe_owed()
    reader.rollback()
    reader.close()

    assert await privacy.wipe_owed_files(store)  # what the server's schedule does
    assert _readable(store, email, surname) == []
    assert not await store.wipe_owed()
    assert not await privacy.wipe_owed_files(store)  # nothing owed: nothing done


async def test_an_erased_members_exits_leave_the_files_once_every_process_had_time_to_deliver_them(
    sqlite_store: SQLiteStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    store = sqlite_store
    services = Services(settings=Settings(seed_fixtures=False), store=store, ingestion=IngestionPolicy())
    (outcome,) = await ingest_events(store, [event("order_completed", email="buyer@example.com")], services.ingestion)
    buyer = outcome.profile_id or pytest.fail()
    await services.segments.create(BUYERS)
    await privacy.delete_profile(store, buyer, actor="dpo", changes=services.changes)
    assert _readable(store, buyer) != []  # her exit, for the followers of other processes

    assert not await privacy.forget_and_wipe(store)  # what the server's schedule does: not yet
    assert _readable(store, buyer) != []
    later = clock.now() + ERASURE_EXITS_KEPT
    monkeypatch.setattr(clock, "now", lambda: later)
    assert await privacy.forget_and_wipe(store)
    assert _readable(store, buyer) == []


KILLED_BEFORE_THE_WIPE = textwrap.dedent(
    """
    import asyncio, os, sys
    from app.services import privacy
    from app.store.sqlite.store import SQLiteStore

    async def killed(self):
        os._exit(9)  # like kill -9 once the erasure is committed, before the files are wiped

    async def main():
        SQLiteStore.wipe_deleted = killed
        await privacy.delete_profile(SQLiteStore(sys.argv[1]), sys.argv[2], actor="dpo")

    asyncio.run(main())
    """
)


async def test_a_wipe_a_killed_process_never_did_is_done_when_the_store_is_next_served(tmp_path: Path) -> None:
    store, email, surname = SQLiteStore(tmp_path / "cdp.sqlite3"), "zanzibar.quixote@example.com", "Quixotissimo"
    profile_id = await _on_disk(store, email, surname)
    await store.close()
    run = run_script(KILLED_BEFORE_THE_WIPE, str(store.path), profile_id)
    assert run.returncode == 9, run.stderr

    reopened = SQLiteStore(store.path)
    assert await reopened.get_profile(profile_id) is None  # the erasure stands
    assert await privacy.wipe_owed_files(reopened)
    assert _readable(reopened, email, surname) == []
    await reopened.close()


# -- merges undone: each person's export and erasure hold their own data only --------------------
async def _person(store: ProfileStore, first: str, last: str, email: str, phone: str) -> tuple[str, set[str]]:
    """A person with a name, an email, a phone and a consent of their own; returns their id and the
    personal values an export must show to them alone (identifier keys included)."""
    identifiers = [RawIdentifier("email", email), RawIdentifier("phone", phone)]
    profile = await profiles.upsert_profile(store, identifiers, {"first_name": first, "last_name": last})
    source = f"{last} kiosk"
    profile = await privacy.set_consent(store, profile.id, "analytics", True, source, purposes=PURPOSES)
    values = {first, last, source, *(r.value for r in profile.identifiers)}
    return profile.id, values | {f"{r.type}:{r.value}" for r in profile.identifiers}


def _found(values: set[str], document: object) -> set[str]:
    text = json.dumps(document)
    return {v for v in values if v in text}


def _values(data: set[str]) -> set[str]:
    """The values an export of the person shows in any case (identifier keys may not appear)."""
    return {v for v in data if ":" not in v}


async def _merge(store: ProfileStore, survivor: str, other: str) -> str:
    record, _ = await merging.merge_profiles(
        store, survivor, [other], reason="same person", actor="steward", policy=IdentityPolicy()
    )
    return record.id


async def test_an_export_after_an_unmerge_holds_the_persons_own_data_only(store: ProfileStore) -> None:
    pia, pia_data = await _person(store, "Pialotta", "Pressburger", "pia.pressburger@example.com", "+33611111111")
    quentin, quentin_data = await _person(
        store, "Quentinus", "Quayleworth", "q.quayleworth@example.com", "+33622222222"
    )
    merge_id = await _merge(store, pia, quentin)

    # While the merge stands, Quentin is part of Pia's profile: her export holds his data too.
    merged = await privacy.export_profile(store, pia)
    assert _found(quentin_data, merged) == quentin_data  # his saved profile and identifiers, in the merge record
    assert _found(_values(pia_data), merged) == _values(pia_data)

    await merging.unmerge_profile(store, merge_id, actor="steward")
    exported = await privacy.export_profile(store, pia)
    assert _found(quentin_data, exported) == set(), "Pia's export shows another person's data"
    assert _found(_values(pia_data), exported) == _values(pia_data)
    # The undone merge is still an event of her history, with her own saved state.
    (record,) = exported["merges"]
    assert (record["_id"], record["status"], record["survivorId"], record["mergedIds"]) == (
        merge_id,
        "UNMERGED",
        pia,
        [quentin],
    )
    assert record["reason"] == "same person" and "at" in record and "unmergedAt" in record
    assert [s["_id"] for s in record["snapshots"]] == [pia]

    theirs = await privacy.export_profile(store, quentin)
    assert _found(pia_data, theirs) == set(), "Quentin's export shows another person's data"
    assert _found(_values(quentin_data), theirs) == _values(quentin_data)
    (record,) = theirs["merges"]
    assert record["_id"] == merge_id and [s["_id"] for s in record["snapshots"]] == [quentin]
    assert set(record["movedIdentities"].values()) == {quentin}


async def test_a_merge_saved_while_another_stood_shows_that_person_only_while_they_are_merged(
    store: ProfileStore,
) -> None:
    """Pia took in Rosa, then Quentin: the second merge saved Pia with Rosa in her. Once Rosa's merge
    is undone too, that saved copy is Rosa's data as much as Pia's."""
    pia, pia_data = await _person(store, "Pialotta", "Pressburger", "pia.pressburger@example.com", "+33611111111")
    quentin, quentin_data = await _person(
        store, "Quentinus", "Quayleworth", "q.quayleworth@example.com", "+33622222222"
    )
    rosa, rosa_data = await _person(store, "Rosalinde", "Rutherglen", "rosa.rutherglen@example.com", "+33633333333")
    rosa_merge = await _merge(store, pia, rosa)
    quentin_merge = await _merge(store, pia, quentin)

    await merging.unmerge_profile(store, quentin_merge, actor="steward")
    exported = await privacy.export_profile(store, pia)  # Rosa is still part of Pia
    assert _found(_values(rosa_data), exported) == _values(rosa_data) and _found(quentin_data, exported) == set()

    await merging.unmerge_profile(store, rosa_merge, actor="steward")
    exported = await privacy.export_profile(store, pia)
    assert _found(rosa_data | quentin_data, exported) == set()
    assert _found(_values(pia_data), exported) == _values(pia_data)
    assert {m["_id"] for m in exported["merges"]} == {rosa_merge, quentin_merge}
    for person, data, others in (
        (rosa, rosa_data, pia_data | quentin_data),
        (quentin, quentin_data, pia_data | rosa_data),
    ):
        theirs = await privacy.export_profile(store, person)
        assert _found(_values(data), theirs) == _values(data) and _found(others, theirs) == set()


@pytest.mark.parametrize("erased_role", ["survivor", "merged"])
async def test_erasing_one_person_of_an_undone_merge_keeps_the_others_audit_trail(
    store: ProfileStore, erased_role: str
) -> None:
    pia, pia_data = await _person(store, "Pialotta", "Pressburger", "pia.pressburger@example.com", "+33611111111")
    quentin, quentin_data = await _person(
        store, "Quentinus", "Quayleworth", "q.quayleworth@example.com", "+33622222222"
    )
    # The steward's reason names both (an audit found the erased person's email kept in the other's trail).
    reason = "ticket 42: pia.pressburger@example.com and q.quayleworth@example.com are one person"
    record, _ = await merging.merge_profiles(
        store, pia, [quentin], reason=reason, actor="steward", policy=IdentityPolicy()
    )
    merge_id = record.id
    await merging.unmerge_profile(store, merge_id, actor="steward")
    erased, erased_data, kept, kept_data = (
        (pia, pia_data, quentin, quentin_data) if erased_role == "survivor" else (quentin, quentin_data, pia, pia_data)
    )

    erasure = await privacy.delete_profile(store, erased, actor="dpo")
    assert erasure.profiles == 1 and await store.get_profile(erased) is None
    assert await store.merges_of(erased) == []

    (record,) = await merging.merge_history(store, kept)
    assert (record.id, record.status.value, record.reason, record.actor) == (
        merge_id,
        "UNMERGED",
        privacy.ERASED_REASON,  # a steward's words about both of them
        "steward",
    )
    members = [record.survivor_id, *record.merged_ids]
    assert kept in members and erased not in members and erasure.id in members  # the erasure's audit record
    assert [s["_id"] for s in record.snapshots] == [kept]
    document = record.model_dump(mode="json", by_alias=True)  # everything stored, as the store keeps it
    assert _found(_values(kept_data), document) == _values(kept_data)
    assert _found(erased_data, document) == set() and erased not in json.dumps(document)

    exported = await privacy.export_profile(store, kept)
    assert _found(_values(kept_data), exported) == _values(kept_data) and _found(erased_data, exported) == set()
    assert erased not in json.dumps(exported)


def _files_of(store: SQLiteStore) -> bytes:
    """Every byte of the store's files: the database, its write-ahead log and shared memory."""
    return b"".join(path.read_bytes() for path in sorted(store.path.parent.glob(store.path.name + "*")))


async def test_the_kept_audit_trail_leaves_nothing_of_the_erased_person_in_the_database_files(
    sqlite_store: SQLiteStore,
) -> None:
    store = sqlite_store
    pia, _ = await _person(store, "Pialotta", "Pressburger", "pia.pressburger@example.com", "+33611111111")
    quentin, _ = await _person(store, "Quentinus", "Quayleworth", "q.quayleworth@example.com", "+33622222222")
    await merging.unmerge_profile(store, await _merge(store, pia, quentin), actor="steward")
    await privacy.delete_profile(store, pia, actor="dpo")

    content = _files_of(store)
    assert b"Pressburger" not in content and b"pia.pressburger@example.com" not in content
    assert b"Quayleworth" in content and len(await store.merges_of(quentin)) == 1


async def _history_and_profile(store: ProfileStore, profile_id: str) -> object:
    """Everything stored of a profile: its document (with the embedded recent list) and its history."""

    async def read(tx: StoreTransaction) -> object:
        documents = await tx.get_profile_documents([profile_id])
        history = [i.model_dump(mode="json", by_alias=True) for i in await tx.history(profile_id)]
        return {"profile": json.loads(json.dumps(documents[profile_id], default=str)), "history": history}

    return await store.run_in_transaction(read)


async def test_an_event_protection_kept_apart_keeps_no_identifier_of_the_other_person(store: ProfileStore) -> None:
    """One event named Pia's customer id and Quentin's phone; merge protection refused to make them one
    (two customer ids). The event lands on Pia: it must not keep Quentin's phone in her history, her
    recent list or her export, where his erasure could not reach it."""
    pia = (await profiles.upsert_profile(store, [RawIdentifier("customerId", "C-PIA")], {"first_name": "Pia"})).id
    quentin_ids = [RawIdentifier("customerId", "C-QUENTIN"), RawIdentifier("phone", "+33622222222")]
    quentin = (await profiles.upsert_profile(store, quentin_ids, {"first_name": "Quentin"})).id
    linking = event("order_completed", identifiers=[("customerId", "C-PIA"), ("phone", "+33622222222")])
    [outcome] = await ingest_events(store, [linking])
    assert (outcome.status, outcome.profile_id) == (EventStatus.ACCEPTED, pia)
    assert [r.profile_ids for r in await merging.merge_refusals(store, pia)] == [[pia, quentin]]

    his = {"+33622222222", "C-QUENTIN"}
    stored = await _history_and_profile(store, pia)
    assert _found(his, stored) == set(), "Pia's history keeps Quentin's phone"
    [kept] = stored["history"]  # type: ignore[index]
    assert kept["messageId"] == linking.message_id and kept["identifiers"] == ["customerId:C-PIA"]
    assert _found(his, await privacy.export_profile(store, pia)) == set()

    await privacy.delete_profile(store, quentin, actor="dpo")
    assert _found(his, await _history_and_profile(store, pia)) == set()
    assert (await store.get_profile(pia)).stats.orders == 1  # type: ignore[union-attr]


async def test_an_unmerge_leaves_no_identifier_of_one_person_on_the_others_events(store: ProfileStore) -> None:
    """An event named Pia's email and Quentin's phone, which merged them; once the merge is undone
    the event is Pia's (an email outranks a phone) and the phone Quentin's again: the event must not
    keep his phone, nor must anything else of hers once he is erased."""
    pia, pia_data = await _person(store, "Pialotta", "Pressburger", "pia.pressburger@example.com", "+33611111111")
    quentin, quentin_data = await _person(
        store, "Quentinus", "Quayleworth", "q.quayleworth@example.com", "+33622222222"
    )
    linking = event("page_view", identifiers=[("email", "pia.pressburger@example.com"), ("phone", "+33622222222")])
    # Households apart off: by default their given names alone keep them apart (`another_person`).
    joined = IngestionPolicy(identity=IdentityPolicy(protection=MergeProtection(households_apart=False)))
    [outcome] = await ingest_events(store, [linking], joined)
    assert outcome.merged == (quentin,) and outcome.profile_id == pia
    [record] = await merging.merge_history(store, pia)
    await merging.unmerge_profile(store, record.id, actor="steward")

    stored = await _history_and_profile(store, pia)
    assert [i["messageId"] for i in stored["history"]] == [linking.message_id]  # type: ignore[index]
    assert _found(quentin_data, stored) == set(), "Pia's event keeps Quentin's phone"
    assert _found(quentin_data, await privacy.export_profile(store, pia)) == set()
    his = await store.get_profile(quentin)
    assert his is not None and "phone:+33622222222" in his.identifier_keys()

    await privacy.delete_profile(store, quentin, actor="dpo")
    stored = await _history_and_profile(store, pia)
    assert _found(quentin_data, stored) == set() and _found(_values(pia_data), stored) == _values(pia_data)


async def test_an_unmerge_leaves_no_trace_of_the_survivor_on_the_events_it_gives_back(store: ProfileStore) -> None:
    """While Quentin was merged into Pia, an event with his phone landed on her profile, the one that
    stood for both. Once undone, the event is his, and names him as where it landed: it named Pia,
    whose profile id then outlived her erasure in his history, his recent list and his export."""
    pia, pia_data = await _person(store, "Pialotta", "Pressburger", "pia.pressburger@example.com", "+33611111111")
    quentin, _ = await _person(store, "Quentinus", "Quayleworth", "q.quayleworth@example.com", "+33622222222")
    merge_id = await _merge(store, pia, quentin)
    his = event("order_completed", identifiers=[("phone", "+33622222222")])
    [outcome] = await ingest_events(store, [his])
    assert outcome.profile_id == pia  # the merged profile
    await merging.unmerge_profile(store, merge_id, actor="steward")

    stored = await _history_and_profile(store, quentin)
    assert [i["messageId"] for i in stored["history"]] == [his.message_id]  # type: ignore[index]
    assert pia not in json.dumps(stored), "Quentin's event still names Pia's profile"
    await privacy.delete_profile(store, pia, actor="dpo")
    stored = await _history_and_profile(store, quentin)
    assert pia not in json.dumps(stored) and _found(_values(pia_data), stored) == set()
    assert pia not in json.dumps(await privacy.export_profile(store, quentin))


async def test_an_undone_merge_goes_once_both_of_its_people_are_erased(store: ProfileStore) -> None:
    """The trail the first erasure kept was the other person's; erased in turn, nobody is left whose it
    is. It stayed, its reason (which may name them) readable on disk."""
    pia, _ = await _person(store, "Pialotta", "Pressburger", "pia.pressburger@example.com", "+33611111111")
    quentin, _ = await _person(store, "Quentinus", "Quayleworth", "q.quayleworth@example.com", "+33622222222")
    merge_id = await _merge(store, pia, quentin)
    await merging.unmerge_profile(store, merge_id, actor="steward")
    await privacy.delete_profile(store, pia, actor="dpo")
    assert await store.run_in_transaction(lambda tx: tx.get_merge(merge_id)) is not None  # Quentin's trail
    await privacy.delete_profile(store, quentin, actor="dpo")
    assert await store.run_in_transaction(lambda tx: tx.get_merge(merge_id)) is None


async def test_erasure_reaches_every_profile_merged_in_however_many_and_however_deep(
    store_at_scale: ProfileStore,
) -> None:
    """Found by a review: the erasure's walk stopped at 1,000 profiles. A customer who signed in from a
    thousand browsing sessions has as many anonymous profiles merged in (anonymousId has no merge
    limit); those past the thousandth kept their consent decisions, merge records (snapshots of their
    documents) and tombstones after the person was erased. Here 11 profiles each took in 100, then
    one took in the 11: 1,112 in all, the last hundred reached through a merged profile only."""
    store = store_at_scale
    upserts = [([RawIdentifier("anonymousId", f"a-{n}")], {}) for n in range(1_111)]
    made = await profiles.upsert_profiles(store, [([RawIdentifier("email", "emma@example.com")], {}), *upserts])
    ids = [p.id for p in made if not isinstance(p, InvalidInput)]
    assert len(ids) == 1_112
    person, heads, rest = ids[0], ids[1:12], ids[12:]
    policy = IdentityPolicy()
    for number, head in enumerate(heads):
        children = rest[number * 100 : (number + 1) * 100]
        await privacy.set_consent(store, children[0], "email_marketing", True, "web", purposes=PURPOSES)
        await merging.merge_profiles(store, head, children, reason="sessions", actor="system", policy=policy)
    await merging.merge_profiles(store, person, heads, reason="sessions", actor="system", policy=policy)
    assert len(await privacy.merged_family(store, person)) == 1_112

    erasure = await privacy.delete_profile(store, person, actor="dpo")

    assert erasure.profiles == 1_112
    left = [member for member in ids if await store.get_profile(member) is not None]
    assert left == []
    assert await store.consent_history(ids) == []
    assert [member for member in heads if await store.merges_of(member)] == []
    assert await profile_reads.get_profile_by_identifier(store, "anonymousId", "a-0") is None


async def _every_merge_record(store: ProfileStore, *profile_ids: str) -> list[dict[str, object]]:
    records = {r.id: r for profile_id in profile_ids for r in await store.merges_of(profile_id)}
    return [r.model_dump(mode="json", by_alias=True) for r in records.values()]  # as the store keeps them


async def test_erasure_leaves_nothing_of_the_person_in_the_others_later_merges(store: ProfileStore) -> None:
    """Found by an audit: Bea merged into Cal (m1), then Dora into Cal (m2) saved Cal's document
    while it held Bea's email and name; both undone, Bea erased: m2, a merge of Cal and Dora only,
    kept Bea's data on disk and in every backup (their exports hid it)."""
    cal, cal_data = await _person(store, "Calloway", "Cranberry", "cal.cranberry@example.com", "+33633333333")
    bea, bea_data = await _person(store, "Beatrix", "Bloomsbury", "bea.bloomsbury@example.com", "+33644444444")
    dora, _ = await _person(store, "Doraline", "Dunmore", "dora.dunmore@example.com", "+33655555555")
    first = await _merge(store, cal, bea)
    second = await _merge(store, cal, dora)
    assert _found(_values(bea_data), await _every_merge_record(store, cal, dora))  # m2 saved Bea's data
    await merging.unmerge_profile(store, second, actor="steward")
    await merging.unmerge_profile(store, first, actor="steward")

    await privacy.delete_profile(store, bea, actor="dpo")

    left = await _every_merge_record(store, cal, dora)
    assert {record["_id"] for record in left} == {first, second}  # both trails kept
    assert _found(bea_data, left) == set() and bea not in json.dumps(left)
    assert _found(_values(cal_data), left) == _values(cal_data)  # the others' own documents stay


async def test_erasure_leaves_nothing_of_the_person_in_a_later_merge_of_whom_they_were_merged_into(
    store: ProfileStore,
) -> None:
    """The other way round: Xena merged into Bea (m0), then Bea into Cal (m1) saved Bea's document
    holding Xena's data; both undone, Xena erased: m1 kept her email and surname."""
    bea, _ = await _person(store, "Beatrix", "Bloomsbury", "bea.bloomsbury@example.com", "+33644444444")
    xena, xena_data = await _person(store, "Xenobia", "Xanthopoulos", "xena.x@example.com", "+33666666666")
    cal, _ = await _person(store, "Calloway", "Cranberry", "cal.cranberry@example.com", "+33633333333")
    first = await _merge(store, bea, xena)
    second = await _merge(store, cal, bea)
    await merging.unmerge_profile(store, second, actor="steward")
    await merging.unmerge_profile(store, first, actor="steward")

    await privacy.delete_profile(store, xena, actor="dpo")

    left = await _every_merge_record(store, bea, cal)
    assert {record["_id"] for record in left} == {first, second}
    assert _found(xena_data, left) == set() and xena not in json.dumps(left)


async def test_the_others_later_merges_keep_nothing_of_the_erased_person_in_the_database_files(
    sqlite_store: SQLiteStore,
) -> None:
    store = sqlite_store
    cal, _ = await _person(store, "Calloway", "Cranberry", "cal.cranberry@example.com", "+33633333333")
    bea, _ = await _person(store, "Beatrix", "Bloomsbury", "bea.bloomsbury@example.com", "+33644444444")
    dora, _ = await _person(store, "Doraline", "Dunmore", "dora.dunmore@example.com", "+33655555555")
    first = await _merge(store, cal, bea)
    await merging.unmerge_profile(store, await _merge(store, cal, dora), actor="steward")
    await merging.unmerge_profile(store, first, actor="steward")
    await privacy.delete_profile(store, bea, actor="dpo")

    content = _files_of(store)
    assert b"Bloomsbury" not in content and b"bea.bloomsbury@example.com" not in content
    assert b"Dunmore" in content and len(await store.merges_of(dora)) == 1


async def test_a_consent_given_through_a_merged_away_id_goes_back_with_its_person(store: ProfileStore) -> None:
    """Found by an audit: Bea, merged into Cal by mistake, unsubscribed through her own id; the steward
    undid the merge and the opt-out stayed with Cal, while Bea was back to receiving marketing."""
    cal, _ = await _person(store, "Calloway", "Cranberry", "cal.cranberry@example.com", "+33633333333")
    bea, _ = await _person(store, "Beatrix", "Bloomsbury", "bea.bloomsbury@example.com", "+33644444444")
    for person in (cal, bea):
        await privacy.set_consent(store, person, "email_marketing", True, "signup form", purposes=PURPOSES)
    merge = await _merge(store, cal, bea)
    merged = await privacy.set_consent(store, bea, "email_marketing", False, "unsubscribe link", purposes=PURPOSES)
    assert merged.id == cal and not merged.consents["email_marketing"].granted  # one person while merged
    await privacy.set_consent(store, cal, "analytics", False, "cookie banner", purposes=PURPOSES)  # through Cal's id

    await merging.unmerge_profile(store, merge, actor="steward")

    bea_now, cal_now = await store.get_profile(bea), await store.get_profile(cal)
    assert bea_now is not None and cal_now is not None
    assert not bea_now.consents["email_marketing"].granted and bea_now.consents["email_marketing"].source == (
        "unsubscribe link"
    )
    assert cal_now.consents["email_marketing"].granted  # Cal never unsubscribed
    assert not cal_now.consents["analytics"].granted  # what was decided through the survivor's id stays
    assert not bea_now.consents["analytics"].granted  # and a refusal, either's, goes with Bea too
    bea_history = [(d.purpose, d.granted, d.source) for d in await privacy.consent_history(store, bea_now)]
    assert bea_history[:2] == [("analytics", False, "cookie banner"), ("email_marketing", False, "unsubscribe link")]
    assert all(d.source != "unsubscribe link" for d in await privacy.consent_history(store, cal_now))


async def test_people_erased_before_identifiers_kept_more_of_their_text_stay_out(store: ProfileStore) -> None:
    """Found by the review of aba9019: older versions stored a phone without its extension and an id as
    its Unicode was sent, and suppressed those forms at an erasure; the same person's events, now
    normalised otherwise, came back. Both forms still count as the erased person's."""
    secret = await privacy.suppression_secret(store)
    legacy = ["phone:+12125550100", "loyaltyId:" + "Jose\u0301-42"]  # as an erasure before them hashed them

    async def erased_long_ago(tx: StoreTransaction) -> None:
        await tx.suppress(privacy.suppression_hashes(secret, legacy), clock.now())

    await store.run_in_transaction(erased_long_ago)
    sent = [
        event("page_view", identifiers=[("phone", "+1 212 555 0100 ext. 34")], message_id="extension"),
        event("page_view", identifiers=[("loyaltyId", "Jos\u00e9-42")], message_id="composed"),
        event("page_view", identifiers=[("loyaltyId", "Jose\u0301-42")], message_id="decomposed"),
    ]
    assert [o.status for o in await ingest_events(store, sent)] == [EventStatus.REJECTED] * 3
    assert await store.count_profiles() == 0


async def test_a_consent_history_lists_the_decision_in_effect_first_at_one_instant(store: ProfileStore) -> None:
    """Found by an audit of consent: a refusal and a grant at one instant leave the refusal in effect
    (supersedes), but the history listed the grant as the newest, so a preference centre showing the
    newest decision said "opted in"."""
    at = clock.now() - timedelta(minutes=1)
    decisions = [
        event("consent_update", at=at, properties={"purpose": "email_marketing", "granted": granted})
        for granted in (False, True)
    ]
    assert {o.status for o in await ingest_events(store, decisions)} == {EventStatus.ACCEPTED}
    profile = await profile_reads.get_profile_by_identifier(store, "email", "emma@example.com")
    assert profile is not None and profile.consents["email_marketing"].granted is False
    history = await privacy.consent_history(store, profile)
    assert [d.granted for d in history] == [False, True]
    newest = await store.consent_history([profile.id], limit=1)
    assert [d.granted for d in newest] == [False]
