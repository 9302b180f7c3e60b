"""Computed traits: RFM quintiles and segment names (pure), and the job on every storage backend:
what it writes, its progress, resuming after an interruption, and the profiling consent."""

from __future__ import annotations

import asyncio
import itertools
import json
from collections.abc import Sequence
from datetime import timedelta
from typing import Any

import pytest

from app.domain import clock
from app.domain.errors import Conflict
from app.domain.privacy import DEFAULT_PURPOSES as PURPOSES
from app.domain.traits.rfm import PROSPECT, SEGMENTS, Quintiles, RfmBase, RfmBoundaries, RfmValues, segment_name
from app.services import merging, privacy, recommendations, traits
from app.services.identity_policy import IdentityPolicy
from app.services.ingestion import IngestionPolicy, ingest_events
from app.services.ports import ProfileStore
from app.services.profile_changes import ProfileChanges, ProfilesChanged
from app.services.segment_bus import SegmentBus
from app.services.segments import SegmentEngine
from app.store.mongo.store import MongoStore
from app.store.sqlite.store import SQLiteStore
from tests.builders import event
from tests.faults import FaultyStore, InjectedFault
from tests.interleaving import StandIn

# -- quintiles ---------------------------------------------------------------------------------


def _scores(values: list[int], *, higher_is_better: bool = True) -> list[int]:
    counts: dict[int, int] = {}
    for value in values:
        counts[value] = counts.get(value, 0) + 1
    quintiles = Quintiles.of(counts, higher_is_better=higher_is_better)
    return [quintiles.score(v) for v in values]


@pytest.mark.parametrize(
    ("values", "expected"),
    [
        pytest.param(list(range(10)), [1, 1, 2, 2, 3, 3, 4, 4, 5, 5], id="ten-distinct-values-two-per-quintile"),
        pytest.param([10, 20, 30, 40, 50], [1, 2, 3, 4, 5], id="five-distinct-values"),
        pytest.param([7], [3], id="a-lone-customer-is-average"),
        pytest.param([4, 4, 4, 4], [3, 3, 3, 3], id="all-tied-all-average"),
        pytest.param([1, 9], [2, 4], id="two-customers"),
        pytest.param([1, 1, 1, 1, 1, 1, 2, 2, 5, 5], [2] * 6 + [4, 4, 5, 5], id="ties-share-one-score"),
    ],
)
def test_quintile_scores_give_equal_values_equal_scores(values: list[int], expected: list[int]) -> None:
    assert _scores(values) == expected


def test_recency_scores_fewer_days_higher() -> None:
    assert _scores([0, 10, 100, 200, 400], higher_is_better=False) == [5, 4, 3, 2, 1]


def test_values_between_or_beyond_the_cuts_score_by_the_cuts() -> None:
    quintiles = Quintiles.of({1: 6, 2: 2, 5: 2})
    assert quintiles.cuts == (1, 2, 2, 5)
    assert [quintiles.score(v) for v in (0, 1, 3, 4, 5, 99)] == [1, 2, 4, 4, 5, 5]


def test_an_empty_base_has_no_cuts_and_boundaries_survive_json() -> None:
    assert RfmBase().boundaries().recency.cuts == (None, None, None, None)
    boundaries = RfmBoundaries.of([RfmValues(3, 2, 5000), RfmValues(40, 1, 1200), RfmValues(300, 6, 90000)])
    assert RfmBoundaries.from_json(json.loads(json.dumps(boundaries.to_json()))) == boundaries
    assert boundaries.scores(RfmValues(3, 6, 90000)) == (5, 5, 5)


# -- segment names -----------------------------------------------------------------------------


def test_every_score_combination_has_exactly_one_segment() -> None:
    for r, f, m in itertools.product(range(1, 6), repeat=3):
        fm = (f + m + 1) // 2
        assert sum(1 for _, rs, fms in SEGMENTS if r in rs and fm in fms) == 1, (r, f, m)


