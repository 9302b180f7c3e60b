"""One path for "profiles changed": every write reports what it changed (profile ids, cause, the
paths it touched) through the publisher the composition root wires, and segment upkeep, metrics and
subscriptions follow whatever wrote, the command-line loader included."""

from __future__ import annotations

import asyncio
import json
import logging
import os
import subprocess
import sys
from collections.abc import Sequence
from datetime import timedelta
from pathlib import Path

import pytest

from app.bootstrap import Services
from app.domain import clock
from app.domain.events import RawIdentifier
from app.services import merging, privacy, profile_reads, profiles, traits
from app.services.identity_policy import IdentityPolicy
from app.services.ingestion import EventStatus, IngestionPolicy, ingest_events
from app.services.ports import ProfileStore
from app.services.profile_changes import Cause, ProfileChanges, ProfilesChanged, settled, uncancelled
from app.settings import Settings
from app.store.sqlite.store import SQLiteStore
from tests.builders import event

ROOT = Path(__file__).resolve().parents[2]
CART_ABANDONERS = json.loads((ROOT / "fixtures" / "segments.jsonl").read_text().splitlines()[0])
BUYERS = {"name": "Buyers", "condition": {"compare": {"path": "stats.orders", "op": "gte", "value": 1}}}
JEAN = {
    "first_name": "Jean",
    "last_name": "Dupont",
    "birth_date": "1980-03-12",
    "addresses": [{"street": "12 rue Victor Hugo", "city": "Lyon", "postcode": "69002", "country": "FR"}],
}
JEAN_AGAIN = {  # the same man typed again: a surname typo, day and month swapped, another mailbox
    **JEAN,
    "last_name": "Dupond",
    "birth_date": "1980-12-03",
    "addresses": [{"street": "12 r. Victor Hugo", "city": "Lyon", "postcode": "69002", "country": "FR"}],
}


class Heard:
    """A listener that keeps what it hears."""

    def __init__(self) -> None:
        self.changes: list[ProfilesChanged] = []

    async def __call__(self, changes: Sequence[ProfilesChanged]) -> None:
        self.changes += changes

    def causes(self) -> list[tuple[Cause, tuple[str, ...]]]:
        return [(c.cause, c.profile_ids) for c in self.changes]


async def test_every_kind_of_write_reports_its_profiles_cause_and_paths(store: ProfileStore) -> None:
    heard = Heard()
    changes = ProfileChanges(heard)
    policy = IngestionPolicy(changes=changes)
    made = await ingest_events(store, [event("page_view", email=f"{n}@example.com") for n in "ab"], policy)
    a, b = made[0].profile_id, made[1].profile_id
    assert a and b
    # Profiles an event made: every path changed (a segment of what they lack may take them in).
    assert [(c.profile_ids, c.paths) for c in heard.changes] == [((a, b), None)]
    heard.changes.clear()

    await ingest_events(
        store,
        [
            event("order_completed", email="a@example.com"),
            event("order_completed", email="b@example.com", minutes=1),
            event("consent_update", email="b@example.com", properties={"purpose": "profiling", "granted": True}),
        ],
        policy,
    )
    orders, consents = sorted(heard.changes, key=lambda c: len(c.event_types))
    assert (orders.cause, orders.profile_ids, orders.event_types) == (Cause.EVENT, (a,), {"order_completed"})
    assert consents.profile_ids == (b,) and consents.event_types == {"order_completed", "consent_update"}
    assert orders.paths == {"stats", "identifiers", "recent"} and consents.paths == orders.paths | {
        "consents",
        "rfm",
        "computed",
    }

    heard.changes.clear()
    upserted = await profiles.upsert_profile(
        store, [RawIdentifier("email", "a@example.com")], {"first_name": "Ann"}, changes=changes
    )
    await privacy.set_consent(store, a, "email_marketing", True, "form", purposes=("email_marketing",), changes=changes)
    record, _ = await merging.merge_profiles(
        store, a, [b], reason="same", actor="steward", policy=IdentityPolicy(), changes=changes
    )
    await merging.unmerge_profile(store, record.id, actor="steward", changes=changes)
    await traits.recompute_traits(store, changes=changes)
    await privacy.delete_profile(store, b, actor="dpo", changes=changes)
    assert heard.causes() == [
        (Cause.UPSERT, (upserted.id,)),
        (Cause.CONSENT, (a,)),
        (Cause.MERGE, (a, b)),
        (Cause.UNMERGE, (a, b)),
        (Cause.TRAITS, tuple(sorted((a, b)))),
        (Cause.ERASURE, (b,)),
    ]
    consent, traits_job = heard.changes[1], heard.changes[4]
    assert consent.paths == {"consents", "rfm", "computed"} and traits_job.paths == {"rfm", "computed"}
    assert heard.changes[0].paths is None and heard.changes[2].paths is None  # any field may have changed


