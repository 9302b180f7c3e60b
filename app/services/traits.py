"""The computed-traits job: RFM scores and segment, engagement, preferred categories and the next
order for every live profile, plus the best-seller and co-purchase signals on products.

Pass 1 ("survey") reads every live profile's order stats, page by page, for the quintile
boundaries, and counts sales and co-purchases; it is read-only until it writes the product signals
at its end, so an interruption there simply starts it over. Pass 2 ("profiles") writes each
profile's traits, one single-document update per profile, and saves a resume point (job id, as-of
time, boundaries, last profile id) in the store's meta after each page: a job interrupted in pass 2
continues after the last saved page, with the same boundaries, when it is run again.

Traits are derived data: their write bumps neither `version` nor `updatedAt`, so that an ingestion
or merge holding an expected version never conflicts with the job (the job writes only `rfm` and
`computed`, which nothing else writes but a refusal of profiling, clearing them; the job's write reads
that consent in its transaction, so no one's update is lost either way). One job runs at a time over
the store, from any of the server's processes: it holds a lease, renewed after every page.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time
import uuid
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from app.domain import clock
from app.domain.errors import Conflict, StoreUnavailable
from app.domain.products import CoPurchase
from app.domain.profile import Interaction, Profile
from app.domain.profile_change import ProfileChange
from app.domain.profile_query import ProfileFilter
from app.domain.traits.co_purchase import CoPurchases
from app.domain.traits.computed import PROFILED_FIELDS, computed_traits, profiling_refused, profiling_refused_in
from app.domain.traits.orders import purchases, unique
from app.domain.traits.preferences import products_mentioned
from app.domain.traits.rfm import RfmBase, RfmBoundaries, rfm_values
from app.services.leases import hold_for
from app.services.order_history import orders_of
from app.services.ports import ProfileStore, StoreTransaction
from app.services.profile_changes import UNHEARD, Cause, ProfileChanges, ProfilesChanged

META_KEY = "traitsJob"
FIRST_ROUND_AFTER = timedelta(minutes=1)  # a store no job ever finished on (not the demo's: its seed runs one)
PAGE_SIZE = 200
SALES_DAYS = 90  # best sellers: units sold in this many days before the job
TRAIT_PATHS = PROFILED_FIELDS  # all the job writes (segments reading neither need not look again)

Progress = Callable[[str, int, int], None]  # (phase: "survey" or "profiles", profiles done, profiles in all)
log = logging.getLogger("cdp.traits")
# One job at a time over the store, whichever process of the server starts it (each runs the schedule):
# the job holds a lease, renewed after every page; one whose process died is taken over after this.
LEASE = "traitsJob"
LEASE_FOR = timedelta(minutes=5)
# The schedule's round: taken by one process a period, held for this share of it (never given back).
ROUND_LEASE = "traitsRound"
ROUND_SHARE = 0.9


@dataclass(frozen=True, slots=True)
class TraitsJobResult:
    job_id: str
    processed: int  # profiles whose traits this run wrote (a resumed run: those after the resume point)
    total_processed: int  # over the whole job, runs before an interruption included
    resumed: bool
    as_of: datetime
    duration_seconds: float
    boundaries: RfmBoundaries


@dataclass(slots=True)
class _ResumePoint:
    job_id: str
    as_of: datetime
    boundaries: RfmBoundaries
    after: str | None = None
    processed: int = 0

    def to_json(self, status: str, **extra: Any) -> str:
        return json.dumps(
            {
                "status": status,
                "jobId": self.job_id,
                "asOf": clock.to_iso(self.as_of),
                "boundaries": self.boundaries.to_json(),
                "after": self.after,
                "processed": self.processed,
                **extra,
            }
        )

    @classmethod
    def from_json(cls, text: str) -> _ResumePoint:
        data = json.loads(text)
        return cls(
            job_id=data["jobId"],
            as_of=datetime.fromisoformat(data["asOf"].replace("Z", "+00:00")),
            boundaries=RfmBoundaries.from_json(data["boundaries"]),
            after=data.get("after"),
            processed=int(data.get("processed", 0)),
        )


async def unfinished_job(store: ProfileStore) -> str | None:
    """The id of a job interrupted in pass 2, if there is one."""
    text = await store.read_meta(META_KEY)
    if not text or json.loads(text).get("status") != "running":
        return None
    return str(json.loads(text)["jobId"])


async def recompute_traits(
    store: ProfileStore,
    *,
    progress: Progress | None = None,
    changes: ProfileChanges = UNHEARD,
    restart: bool = False,
    page_size: int = PAGE_SIZE,
) -> TraitsJobResult:
    """Run the job, continuing an interrupted one unless `restart`. One job at a time over the store,
    from any process: a second call meanwhile gets Conflict."""
    result = await _job(store, progress, changes, restart=restart, page_size=page_size, resume_only=False)
    assert result is not None  # always a job when not only resuming
    return result


async def resume_traits_job(store: ProfileStore, *, changes: ProfileChanges = UNHEARD) -> TraitsJobResult | None:
    """Finish the job a stopped process left; None when there is none (another process finished it
    already): a process starting never turns another's resumed job into a second, full one."""
    return await _job(store, None, changes, restart=False, page_size=PAGE_SIZE, resume_only=True)