@pytest.mark.parametrize(
    ("scores", "name"),
    [
        ((5, 5, 5), "Champions"),
        ((5, 4, 3), "Champions"),
        ((4, 4, 5), "Loyal"),
        ((5, 2, 3), "Potential loyalist"),
        ((5, 1, 1), "New"),
        ((4, 1, 1), "Promising"),
        ((3, 3, 3), "Needs attention"),
        ((3, 1, 2), "About to sleep"),
        ((1, 5, 5), "Cannot lose them"),
        ((2, 4, 3), "At risk"),
        ((2, 1, 2), "Hibernating"),
        ((1, 1, 1), "Lost"),
    ],
)
def test_segment_names_follow_the_table(scores: tuple[int, int, int], name: str) -> None:
    assert segment_name(*scores) == name


# -- the job -----------------------------------------------------------------------------------

START = clock.now()  # one instant for every order of a test, so that intervals are exact


def _order(email: str, days_ago: float, order_id: str, lines: list[tuple[str, int]], total: float) -> Any:
    return event(
        "order_completed",
        email=email,
        at=START - timedelta(days=days_ago),
        properties={
            "orderId": order_id,
            "total": total,
            "lines": [{"productId": p, "quantity": q, "price": total / len(lines)} for p, q in lines],
        },
    )


async def _land(store: ProfileStore, *events: Any) -> list[str]:
    outcomes = await ingest_events(store, list(events), IngestionPolicy())
    assert all(o.profile_id for o in outcomes), outcomes
    return [o.profile_id or "" for o in outcomes]


async def _catalogue(store: ProfileStore) -> None:
    await recommendations.upsert_products(
        store,
        [
            {"id": "shoe-1", "name": "Runner", "category": "shoes", "price": 80, "stock": 5},
            {"id": "bag-1", "name": "Tote", "category": "bags", "price": 40, "stock": 5},
        ],
    )


async def _base(store: ProfileStore) -> dict[str, str]:
    """Five buyers from best (recent, frequent, big) to worst, and one browser who never ordered."""
    await _catalogue(store)
    ids: dict[str, str] = {}
    for rank in range(5):
        email = f"buyer{rank}@example.com"
        orders = [
            _order(email, days_ago=10 + 50 * rank + 7 * n, order_id=f"o{rank}-{n}", lines=[("bag-1", 1)], total=100.0)
            for n in range(5 - rank)
        ]
        ids[email] = (await _land(store, *orders))[0]
    browse = event(
        "product_view",
        email="browser@example.com",
        at=clock.now() - timedelta(days=2),
        properties={"productId": "shoe-1", "category": "shoes"},
    )
    ids["browser@example.com"] = (await _land(store, browse))[0]
    return ids


async def test_the_job_scores_names_and_describes_every_profile(store: ProfileStore) -> None:
    ids = await _base(store)
    before = {pid: (await store.get_profile(pid)) for pid in ids.values()}

    result = await traits.recompute_traits(store)

    assert (result.processed, result.total_processed, result.resumed) == (6, 6, False)
    assert result.boundaries.customers == 5
    best = await store.get_profile(ids["buyer0@example.com"])
    worst = await store.get_profile(ids["buyer4@example.com"])
    browser = await store.get_profile(ids["browser@example.com"])
    assert best and worst and browser and best.rfm and worst.rfm and browser.rfm and best.computed
    assert (best.rfm.recency_score, best.rfm.frequency_score, best.rfm.monetary_score) == (5, 5, 5)
    assert best.rfm.segment == "Champions"
    assert (worst.rfm.recency_score, worst.rfm.frequency_score, worst.rfm.segment) == (1, 1, "Lost")
    assert browser.rfm.segment == PROSPECT and browser.rfm.recency_score is None
    # five orders a week apart: the next one is predicted a week after the last
    assert best.stats.last_order_at and best.computed.next_order_at
    assert best.computed.next_order_at - best.stats.last_order_at == timedelta(days=7)
    assert worst.computed and worst.computed.next_order_at is None  # a single order: no interval
    assert [a.category for a in best.computed.preferred_categories] == ["bags"]  # from the catalogue
    assert browser.computed and [a.category for a in browser.computed.preferred_categories] == ["shoes"]
    assert browser.computed.engagement.visits_per_week == pytest.approx(1 / 1, rel=0.01)  # at least a week
    # derived data: the version optimistic writers hold is untouched
    for pid, old in before.items():
        now = await store.get_profile(pid)
        assert old and now and (now.version, now.updated_at) == (old.version, old.updated_at)


