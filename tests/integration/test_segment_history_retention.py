"""CDP_SEGMENT_HISTORY_DAYS: segment changes older than it are deleted in chunks, on every backend,
but each profile's newest entry into each segment that exists, which tells a member since when it is
one (segmentMemberships' `since`)."""

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


async def _buyers(services: Services, count: int) -> list[str]:
    emails = [f"buyer{n}@example.com" for n in range(count)]
    outcomes = await ingest_events(services.store, [event("order_completed", email=e) for e in emails])
    return [o.profile_id or "" for o in outcomes]


async def test_old_changes_are_deleted_in_chunks_but_each_member_s_entry(
    services: Services, monkeypatch: pytest.MonkeyPatch
) -> None:
    store = services.store
    buyers = await _buyers(services, 2)
    segment = (await services.segments.create(BUYERS)).segment  # both enter
    await services.segments.update(segment.id, TWICE)  # both leave
    await services.segments.update(segment.id, BUYERS)  # both enter again
    entries = await store.segment_entries(buyers)
    assert [e.change for e in await store.segment_events(profile_id=buyers[0], limit=10)] == [
        MembershipChange.ENTERED,
        MembershipChange.EXITED,
        MembershipChange.ENTERED,
    ]
    monkeypatch.setattr(segment_history_retention, "CHUNK", 1)  # the loop over chunks, not one read
    later = clock.now() + timedelta(days=2)

    assert await forget_old_changes(store, kept_for=timedelta(days=3), now=later) == 0  # none old enough
    assert await forget_old_changes(store, kept_for=timedelta(days=1), now=later) == 4
    assert await forget_old_changes(store, kept_for=timedelta(days=1), now=later) == 0

    for profile_id in buyers:
        (kept,) = await store.segment_events(profile_id=profile_id, limit=10)
        assert kept.change is MembershipChange.ENTERED
    assert await store.segment_entries(buyers) == entries
    assert sorted(await store.member_ids(segment.id)) == sorted(buyers)  # memberships untouched


async def test_a_member_keeps_its_entry_when_an_exit_is_dated_after_it(
    services: Services, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Found by a review: a change is dated now again after one dated ahead by a clock running a day
    fast (segment.event_time), so a member's newest change by time can be an exit older than its
    entry; keeping each pair's newest change lost the entry, and `since` with it."""
    store = services.store
    (buyer,) = await _buyers(services, 1)
    real = clock.now
    segment = (await services.segments.create(BUYERS)).segment  # enters, now
    monkeypatch.setattr(clock, "now", lambda: real() + timedelta(days=1))
    await services.segments.update(segment.id, TWICE)  # leaves, dated a day ahead
    monkeypatch.setattr(clock, "now", real)
    await services.segments.update(segment.id, BUYERS)  # enters again, dated now
    entries = await store.segment_entries([buyer])
    assert segment.id in entries[buyer]

    assert await forget_old_changes(store, kept_for=timedelta(days=90), now=real() + timedelta(days=100)) == 2

    assert await store.member_ids(segment.id) == [buyer]
    assert await store.segment_entries([buyer]) == entries


async def test_a_deleted_segment_leaves_no_old_change_and_a_former_member_its_newest_entry(
    services: Services,
) -> None:
    store = services.store
    buyers = await _buyers(services, 3)
    for _ in range(2):  # created and deleted: every member entered, then left
        gone = (await services.segments.create(BUYERS)).segment
        await services.segments.delete(gone.id)
    kept = (await services.segments.create(BUYERS)).segment
    await services.segments.update(kept.id, TWICE)  # every member left: former members

    await forget_old_changes(store, kept_for=timedelta(days=90), now=clock.now() + timedelta(days=100))

    left = await store.segment_events(limit=100)
    assert {(e.segment_id, e.change) for e in left} == {(kept.id, MembershipChange.ENTERED)}
    assert sorted(e.profile_id for e in left) == sorted(buyers)
