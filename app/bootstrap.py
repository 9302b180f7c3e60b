"""Composition root: turns Settings into a running set of services (the store and what uses it)."""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field, replace
from datetime import timedelta
from pathlib import Path
from typing import Any

from app.domain.access import Scope
from app.domain.errors import Unauthenticated
from app.observability.metrics import Metrics
from app.services.api_keys import authenticate, create_key, revoke_key
from app.services.fixtures import LoadReport, load_fixtures, load_segments
from app.services.ingestion import IngestionPolicy
from app.services.match_index import ensure_blocking_keys
from app.services.ports import ProfileStore
from app.services.segment_bus import SegmentBus
from app.services.segments import SegmentEngine
from app.services.traits import recompute_traits
from app.settings import Settings
from app.store import open_store

log = logging.getLogger("cdp")


@dataclass(slots=True)
class Services:
    settings: Settings
    store: ProfileStore
    ingestion: IngestionPolicy
    development_key: str | None = None
    bus: SegmentBus = field(default_factory=SegmentBus)
    metrics: Metrics = field(default_factory=Metrics)
    segments: SegmentEngine = field(init=False)

    def __post_init__(self) -> None:
        self.segments = SegmentEngine(self.store, self.bus)
        self.metrics.watch_subscriptions(lambda: self.bus.active)
        self.bus.observer = lambda event: self.metrics.segment_changes.labels(event.change.value).inc()
        if self.ingestion.on_landed is None:  # segments hear of every event batch once it is durable
            self.ingestion = replace(self.ingestion, on_landed=self.segments.events_landed)

    async def close(self) -> None:
        await self.store.close()


async def start(settings: Settings) -> Services:
    store = await open_store(settings.database_url, mongodb_database=settings.mongodb_database)
    services = Services(
        settings=settings,
        store=store,
        ingestion=IngestionPolicy(
            max_batch_size=settings.max_batch_size,
            idempotency_ttl=timedelta(days=settings.idempotency_ttl_days),
            identity=settings.identity_policy(),
            limits=settings.event_limits(),
        ),
    )
    if (path := settings.development_key_path()) is not None:
        services.development_key = await development_key(store, path)
        log.info(
            "development API key (all scopes, this machine only; also in %s): %s  "
            "-> send it as the header Authorization: Bearer <key> (playground: Headers tab)",
            path,
            services.development_key,
        )
    if store.backend == "mongodb":  # every process hears every change through the change stream
        services.bus.local_delivery = False
    rekeyed = await ensure_blocking_keys(store)
    if rekeyed:
        log.info("blocking-key index rebuilt for %d profiles (fuzzy merge candidates)", rekeyed)
    if settings.seed_fixtures and store.backend == "sqlite" and await _is_empty(store):
        await seed(services)
    return services


async def development_key(store: ProfileStore, path: Path) -> str:
    """The local all-scopes key: the one kept in `path` while it is valid, else a new one written there
    (readable by this user only). The store keeps only its hash, as for every key."""
    if path.exists():
        token = path.read_text().strip()
        try:
            principal = await authenticate(store, token)
        except Unauthenticated:
            log.info("the development key in %s is not valid for this store: creating another", path)
        else:
            if principal.scopes == frozenset(Scope):
                return token
            log.info("the development key in %s lacks scopes added since it was made: creating another", path)
            assert principal.key_id is not None
            await revoke_key(store, principal.key_id)
    _, token = await create_key(store, "local-development", list(Scope))
    path.parent.mkdir(parents=True, exist_ok=True)
    path.touch(mode=0o600, exist_ok=True)
    path.chmod(0o600)
    path.write_text(token + "\n")
    return token


async def _is_empty(store: ProfileStore) -> bool:
    return await store.count_profiles() == 0 and await store.count_products() == 0


async def seed(services: Services) -> LoadReport | None:
    directory = services.settings.fixtures_dir
    if not directory.is_dir():
        log.warning("no fixtures folder at %s: starting with an empty store", directory)
        return None
    log.info("empty embedded store: loading the demo data set from %s (first start only)", directory)
    started = time.monotonic()
    last_logged = [0.0]

    def progress(stage: str, done: int, total: int) -> None:
        if done == total or time.monotonic() - last_logged[0] > 2:
            last_logged[0] = time.monotonic()
            log.info("  %s: %d/%d", stage, done, total)

    report = await load_fixtures(services.store, directory, services.ingestion, progress)
    traits = await recompute_traits(services.store, restart=True)  # the VIP demo segment reads RFM
    log.info("computed traits for %d profiles", traits.processed)

    async def create_segment(fields: dict[str, Any], segment_id: str) -> object:
        return await services.segments.create(fields, segment_id=segment_id)

    segments = await load_segments(create_segment, directory)
    log.info("%d demo segments defined and evaluated", segments)
    log.info(
        "demo data loaded in %.1f s: %d products, %d CRM profiles, %d events (%d rejected)",
        time.monotonic() - started,
        report.products,
        report.profiles,
        report.events_accepted,
        report.events_rejected,
    )
    return report