class _UnderTheJob(StandIn):
    """The store, where `between` lands between the job's read of its profiles to describe and its
    write of their traits."""

    def __init__(self, store: ProfileStore) -> None:
        super().__init__(store)
        self._lists = 0

    async def list_profiles(self, *args: Any, **kwargs: Any) -> Any:
        page = await self._inner.list_profiles(*args, **kwargs)
        self._lists += 1
        if self._lists == 3:  # pass 1 read its page and the empty one after it: pass 2's page
            await self.between()
        return page

    async def between(self) -> None:
        raise NotImplementedError


class _ChangedUnderTheJob(_UnderTheJob):
    def __init__(self, store: ProfileStore, merge: tuple[str, str], erase: str) -> None:
        super().__init__(store)
        self._merge, self._erase = merge, erase

    async def between(self) -> None:  # a merge and an erasure
        survivor, merged = self._merge
        await merging.merge_profiles(self._inner, survivor, [merged], reason="r", actor="t", policy=IdentityPolicy())
        await privacy.delete_profile(self._inner, self._erase, actor="dpo")


async def test_profiles_merged_away_or_erased_while_the_job_runs_get_no_traits(store: ProfileStore) -> None:
    ids = await _base(store)
    survivor, merged, erased = ids["buyer0@example.com"], ids["buyer1@example.com"], ids["buyer2@example.com"]

    result = await traits.recompute_traits(_ChangedUnderTheJob(store, (survivor, merged), erased))  # type: ignore[arg-type]

    assert result.processed == 4  # six read, one merged away and one erased since
    assert await store.get_profile(erased) is None
    gone = await store.get_profile(merged)
    assert gone is not None and gone.merged_into == survivor and gone.rfm is None
    for email in ("buyer0@example.com", "buyer3@example.com", "buyer4@example.com", "browser@example.com"):
        described = await store.get_profile(ids[email])
        assert described is not None and described.rfm is not None


async def test_the_job_reports_progress_for_each_pass(store: ProfileStore) -> None:
    await _base(store)
    seen: list[tuple[str, int, int]] = []

    await traits.recompute_traits(store, progress=lambda *p: seen.append(p), page_size=4)

    assert seen == [("survey", 4, 6), ("survey", 6, 6), ("profiles", 4, 6), ("profiles", 6, 6)]


async def test_an_interrupted_job_resumes_after_the_last_saved_page(store: ProfileStore) -> None:
    ids = await _base(store)
    faulty = FaultyStore(store, writes=3)  # page 1 (2 profiles) is written, page 2 fails on its 2nd profile

    with pytest.raises(InjectedFault):
        await traits.recompute_traits(faulty, page_size=2)  # type: ignore[arg-type]

    saved = json.loads(await store.read_meta(traits.META_KEY) or "{}")
    assert (saved["status"], saved["processed"]) == ("running", 2)
    written: list[str] = []
    phases: set[str] = set()

    async def record(changes: Sequence[ProfilesChanged]) -> None:
        written.extend(profile_id for change in changes for profile_id in change.profile_ids)

    result = await traits.recompute_traits(
        store, page_size=2, changes=ProfileChanges(record), progress=lambda phase, *_: phases.add(phase)
    )

    assert result.resumed and result.job_id == saved["jobId"]
    assert (result.processed, result.total_processed) == (4, 6)
    assert result.boundaries.to_json() == saved["boundaries"]  # the same quintiles for the whole job
    assert phases == {"profiles"}  # the survey is not run again
    assert written == sorted(ids.values())[2:]
    for pid in ids.values():
        profile = await store.get_profile(pid)
        assert profile and profile.rfm and profile.rfm.computed_at == result.as_of
    assert json.loads(await store.read_meta(traits.META_KEY) or "{}")["status"] == "done"
    assert not (await traits.recompute_traits(store)).resumed  # a finished job is not resumed


def _second_job_meanwhile(store: ProfileStore) -> tuple[ProfileChanges, list[Exception]]:
    """Listeners of a job's changes that start a second job on `store`, and the refusals it meets."""
    refused: list[Exception] = []

    async def meanwhile(changes: Sequence[ProfilesChanged]) -> None:
        try:
            await traits.recompute_traits(store)
        except Conflict as exc:
            refused.append(exc)

    return ProfileChanges(meanwhile), refused