async def test_a_batch_reports_each_profile_once_with_the_types_that_landed_on_it(store: ProfileStore) -> None:
    """More events than go inline (their changes are gone through on a worker thread): each profile is
    reported once, grouped with the others that received the same types; a refused event adds nothing."""
    heard = Heard()
    policy = IngestionPolicy(changes=ProfileChanges(heard))
    batch = [event("page_view", email=f"p{n % 3}@example.com", minutes=n, message_id=f"bp-{n}") for n in range(27)]
    batch += [
        event("order_completed", email="p0@example.com", minutes=30, message_id="bo"),
        event("warp", email="p1@example.com", minutes=31, message_id="bw"),  # an unknown type: REJECTED
    ]
    outcomes = await ingest_events(store, batch, policy)
    owner = [outcomes[n].profile_id for n in range(3)]
    assert all(owner) and len(set(owner)) == 3 and outcomes[-1].profile_id is None
    reported = {(frozenset(c.profile_ids), c.event_types) for c in heard.changes}
    assert reported == {
        (frozenset(owner[:1]), frozenset({"page_view", "order_completed"})),
        (frozenset(owner[1:]), frozenset({"page_view"})),
    }
    assert sum(len(c.profile_ids) for c in heard.changes) == 3


async def test_an_automatic_merge_reports_the_survivor_too(store: ProfileStore) -> None:
    heard = Heard()
    fuzzy = IdentityPolicy(fuzzy_merge_score=0.9)
    first = await profiles.upsert_profile(store, [RawIdentifier("email", "jean@example.com")], JEAN, policy=fuzzy)

    again = await profiles.upsert_profile(
        store, [RawIdentifier("email", "jd@example.org")], JEAN_AGAIN, policy=fuzzy, changes=ProfileChanges(heard)
    )

    assert again.id == first.id  # the older profile survived
    # The merge first: it runs before the write's upkeep (SegmentEngine.missed_writes), as after a batch.
    (merge, upsert) = heard.changes
    assert upsert.cause is Cause.UPSERT and upsert.profile_ids != (first.id,)
    assert (merge.cause, merge.profile_ids) == (Cause.MERGE, (first.id, *upsert.profile_ids))


async def test_a_failing_listener_fails_neither_the_write_nor_the_next_listener(
    store: ProfileStore, caplog: pytest.LogCaptureFixture
) -> None:
    async def broken(changes: Sequence[ProfilesChanged]) -> None:
        raise RuntimeError("listener bug")

    heard = Heard()
    outcomes = await ingest_events(
        store, [event("page_view", email="a@example.com")], IngestionPolicy(changes=ProfileChanges(broken, heard))
    )

    assert outcomes[0].status.value == "ACCEPTED"
    assert await store.get_profile(outcomes[0].profile_id or "") is not None  # durable, reported as such
    assert heard.causes() == [(Cause.EVENT, (outcomes[0].profile_id,))]
    (logged,) = [r for r in caplog.records if r.name == "cdp.changes"]
    assert logged.levelno == logging.ERROR and logged.exc_info and "listener bug" in str(logged.exc_info[1])


async def test_a_write_whose_caller_goes_away_after_the_commit_still_keeps_segments_up(store: ProfileStore) -> None:
    """A client that goes (a WebSocket closed, a request cancelled) once its events are committed:
    the upkeep that follows the write is not cancelled with it. A request gets the batch's outcomes
    all the same (a server stopping past its grace period answered 500 for a stored batch); any other
    caller (a load, the demo seed, Ctrl-C) is cancelled as asked."""
    services = Services(settings=Settings(seed_fixtures=False), store=store, ingestion=IngestionPolicy())
    segment = (await services.segments.create(BUYERS)).segment
    listening, go, done = asyncio.Event(), asyncio.Event(), asyncio.Event()

    async def slow_upkeep(changes: Sequence[ProfilesChanged]) -> None:
        listening.set()
        await go.wait()
        await services.segments.profiles_changed(changes)
        done.set()

    policy = IngestionPolicy(changes=ProfileChanges(slow_upkeep))
    load = asyncio.create_task(ingest_events(store, [event("page_view", email="b@example.com")], policy))
    await listening.wait()  # committed, and the listeners told
    load.cancel()
    with pytest.raises(asyncio.CancelledError):
        await load
    go.set()
    assert await settled(timeout=10) == 0
    for flag in (listening, go, done):
        flag.clear()
    request = asyncio.create_task(
        ingest_events(store, [event("order_completed", email="a@example.com")], policy, answer_once_committed=True)
    )
    await listening.wait()
    request.cancel()
    [outcome] = await request
    assert outcome.status is EventStatus.ACCEPTED
    assert await settled(timeout=0.05) > 0  # what a shutdown waits for before closing the store
    go.set()
    assert await settled(timeout=10) == 0
    assert done.is_set()
    buyer = await profile_reads.get_profile_by_identifier(store, "email", "a@example.com") or pytest.fail()
    assert await store.member_ids(segment.id) == [buyer.id]


