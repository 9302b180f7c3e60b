"""Composition root: turns Settings into a running set of services (the store and what uses it),
wires who hears of profile changes (`Services.changes`), and loads the demo data into a new
embedded store while the server already answers (`seed_in_background`)."""

from __future__ import annotations

import asyncio
import logging
import time
import uuid
from collections.abc import AsyncIterator, Sequence
from contextlib import ExitStack, asynccontextmanager
from dataclasses import dataclass, field, replace
from datetime import timedelta
from pathlib import Path
from typing import TYPE_CHECKING

from app.collector import collected_as_batches
from app.demo_events import GroupsAhead, help_load, load_demo_events
from app.demo_segments import help_define, traits_and_segments
from app.domain import clock
from app.domain.access import Scope
from app.domain.errors import Unauthenticated
from app.observability.metrics import Metrics
from app.process_lock import exclusive, held_while_running
from app.services.api_keys import authenticate, create_key, revoke_key
from app.services.fixtures import (
    LoadReport,
    Progress,
    SeedProgress,
    demo_shift,
    load_fixtures,
)
from app.services.idempotency_ttl import with_remembered_ttl
from app.services.ingestion import IngestionPolicy
from app.services.key_cache import KeyCache
from app.services.match_candidates import merge_lookalikes
from app.services.match_index import ensure_blocking_keys
from app.services.ports import ProfileStore
from app.services.profile_changes import ProfileChanges
from app.services.review_list import ReviewLists
from app.services.segment_bus import SegmentBus
from app.services.segments import SegmentEngine
from app.settings import Settings
from app.shared_seed_progress import PROGRESS_FILE, SharedSeedProgress
from app.store import open_store
from app.tracing import TracedStore

if TYPE_CHECKING:  # OpenTelemetry is an optional extra (app/tracing.py)
    from opentelemetry.trace import Tracer

EXPORTS_AT_ONCE = 2
log = logging.getLogger("cdp")


def ingestion_policy(settings: Settings) -> IngestionPolicy:
    return IngestionPolicy(
        max_batch_size=settings.max_batch_size,
        idempotency_ttl=timedelta(days=settings.idempotency_ttl_days),
        identity=settings.identity_policy(),
        limits=settings.event_limits(),
    )


@dataclass(slots=True)
class Services:
    settings: Settings
    store: ProfileStore
    ingestion: IngestionPolicy
    development_key: str | None = None
    tracer: Tracer | None = None  # tracing on (app/tracing.py): the store is a TracedStore
    bus: SegmentBus = field(default_factory=SegmentBus)
    metrics: Metrics = field(default_factory=Metrics)
    seeding: SeedProgress = field(default_factory=SeedProgress)
    segments: SegmentEngine = field(init=False)
    changes: ProfileChanges = field(init=False)
    key_cache: KeyCache = field(init=False)
    review_lists: ReviewLists = field(init=False)
    # Exports running at once in this process, the others waiting their turn: each holds a person's
    # whole history in memory (55,400 interactions: a 25 MB answer, +200 MB at the peak; four at once
    # took the process to 805 MB).
    exports: asyncio.Semaphore = field(default_factory=lambda: asyncio.Semaphore(EXPORTS_AT_ONCE))

    def __post_init__(self) -> None:
        self.key_cache = KeyCache(size=self.settings.key_cache_size, seconds=self.settings.key_cache_seconds)
        self.review_lists = ReviewLists(max_pairs=self.settings.max_review_pairs)
        # The consent purposes setConsent takes (CDP_CONSENT_PURPOSES): events and segments take the same.
        purposes = tuple(self.settings.consent_purposes)
        self.segments = SegmentEngine(
            self.store,
            self.bus,
            missed_writes=self._merge_lookalikes,
            purposes=purposes,
            max_segments=self.settings.max_segments,
        )
        self.metrics.watch_subscriptions(lambda: self.bus.active)
        self.bus.observer = lambda event: self.metrics.segment_changes.labels(event.change.value).inc()
        # The one wiring of "profiles changed": every write reports here once durable (ingestion
        # through its policy, the others through their `changes` argument). Segments come first, so
        # subscribers hear of membership changes before anything slower runs.
        self.changes = ProfileChanges(self.segments.profiles_changed, self.metrics.profiles_changed)
        self.ingestion = replace(self.ingestion, changes=self.changes, consent_purposes=purposes)

    async def _merge_lookalikes(self, profile_ids: Sequence[str]) -> None:
        """The automatic fuzzy merge (when set) of profiles whose write's after-commit work never ran."""
        await merge_lookalikes(self.store, profile_ids, self.ingestion.identity, changes=self.changes)

    async def close(self) -> None:
        await self.store.close()