async def test_only_one_job_runs_at_a_time(store: ProfileStore) -> None:
    await _base(store)
    meanwhile, refused = _second_job_meanwhile(store)
    await traits.recompute_traits(store, changes=meanwhile)
    assert len(refused) == 1


def _as_another_process_opens(store: ProfileStore) -> ProfileStore:
    if isinstance(store, SQLiteStore):
        return SQLiteStore(store.path)
    database = getattr(store._db, "_db", store._db)  # type: ignore[attr-defined]  # the fake's, or the driver's
    return MongoStore(store._client, database.name)  # type: ignore[attr-defined]


async def test_one_job_at_a_time_across_the_server_processes(store: ProfileStore) -> None:
    """Every worker process runs the schedule: of two that start a job at once, one runs it."""
    await _base(store)
    other = _as_another_process_opens(store)
    meanwhile, refused = _second_job_meanwhile(other)
    try:
        first = await traits.recompute_traits(store, changes=meanwhile)
        assert len(refused) == 1 and "already running" in str(refused[0])
        second = await traits.recompute_traits(other)  # once the first has ended
        assert second.job_id != first.job_id and not second.resumed
    finally:
        await other.close()


async def test_a_refused_profiling_consent_gets_no_traits(store: ProfileStore) -> None:
    ids = await _base(store)
    refusal = event("consent_update", email="buyer0@example.com", properties={"purpose": "profiling", "granted": False})
    await _land(store, refusal)

    result = await traits.recompute_traits(store)

    refused = await store.get_profile(ids["buyer0@example.com"])
    assert refused and refused.rfm is None and refused.computed is None
    assert result.boundaries.customers == 4  # not part of the base either


@pytest.mark.parametrize("through", ["event", "setConsent"])
async def test_a_profiling_refusal_drops_the_persons_traits_and_their_segments_at_once(
    store: ProfileStore, through: str
) -> None:
    ids = await _base(store)
    engine = SegmentEngine(store, SegmentBus())
    heard = ProfileChanges(engine.profiles_changed)
    await traits.recompute_traits(store, changes=heard)
    best = {"name": "Best", "condition": {"compare": {"path": "rfm.recencyScore", "op": "gte", "value": 1}}}
    segment = (await engine.create(best)).segment
    buyer = ids["buyer0@example.com"]
    assert buyer in await store.member_ids(segment.id)

    if through == "event":
        refusal = event(
            "consent_update", email="buyer0@example.com", properties={"purpose": "profiling", "granted": False}
        )
        await ingest_events(store, [refusal], IngestionPolicy(changes=heard))
    else:
        await privacy.set_consent(
            store, buyer, "profiling", False, "preference centre", purposes=PURPOSES, changes=heard
        )

    refused = await store.get_profile(buyer)
    assert refused and refused.rfm is None and refused.computed is None
    assert buyer not in await store.member_ids(segment.id)
    other = await store.get_profile(ids["buyer1@example.com"])
    assert other and other.rfm is not None  # nobody else's


async def test_a_merge_with_a_profile_that_refused_profiling_leaves_the_person_unprofiled(store: ProfileStore) -> None:
    ids = await _base(store)
    await traits.recompute_traits(store)
    refusal = event("consent_update", email="b.zero@example.com", properties={"purpose": "profiling", "granted": False})
    (refusing,) = await _land(store, refusal)
    survivor = ids["buyer0@example.com"]

    _, merged = await merging.merge_profiles(
        store, survivor, [refusing], reason="r", actor="t", policy=IdentityPolicy()
    )

    assert not merged.consents["profiling"].granted  # the newest decision
    stored = await store.get_profile(survivor)
    assert stored and stored.rfm is None and stored.computed is None


class _RefusedUnderTheJob(_UnderTheJob):
    def __init__(self, store: ProfileStore, refuse: str) -> None:
        super().__init__(store)
        self._refuse = refuse

    async def between(self) -> None:  # a refusal of profiling
        await privacy.set_consent(self._inner, self._refuse, "profiling", False, "form", purposes=PURPOSES)


async def test_a_profiling_refusal_made_while_the_job_runs_gets_no_traits(store: ProfileStore) -> None:
    ids = await _base(store)
    buyer = ids["buyer0@example.com"]

    await traits.recompute_traits(_RefusedUnderTheJob(store, buyer))  # type: ignore[arg-type]

    refused = await store.get_profile(buyer)
    assert refused and not refused.consents["profiling"].granted
    assert refused.rfm is None and refused.computed is None
    other = await store.get_profile(ids["buyer1@example.com"])
    assert other and other.rfm is not None


