"""CDP_SEGMENT_HISTORY_DAYS: segment changes older than it are deleted in chunks, on every backend,
but each profile's newest change in each segment, which tells a member since when it is one."""

from __future__ import annotations

from datetime import timedelta

import pytest

from app.bootstrap import Services
from app.domain import clock
from app.domain.segments.segment import MembershipChange
from app.services import segment_history_retention
from app.services.ingestion import IngestionPolicy, ingest_events
from app.services.ports import ProfileStore
from app.services.segment_history_retention import forget_old_changes
from app.settings import Settings
from tests.builders import event

BUYERS = {"name": "Buyers", "condition": {"compare": {"path": "stats.orders", "op": "gte", "value": 1}}}
TWICE = {"name": "Buyers", "condition": {"compare": {"path": "stats.orders", "op": "gte", "value": 2}}}


@pytest.fixture
def services(store: ProfileStore) -> Services:
    return Services(settings=Settings(seed_fixtures=False), store=store, ingestion=IngestionPolicy())


async def test_old_changes_are_deleted_in_chunks_but_each_member_s_entry(
    services: Services, monkeypatch: pytest.MonkeyPatch
) -> None:
    store = services.store
    buyer, other = (
        o.profile_id
        for o in await ingest_events(
            store,
            [event("order_completed", email="buyer@example.com"), event("order_completed", email="other@example.com")],
            services.ingestion,
        )
    )
    assert buyer and other
    segment = (await services.segments.create(BUYERS)).segment  # both enter
    await services.segments.update(segment.id, TWICE)  # both leave
    await services.segments.update(segment.id, BUYERS)  # both enter again
    entries = await store.segment_entries([buyer, other])
    assert [e.change for e in await store.segment_events(profile_id=buyer, limit=10)] == [
        MembershipChange.ENTERED,
        MembershipChange.EXITED,
        MembershipChange.ENTERED,
    ]
    monkeypatch.setattr(segment_history_retention, "CHUNK", 1)  # the chunks' loop, not one statement
    later = clock.now() + timedelta(days=2)

    assert await forget_old_changes(store, kept_for=timedelta(days=3), now=later) == 0  # none old enough
    assert await forget_old_changes(store, kept_for=timedelta(days=1), now=later) == 4
    assert await forget_old_changes(store, kept_for=timedelta(days=1), now=later) == 0

    for profile_id in (buyer, other):
        (kept,) = await store.segment_events(profile_id=profile_id, limit=10)
        assert kept.change is MembershipChange.ENTERED
    assert await store.segment_entries([buyer, other]) == entries
    assert sorted(await store.member_ids(segment.id)) == sorted([buyer, other])  # memberships untouched
