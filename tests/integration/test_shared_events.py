"""What the transport keeps of a subscription event for the subscribers still to execute it
(graphql_schema/shared_events.py) goes when the person is erased: a subscriber behind by some of
their changes reads the profile as it is now (null), not as another subscriber read it before."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from app.bootstrap import Services
from app.domain import clock
from app.domain.segments.segment import MembershipChange, SegmentEvent, erasure_exits
from app.main import create_app
from app.services import merging, privacy
from app.services.identity_policy import IdentityPolicy
from app.services.ingestion import IngestionPolicy, ingest_events
from app.services.profile_changes import Cause
from app.settings import Settings
from app.store.sqlite.store import SQLiteStore
from graphql_schema import shared_events
from graphql_schema.shared_events import shared_payload
from graphql_schema.types.segment import SegmentMembershipEvent
from tests.builders import event


def _entered(profile_id: str) -> SegmentEvent:
    return SegmentEvent(
        _id=f"sev-{profile_id}", segment_id="seg_1", profile_id=profile_id,
        change=MembershipChange.ENTERED, at=clock.now(), cause="event",
    )  # fmt: skip


async def test_an_erasure_drops_what_was_read_for_the_persons_earlier_changes() -> None:
    services = Services(
        settings=Settings(seed_fixtures=False), store=SQLiteStore(":memory:"), ingestion=IngestionPolicy()
    )
    create_app(services=services)  # the server's wiring of the bus to the transport
    entered, other = _entered("p-erased"), _entered("p-kept")
    first = shared_payload(entered.id, SegmentMembershipEvent.for_subscribers, entered)
    kept = shared_payload(other.id, SegmentMembershipEvent.for_subscribers, other)
    assert first.reads is not None
    read_before = await first.reads.read("profile", lambda: asyncio.sleep(0, result="the profile as read then"))
    assert read_before == "the profile as read then"

    # The erasure's exits, as every process's follower of the feed delivers them.
    services.bus.deliver(erasure_exits("p-erased", ["seg_1"], at=clock.now(), cause=Cause.ERASURE.value))

    again = shared_payload(entered.id, SegmentMembershipEvent.for_subscribers, entered)
    assert again is not first and again.reads is not None  # executed anew, read anew
    assert await again.reads.read("profile", lambda: asyncio.sleep(0, result=None)) is None
    assert shared_payload(other.id, SegmentMembershipEvent.for_subscribers, other) is kept  # others untouched
    await services.store.close()


async def test_an_erasure_drops_the_reads_of_the_whole_family_and_of_people_in_no_segment(tmp_path: Path) -> None:
    """A person in no segment leaves no exit to deliver, and the exits name the live profile only:
    the erasing process tells the transport of every profile of the family it erased."""
    services = Services(
        settings=Settings(seed_fixtures=False), store=SQLiteStore(tmp_path / "cdp.sqlite3"), ingestion=IngestionPolicy()
    )
    create_app(services=services)
    survivor, merged, alone, other = [
        await _landed(services, email) for email in ("ann@example.com", "ann.b@example.com", "bo@x.com", "cy@x.com")
    ]
    await merging.merge_profiles(
        services.store, survivor, [merged], reason="same person", actor="steward", policy=IdentityPolicy()
    )
    # Changes recorded under the merged-away id (read before the merge: as itself), under the live
    # one, and of someone in no segment, each read by a subscriber ahead of another still behind.
    payloads = {}
    for profile_id in (merged, survivor, alone, other):
        change = _entered(profile_id)
        payloads[profile_id] = shared_payload(change.id, SegmentMembershipEvent.for_subscribers, change)
        assert payloads[profile_id].reads is not None
        await payloads[profile_id].reads.read("profile", lambda p=profile_id: asyncio.sleep(0, result=f"read of {p}"))

    await privacy.delete_profile(services.store, survivor, actor="dpo", changes=services.changes)
    await privacy.delete_profile(services.store, alone, actor="dpo", changes=services.changes)

    for profile_id in (merged, survivor, alone):
        change = _entered(profile_id)
        assert shared_payload(change.id, SegmentMembershipEvent.for_subscribers, change) is not payloads[profile_id]
    kept = _entered(other)
    assert shared_payload(kept.id, SegmentMembershipEvent.for_subscribers, kept) is payloads[other]
    await services.store.close()


async def test_a_read_made_for_an_event_serves_its_subscribers_for_a_short_time_only(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Another process's erasure of someone merged into the person, or in no segment, is told to no
    one here: a subscriber far behind reads the profile anew rather than as it was read then."""
    monkeypatch.setattr(shared_events, "SHARED_FOR_SECONDS", 0.05)
    change = _entered("p-later")
    payload = shared_payload(change.id, SegmentMembershipEvent.for_subscribers, change)
    assert payload.reads is not None
    assert await payload.reads.read("profile", lambda: asyncio.sleep(0, result="as read then")) == "as read then"
    assert await payload.reads.read("profile", lambda: asyncio.sleep(0, result="read again")) == "as read then"
    await asyncio.sleep(0.1)
    assert await payload.reads.read("profile", lambda: asyncio.sleep(0, result=None)) is None


async def _landed(services: Services, email: str) -> str:
    (outcome,) = await ingest_events(services.store, [event("page_view", email=email)])
    return outcome.profile_id or pytest.fail()