async def test_the_job_keeps_best_sellers_and_co_purchases_on_products(store: ProfileStore) -> None:
    await _catalogue(store)
    await _land(store, _order("a@example.com", 3, "a1", [("shoe-1", 1), ("bag-1", 2)], 160.0))
    await _land(store, _order("b@example.com", 200, "b1", [("bag-1", 1)], 40.0))  # too old to count as a sale

    await traits.recompute_traits(store)

    shoe, bag = sorted(await store.get_products(["shoe-1", "bag-1"]), key=lambda p: p.id, reverse=True)
    assert (shoe.sales, bag.sales) == (1, 2)
    assert [(link.product_id, link.count) for link in shoe.also_bought] == [("bag-1", 1)]
    assert [p.id for p in await store.best_sellers(None, limit=5)] == ["bag-1", "shoe-1"]
    assert [p.id for p in await store.best_sellers("shoes", limit=5)] == ["shoe-1"]


async def test_segments_reading_rfm_follow_the_job(store: ProfileStore) -> None:
    ids = await _base(store)
    engine = SegmentEngine(store, SegmentBus())
    lost = {"name": "Lost", "condition": {"compare": {"path": "rfm.segment", "op": "eq", "value": "Lost"}}}
    segment = (await engine.create(lost)).segment
    assert await store.member_ids(segment.id) == []  # no traits yet

    await traits.recompute_traits(store, changes=ProfileChanges(engine.profiles_changed))

    assert await store.member_ids(segment.id) == [ids["buyer4@example.com"]]


@pytest.mark.parametrize("process", ["stopped", "killed"])
async def test_the_schedule_resumes_an_interrupted_job(
    store: ProfileStore, monkeypatch: pytest.MonkeyPatch, process: str
) -> None:
    """At once after a job that failed; a killed process leaves its lease held: once it runs out."""
    await _base(store)
    with pytest.raises(InjectedFault):
        await traits.recompute_traits(FaultyStore(store, writes=1), page_size=2)  # type: ignore[arg-type]
    if process == "killed":
        monkeypatch.setattr(traits, "LEASE_FOR", timedelta(seconds=0.3))
        start = clock.now()
        assert await store.take_lease(traits.LEASE, "killed", now=start, until=start + traits.LEASE_FOR)
    schedule = asyncio.create_task(traits.keep_recomputing(store, every_minutes=60))
    try:
        for _ in range(500):
            if json.loads(await store.read_meta(traits.META_KEY) or "{}")["status"] == "done":
                break
            await asyncio.sleep(0.01)
        assert json.loads(await store.read_meta(traits.META_KEY) or "{}")["processed"] == 6
    finally:
        schedule.cancel()
        await asyncio.gather(schedule, return_exceptions=True)


@pytest.mark.parametrize("last_job", ["a period ago", "never"])
async def test_a_restarted_schedule_runs_the_job_a_period_after_the_last_one_not_after_its_start(
    store: ProfileStore, monkeypatch: pytest.MonkeyPatch, last_job: str
) -> None:
    """Found by an audit: each process waited a whole period from its start, so a server restarted
    more often than CDP_TRAITS_EVERY_MINUTES never recomputed, and a store no job ever ran on waited
    an hour after each start."""
    await _base(store)
    before = None
    if last_job == "a period ago":
        await traits.recompute_traits(store)
        before = json.loads(await store.read_meta(traits.META_KEY) or "{}")["jobId"]
        real = clock.now
        monkeypatch.setattr(clock, "now", lambda: real() + timedelta(minutes=60))  # restarted an hour later
    else:
        monkeypatch.setattr(traits, "FIRST_ROUND_AFTER", timedelta(seconds=0.05))
    schedule = asyncio.create_task(traits.keep_recomputing(store, every_minutes=60))
    try:
        for _ in range(300):
            job = json.loads(await store.read_meta(traits.META_KEY) or "{}")
            if job.get("status") == "done" and job["jobId"] != before:
                break
            await asyncio.sleep(0.01)
        assert job.get("status") == "done" and job["jobId"] != before, job
    finally:
        schedule.cancel()
        await asyncio.gather(schedule, return_exceptions=True)