async def connect(settings: Settings, *, tracer: Tracer | None = None) -> Services:
    """The store `settings` name with every service wired to it (what the command line works with);
    with a `tracer`, its calls within a traced operation are spans (the store is wrapped only then)."""
    store = await open_store(settings.database_url, mongodb_database=settings.mongodb_database)
    if tracer is not None:
        store = TracedStore(store, tracer)
    policy = await with_remembered_ttl(store, ingestion_policy(settings))
    return Services(settings=settings, store=store, ingestion=policy, tracer=tracer)


async def start(settings: Settings, *, tracer: Tracer | None = None) -> Services:
    """The services a server runs, ready to serve; the demo data is loaded afterwards, in the
    background (`seed_in_background`), so that the server listens at once."""
    services = await connect(settings, tracer=tracer)
    store = services.store
    if (path := settings.development_key_path()) is not None:
        services.development_key = await development_key(store, path)
        # Said once, by the server's first worker process to get here: each said it (CDP_WORKERS).
        if held_while_running(path.with_name(f".{path.name}.announced")):
            log.info(
                "development API key (all scopes, this machine only; also in %s): %s  "
                "-> send it as the header Authorization: Bearer <key> (playground: Headers tab)",
                path,
                services.development_key,
            )
    # Every server process delivers only what the store's feed of committed changes says (the change
    # stream, or the embedded store's committed rows; main.py runs the watcher): a change reaches
    # subscribers on every process, and the one that made it hears it once (app/services/segment_watch.py).
    # An in-memory store is one process's alone and has no feed: it delivers as it publishes.
    services.bus.local_delivery = settings.database_url == "sqlite:///:memory:"
    rekeyed = await ensure_blocking_keys(store)
    if rekeyed:
        log.info("blocking-key index rebuilt for %d profiles (fuzzy merge candidates)", rekeyed)
    # A new store is marked for the demo data before this process answers anything (the start lock
    # is held): a client's write reaching it before the load begins no longer makes it a store with
    # data, which was never loaded into.
    if await store.read_meta(SEED_META) is None and await needs_seeding(services):
        await store.write_meta(SEED_META, SEED_PENDING)
    return services


async def development_key(store: ProfileStore, path: Path) -> str:
    """The local all-scopes key: the one kept in `path` while it is valid, else a new one written there
    (readable by this user only). The store keeps only its hash, as for every key. Worker processes
    starting together take turns (a lock beside the file): the first creates the key, the others read it."""
    async with exclusive(path.with_name(f".{path.name}.lock")):
        return await _kept_or_new_key(store, path)


async def _kept_or_new_key(store: ProfileStore, path: Path) -> str:
    if path.exists():
        token = path.read_text().strip()
        try:
            principal = await authenticate(store, token)
        except Unauthenticated:
            log.info("the development key in %s is not valid for this store: creating another", path)
        else:
            if principal.scopes == frozenset(Scope) and principal.this_machine_only:
                return token
            log.info(
                "the development key in %s lacks scopes added since it was made, or answers the network "
                "(made before it was this machine's only): creating another",
                path,
            )
            assert principal.key_id is not None
            await revoke_key(store, principal.key_id)
    # This machine's only, whatever the server binds: CDP_HOST says where it was told to listen, but a
    # `uvicorn --factory --host 0.0.0.0` put the all-scopes key on the network (graphql_schema/auth.py).
    _, token = await create_key(store, "local-development", list(Scope), this_machine_only=True)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.touch(mode=0o600, exist_ok=True)
    path.chmod(0o600)
    path.write_text(token + "\n")
    return token


SEED_META = "demoData"  # "loading" while the demo data goes in, "loaded" once in: an interrupted load resumes
SEED_PENDING = "pending"  # a new store the demo data is to go into (`start`), its load not begun


async def needs_seeding(services: Services) -> bool:
    """A new embedded store (or one whose demo data load was interrupted) with fixtures on."""
    if not services.settings.seed_fixtures or services.store.backend != "sqlite":
        return False
    if await services.store.read_meta(SEED_META) in ("loading", SEED_PENDING):
        return True
    return await services.store.count_profiles() == 0 and await services.store.count_products() == 0