async def test_work_made_uncancelled_inside_such_work_runs_in_its_task_and_is_not_cut_short() -> None:
    """What follows a write runs in a task of its own that its caller cannot cancel; the listeners
    it tells, made uncancelled again, run in that same task (a task of their own cost three turns of a
    busy loop), and the caller's cancellation cuts neither short."""
    started, go = asyncio.Event(), asyncio.Event()
    tasks: list[asyncio.Task[object] | None] = []

    async def inner() -> str:
        tasks.append(asyncio.current_task())
        started.set()
        await go.wait()
        return "told"

    async def outer() -> str:
        tasks.append(asyncio.current_task())
        return await uncancelled(inner())

    caller = asyncio.create_task(uncancelled(outer()))
    await started.wait()
    caller.cancel()
    with pytest.raises(asyncio.CancelledError):
        await caller
    assert await settled(timeout=0.05) == 1  # still running, in one task
    go.set()
    assert await settled(timeout=10) == 0
    outer_task, inner_task = tasks
    assert inner_task is outer_task and outer_task is not caller
    assert outer_task is not None and outer_task.result() == "told"


async def test_the_composition_root_wires_segments_and_metrics_to_every_write(store: ProfileStore) -> None:
    services = Services(settings=Settings(seed_fixtures=False), store=store, ingestion=IngestionPolicy())
    segment = (await services.segments.create(BUYERS)).segment

    (landed,) = await ingest_events(store, [event("order_completed", email="a@example.com")], services.ingestion)
    upserted = await profiles.upsert_profile(
        store, [RawIdentifier("email", "b@example.com")], {"first_name": "Bo"}, changes=services.changes
    )
    await merging.merge_profiles(
        store,
        landed.profile_id or "",
        [upserted.id],
        reason="same",
        actor="s",
        policy=IdentityPolicy(),
        changes=services.changes,
    )

    assert await store.member_ids(segment.id) == [landed.profile_id]
    exposition = services.metrics.exposition().decode()
    for line in (
        'cdp_profile_changes_total{cause="event"} 1.0',
        'cdp_profile_changes_total{cause="profile updated"} 1.0',
        'cdp_profile_changes_total{cause="merge"} 2.0',
        'cdp_merges_total{kind="merge"} 1.0',
    ):
        assert line in exposition


async def test_python_m_app_load_updates_segments_as_the_api_does(tmp_path: Path) -> None:
    database = tmp_path / "cdp.sqlite3"
    store = SQLiteStore(database)
    services = Services(settings=Settings(seed_fixtures=False), store=store, ingestion=IngestionPolicy())
    await services.segments.create({k: v for k, v in CART_ABANDONERS.items() if k != "_id"}, segment_id="cart")
    await store.close()
    data = tmp_path / "data"
    data.mkdir()
    abandoned = {
        "_id": "web-1",
        "type": "cart_abandoned",
        "channel": "web",
        "timestamp": {"$date": clock.to_iso(clock.now() - timedelta(days=1))},
        "identifiers": [{"type": "email", "value": "loaded@example.com"}],
        "properties": {"cartId": "cart-1", "value": 84.5},
    }
    (data / "events.jsonl").write_text(json.dumps(abandoned) + "\n")

    subprocess.run(
        [sys.executable, "-m", "app", "load", str(data)],
        cwd=ROOT,
        env={**os.environ, "CDP_DATABASE_URL": f"sqlite:///{database}", "PYTHONPATH": str(ROOT)},
        check=True,
        capture_output=True,
        timeout=120,
    )

    store = SQLiteStore(database)
    try:
        profile = await profile_reads.get_profile_by_identifier(store, "email", "loaded@example.com")
        assert profile is not None and profile.stats.cart_abandons == 1
        assert profile.segments == ["cart"]
        (entered,) = await store.segment_events(segment_id="cart", limit=10)
        assert (entered.profile_id, entered.cause) == (profile.id, "event")
    finally:
        await store.close()