async def test_a_round_planned_before_a_job_finished_waits_a_period_after_it(
    store: ProfileStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Found on a first start: the schedule found a store with no job and planned its first round a
    minute on; the demo data's load computed the traits meanwhile, and the round ran the job again.
    A round now finds the job that finished since it was planned, and waits a period after it."""
    await _base(store)
    monkeypatch.setattr(traits, "FIRST_ROUND_AFTER", timedelta(seconds=0.3))
    schedule = asyncio.create_task(traits.keep_recomputing(store, every_minutes=60))
    try:
        await asyncio.sleep(0.05)  # the schedule has planned its first round (none ran on this store)
        loaded = (await traits.recompute_traits(store)).job_id  # as the demo data's load does
        await asyncio.sleep(0.6)  # past the first round
        job = json.loads(await store.read_meta(traits.META_KEY) or "{}")
        assert (job["jobId"], job["status"]) == (loaded, "done"), job
        assert not schedule.done()  # waiting for its next round, an hour after the load's job
    finally:
        schedule.cancel()
        await asyncio.gather(schedule, return_exceptions=True)


async def test_a_job_another_process_resumed_is_not_run_again_in_full_when_this_one_starts(
    store: ProfileStore,
) -> None:
    await _base(store)
    with pytest.raises(InjectedFault):
        await traits.recompute_traits(FaultyStore(store, writes=1), page_size=2)  # type: ignore[arg-type]
    interrupted = json.loads(await store.read_meta(traits.META_KEY) or "{}")["jobId"]

    first = await traits.resume_traits_job(store)  # the process that got there first
    assert first is not None and first.resumed and first.job_id == interrupted
    assert await traits.resume_traits_job(store) is None  # the other: nothing left to resume, nothing started
    assert json.loads(await store.read_meta(traits.META_KEY) or "{}")["jobId"] == interrupted


async def test_one_job_a_round_whatever_the_number_of_workers(store: ProfileStore) -> None:
    await _base(store)
    first = await traits.recompute_this_round(store, "worker 1", every_minutes=60)
    assert first is not None and first.processed == 6
    assert await traits.recompute_this_round(store, "worker 2", every_minutes=60) is None  # its round is taken
    assert json.loads(await store.read_meta(traits.META_KEY) or "{}")["jobId"] == first.job_id


async def test_a_profile_whose_traits_cannot_be_computed_stops_no_one_else(
    store: ProfileStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    ids = await _base(store)
    poison = ids["buyer2@example.com"]
    real = traits.computed_traits

    def failing_for_one(profile: Any, *args: Any, **kwargs: Any) -> Any:  # a bug met by one profile's data
        if profile.id == poison:
            raise ValueError("cannot compute")
        return real(profile, *args, **kwargs)

    monkeypatch.setattr(traits, "computed_traits", failing_for_one)
    await traits.recompute_traits(store, page_size=2)
    described = {pid for pid in ids.values() if ((await store.get_profile(pid)) or pytest.fail()).rfm is not None}
    assert described == set(ids.values()) - {poison}


async def test_a_profiling_refusers_purchases_still_count_in_a_products_sales(store: ProfileStore) -> None:
    """Found by an audit of consent: the job skipped a person who refused profiling for the sales too,
    so best sellers and "popular: N sold" undercounted. A count of units profiles nobody; their baskets
    still teach no co-purchase."""
    await _catalogue(store)
    await _land(store, _order("a@example.com", 3, "a1", [("shoe-1", 1), ("bag-1", 1)], 120.0))
    await _land(store, _order("b@example.com", 3, "b1", [("shoe-1", 1), ("bag-1", 1)], 120.0))
    refusal = event("consent_update", email="b@example.com", properties={"purpose": "profiling", "granted": False})
    await _land(store, refusal)

    await traits.recompute_traits(store)

    shoe, bag = sorted(await store.get_products(["shoe-1", "bag-1"]), key=lambda p: p.id, reverse=True)
    assert (shoe.sales, bag.sales) == (2, 2)
    assert [(link.product_id, link.count) for link in shoe.also_bought] == [("bag-1", 1)]  # a's basket only