async def _job(
    store: ProfileStore,
    progress: Progress | None,
    changes: ProfileChanges,
    *,
    restart: bool,
    page_size: int,
    resume_only: bool,
) -> TraitsJobResult | None:
    lease = _Lease(store, uuid.uuid4().hex)
    await lease.renew()
    try:
        started = time.monotonic()
        text = None if restart else await store.read_meta(META_KEY)
        resumed = bool(text) and json.loads(text or "{}").get("status") == "running"
        if resume_only and not resumed:
            return None
        if resumed:
            point = _ResumePoint.from_json(text or "")
            log.info("resuming computed-traits job %s after profile %s", point.job_id, point.after)
        else:
            as_of = clock.now()
            point = _ResumePoint(
                "traits_" + uuid.uuid4().hex[:16], as_of, await _survey(store, as_of, page_size, progress, lease)
            )
            await store.write_meta(META_KEY, point.to_json("running"))
        already = point.processed
        await _write_traits(store, point, page_size, progress, changes, lease)
        duration = round(time.monotonic() - started, 3)
        await store.write_meta(
            META_KEY, point.to_json("done", finishedAt=clock.to_iso(clock.now()), durationSeconds=duration)
        )
        return TraitsJobResult(
            job_id=point.job_id,
            processed=point.processed - already,
            total_processed=point.processed,
            resumed=resumed,
            as_of=point.as_of,
            duration_seconds=duration,
            boundaries=point.boundaries,
        )
    finally:
        await lease.end()


@dataclass(frozen=True, slots=True)
class _Lease:
    store: ProfileStore
    holder: str

    async def renew(self) -> None:
        """Take or keep the job's lease: Conflict when another job holds it (or took it over)."""
        if not await hold_for(self.store, LEASE, self.holder, LEASE_FOR):
            raise Conflict("a computed-traits job is already running; try again when it ends")

    async def end(self) -> None:
        with contextlib.suppress(StoreUnavailable):  # it runs out by itself
            await self.store.end_lease(LEASE, self.holder)


async def _survey(
    store: ProfileStore, as_of: datetime, page_size: int, progress: Progress | None, lease: _Lease
) -> RfmBoundaries:
    """Pass 1: the base's RFM distribution, sales in the last SALES_DAYS and co-purchases."""
    base, together, sales = RfmBase(), CoPurchases(), dict[str, int]()
    since = as_of - timedelta(days=SALES_DAYS)
    total, done, after = await store.count_profiles(), 0, None
    while page := await store.list_profiles(ProfileFilter(), after=after, limit=page_size):
        for profile in page:
            values = rfm_values(profile.stats, as_of=as_of)
            if values is None:
                continue
            # A refusal of profiling keeps the person out of the scores and of what their baskets teach;
            # what they bought still counts in a product's sales (a count of units, nobody's profile).
            refused = profiling_refused(profile)
            if not refused:
                base.add(values)
            bought = purchases(await orders_of(store, profile))
            if not refused:
                together.add_customer(p.product_id for p in bought)
            for purchase in bought:
                if purchase.at >= since:
                    sales[purchase.product_id] = sales.get(purchase.product_id, 0) + purchase.quantity
        done, after = done + len(page), page[-1].id
        await lease.renew()
        if progress is not None:
            progress("survey", done, max(total, done))
    links = together.links()
    await store.set_product_signals(
        {
            product_id: (
                sales.get(product_id, 0),
                [CoPurchase(product_id=o, count=n) for o, n in links.get(product_id, [])],
            )
            for product_id in sales.keys() | links.keys()
        }
    )
    return base.boundaries()