@asynccontextmanager
async def seed_lock(services: Services) -> AsyncIterator[None]:
    """Held while this process checks for and loads the demo data: with several worker processes
    (CDP_WORKERS) exactly one seeds, the others wait here and then find the data in, loading part of
    its events and defining some of its segments meanwhile if it offers them (app/demo_events.py,
    app/demo_segments.py). An exclusive lock on `.seed.lock`
    beside the database, released by the system if its holder dies."""
    settings = services.settings
    helping = settings.seed_fixtures and services.store.backend == "sqlite"
    ahead = GroupsAhead()

    async def help_meanwhile() -> None:
        nonlocal helping
        if not helping:
            return
        try:
            with collected_as_batches():
                await help_load(services.store, settings.fixtures_dir, services.ingestion, settings.data_dir(), ahead)
                await help_define(services, settings.fixtures_dir, settings.data_dir())
        except Exception:  # the loader does what this one did not
            log.exception("loading part of the demo data beside the loader failed")
            helping = False

    async with exclusive(settings.data_dir() / ".seed.lock", meanwhile=help_meanwhile):
        yield


async def seed_in_background(services: Services) -> None:
    """The demo data, loaded while the server already serves (the lifespan runs this as a task after
    `start`): `services.seeding` says how far it got, for /readyz and the playground. A failure is
    logged with its traceback and kept there; the server goes on with what is in."""
    progress = services.seeding
    progress.seeding = True
    shared = SharedSeedProgress(services.settings.data_dir() / PROGRESS_FILE)
    # The collector's serving schedule comes back last: its first collection walks what the load left
    # (~0.1 s), after the data is said to be in and the other workers are let go.
    with ExitStack() as collection:
        try:
            progress("waiting for the process loading the demo data", 0, 0)
            progress.elsewhere = shared.read  # what the worker loading it tells, while this one waits
            async with seed_lock(services):
                if await needs_seeding(services):  # again: another process may have loaded it meanwhile
                    progress.elsewhere = None

                    def step(stage: str, done: int, total: int) -> None:
                        progress(stage, done, total)
                        shared.write(stage, done, total)

                    step("starting", 0, 0)
                    collection.enter_context(collected_as_batches())
                    await seed(services, step)
        except Exception as exc:
            # /readyz answers anyone: it names the error by its kind and an id, and the log says the rest
            # (the message showed the data folder's absolute path and the exception's text).
            error_id = uuid.uuid4().hex[:12]
            log.exception(
                "loading the demo data failed (error id %s); the server serves what is in (see /readyz)",
                error_id,
                extra={"errorId": error_id},
            )
            progress.failure = f"{type(exc).__name__} (error id {error_id}: the server's log says more)"
        finally:
            progress.seeding = False


async def seed(services: Services, progress: Progress | None = None) -> LoadReport | None:
    directory = services.settings.fixtures_dir
    if not directory.is_dir():
        log.warning("no fixtures folder at %s: starting with an empty store", directory)
        return None
    log.info(
        "empty embedded store: loading the demo data set from %s (first start only); the server answers "
        "meanwhile, /readyz says 503 seeding until it is in",
        directory,
    )
    # Dates relative to today: the first load picks the shift and keeps it; a resumed load reuses it.
    shift = await demo_shift(services.store, directory, clock.now())
    await services.store.write_meta(SEED_META, "loading")
    log.info("demo data dates moved by %d days: its newest event lands within the last day", shift.days)
    started = time.monotonic()
    last_logged = [0.0]

    def step(stage: str, done: int, total: int) -> None:
        if progress is not None:
            progress(stage, done, total)
        if done == total or time.monotonic() - last_logged[0] > 2:
            last_logged[0] = time.monotonic()
            log.info("  %s: %d/%d", stage, done, total)

    report = await load_fixtures(services.store, directory, services.ingestion, step, shift=shift, events=False)
    settings = services.settings
    await load_demo_events(
        services.store,
        directory,
        services.ingestion,
        report,
        step,
        shift=shift,
        data_dir=settings.data_dir(),
        workers=settings.workers,
    )
    segments = await traits_and_segments(
        services, directory, step, report, data_dir=settings.data_dir(), workers=settings.workers
    )
    await services.store.write_meta(SEED_META, "loaded")
    log.info("%d demo segments defined and evaluated", segments)
    for problem in report.problems:  # a refused line is said where the operator looks (a first start's log)
        log.warning("demo data: %s", problem)
    if report.problems_left_out:
        log.warning("demo data: … and %d more refused lines", report.problems_left_out)
    log.info(
        "demo data loaded in %.1f s: %d products, %d CRM profiles, %d events, %d segments "
        "(rejected: %d products, %d profiles, %d events, %d segments)",
        time.monotonic() - started,
        report.products,
        report.profiles,
        report.events_accepted,
        segments,
        report.products_rejected,
        report.profiles_rejected,
        report.events_rejected,
        report.segments_rejected,
    )
    return report
