"""What the transport keeps of a subscription event for the subscribers still to execute it
(graphql_schema/shared_events.py) goes when the person is erased: a subscriber behind by some of
their changes reads the profile as it is now (null), not as another subscriber read it before."""

from __future__ import annotations

import asyncio

from app.bootstrap import Services
from app.domain import clock
from app.domain.segments.segment import MembershipChange, SegmentEvent, erasure_exits
from app.main import create_app
from app.services.ingestion import IngestionPolicy
from app.services.profile_changes import Cause
from app.settings import Settings
from app.store.sqlite.store import SQLiteStore
from graphql_schema.shared_events import shared_payload
from graphql_schema.types.segment import SegmentMembershipEvent


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