async def _write_traits(
    store: ProfileStore,
    point: _ResumePoint,
    page_size: int,
    progress: Progress | None,
    changes: ProfileChanges,
    lease: _Lease,
) -> None:
    """Pass 2: each profile's traits, a page at a time, saving the resume point after each page."""
    total = await store.count_profiles()
    categories: dict[str, str] = {}  # product id → category, read once per job
    while page := await store.list_profiles(ProfileFilter(), after=point.after, limit=page_size):
        histories = {p.id: unique([*p.recent, *await orders_of(store, p)]) for p in page}
        await _learn_categories(store, categories, histories.values())
        # A page's traits are ~14 ms of Python at 200 profiles: a worker thread computes them, not the loop.
        updates = await asyncio.to_thread(_changes, page, histories, categories, point)
        await lease.renew()  # a job that lost it (its process stalled past LEASE_FOR) writes no more
        written = await store.run_in_transaction(_write(updates))
        point.after, point.processed = page[-1].id, point.processed + len(written)
        await store.write_meta(META_KEY, point.to_json("running"))
        await changes.publish(ProfilesChanged.of(Cause.TRAITS, written, paths=TRAIT_PATHS))  # each page, as written
        if progress is not None:
            progress("profiles", point.processed, max(total, point.processed))


async def _learn_categories(store: ProfileStore, categories: dict[str, str], histories: Any) -> None:
    wanted = {i for history in histories for i in products_mentioned(history)} - categories.keys()
    for product in await store.get_products(sorted(wanted)):
        categories[product.id] = product.category


def _changes(
    page: Sequence[Profile],
    histories: dict[str, list[Interaction]],
    categories: dict[str, str],
    point: _ResumePoint,
) -> list[tuple[str, ProfileChange]]:
    """The page's changes. A profile whose traits cannot be computed (a bug met by its data) keeps
    the ones it has, logged: it must not stop the job at its page, run after run, for everyone after."""
    changes = []
    for profile in page:
        try:
            changes.append((profile.id, _change(profile, histories[profile.id], categories, point)))
        except Exception:
            log.exception("computed traits of profile %s failed: it keeps its earlier ones", profile.id)
    return changes


def _change(
    profile: Profile, history: Sequence[Interaction], categories: dict[str, str], point: _ResumePoint
) -> ProfileChange:
    rfm, computed = computed_traits(profile, history, categories, point.boundaries, as_of=point.as_of)
    # Not stamped (no version bump, updatedAt unchanged): derived data, see the module docstring.
    return ProfileChange(
        set={
            "rfm": rfm.model_dump(by_alias=True, exclude_none=True) if rfm else None,
            "computed": computed.model_dump(by_alias=True, exclude_none=True) if computed else None,
        }
    )


def _write(updates: list[tuple[str, ProfileChange]]) -> Callable[[StoreTransaction], Awaitable[list[str]]]:
    """A page's traits in one unit of work (one hop to the embedded store's writer, not one a
    profile); the profiles erased or merged away since the page was read are left out."""

    async def work(tx: StoreTransaction) -> list[str]:
        documents = await tx.get_profile_documents([profile_id for profile_id, _ in updates])
        await tx.unchanged(documents)  # only read here: update_profile takes them as they are, not decoded again
        written = []
        for profile_id, change in updates:
            document = documents.get(profile_id)
            if document is None or document.get("mergedInto") is not None:
                continue  # nothing left to describe
            if profiling_refused_in(document):  # refused since the page was read
                change = ProfileChange(set=dict.fromkeys(PROFILED_FIELDS))
            await tx.update_profile(profile_id, change)
            written.append(profile_id)
        return written

    return work


async def keep_recomputing(store: ProfileStore, *, every_minutes: float, changes: ProfileChanges = UNHEARD) -> None:
    """The schedule every server process runs: a job a stopped process left is finished at once (by
    one of them), then one job a period, by the process that takes the period's round. Failures are
    logged and retried at the next round."""
    holder = uuid.uuid4().hex  # this process's schedule
    await _finish_interrupted(store, changes)
    wait = await _first_round_in(store, every_minutes)
    while True:
        await asyncio.sleep(wait)
        wait = every_minutes * 60
        if (later := await _put_off(store, every_minutes)) > 0:  # a job finished since this round was planned
            wait = later
            continue
        try:
            result = await recompute_this_round(store, holder, every_minutes=every_minutes, changes=changes)
        except Conflict:  # a job started on demand, or one whose process died holding its lease
            log.info("computed-traits job already running: this round is skipped")
            await _finish_interrupted(store, changes)
        except Exception:
            log.exception("computed-traits job failed; it resumes at the next round")
        else:
            if result is not None:
                _log_done(result)


async def _first_round_in(store: ProfileStore, every_minutes: float) -> float:
    """Seconds until this process's first round: a period after the last job finished, whenever this
    process started (started over at each start, a server restarted more often than the period never
    recomputed); FIRST_ROUND_AFTER for a store where none ever ran; a period while one runs, or when
    the store cannot tell."""
    period = every_minutes * 60
    try:
        recorded, finished = await _last_finish(store)
    except Exception:  # the store not answering: the next round looks again
        return period
    if finished is None:
        return min(period, FIRST_ROUND_AFTER.total_seconds()) if not recorded else period  # none yet, or one running
    return _until_due(finished, period)


async def _put_off(store: ProfileStore, every_minutes: float) -> float:
    """Seconds a round waits for a period to pass since the last job finished, when one finished since
    the round was planned: the demo data's load computes the traits of a store the schedule found
    with none a minute before (its first round was the job again, 1.1 s of the demo's CPU), and a job
    asked for on demand puts the next round off as a restart does. 0: the round is due."""
    try:
        _, finished = await _last_finish(store)
    except Exception:  # the store not answering: the round tries, and says what fails
        return 0.0
    return 0.0 if finished is None else _until_due(finished, every_minutes * 60)


async def _last_finish(store: ProfileStore) -> tuple[bool, datetime | None]:
    """(whether a job was ever recorded, when the last one finished: None while one runs or before any)."""
    text = await store.read_meta(META_KEY)
    finished = json.loads(text).get("finishedAt") if text else None
    return bool(text), clock.parse_time(finished) if finished else None


def _until_due(finished: datetime, period: float) -> float:
    due = finished + timedelta(seconds=period)
    return min(period, max(0.0, (due - clock.now()).total_seconds()))  # a finish dated ahead: a period at most


async def recompute_this_round(
    store: ProfileStore, holder: str, *, every_minutes: float, changes: ProfileChanges = UNHEARD
) -> TraitsJobResult | None:
    """`recompute_traits`, unless another process's schedule took this round: each round is a lease in
    the store, held for most of the period and never given back (as the match model's), so that one
    job runs a period whatever the number of workers. None: not this process's round."""
    if not await hold_for(store, ROUND_LEASE, holder, ROUND_SHARE * timedelta(minutes=every_minutes)):
        return None
    return await recompute_traits(store, changes=changes)


async def _finish_interrupted(store: ProfileStore, changes: ProfileChanges) -> None:
    """Resume the job a stopped process left, if any; when another process holds the job's lease
    (finishing it, or dead), look again once the lease would have run out."""
    while await _unfinished_quietly(store):
        try:
            result = await resume_traits_job(store, changes=changes)
        except Conflict:
            await asyncio.sleep(LEASE_FOR.total_seconds())
            continue
        except Exception:
            log.exception("resuming the computed-traits job failed; the next round resumes it")
            return
        if result is not None:
            _log_done(result)
        return


def _log_done(result: TraitsJobResult) -> None:
    log.info(
        "computed traits of %d profiles in %.1f s (job %s%s)",
        result.processed,
        result.duration_seconds,
        result.job_id,
        ", resumed" if result.resumed else "",
    )


async def _unfinished_quietly(store: ProfileStore) -> bool:
    """Whether a job was interrupted in pass 2; False when the store is not answering (yet)."""
    try:
        return await unfinished_job(store) is not None
    except Exception:  # the store not answering: the next round looks again
        return False
