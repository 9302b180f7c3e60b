"""The ASGI application: GraphQL (HTTP and WebSocket), the playground's assets, health probes."""

from __future__ import annotations

import asyncio
import logging
import os
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import timedelta
from typing import Any

from prometheus_client import CONTENT_TYPE_LATEST
from starlette.applications import Starlette
from starlette.middleware.cors import CORSMiddleware
from starlette.requests import Request
from starlette.responses import JSONResponse, RedirectResponse, Response
from starlette.routing import Mount, Route, WebSocketRoute
from starlette.staticfiles import StaticFiles

from app.arrival_order import ArrivalOrder, ArrivalQueue
from app.bootstrap import Services, needs_seeding, seed_in_background, start
from app.compression import Compression
from app.domain.errors import DomainError, StoreUnavailable
from app.graceful_shutdown import OpenWebSockets
from app.observability.metrics import Metrics, shared_dir
from app.observability.requests import RequestObservation
from app.os_errors import in_one_line
from app.process_lock import exclusive
from app.scheduled_backups import BackupSchedule, keep_backing_up
from app.services.key_revocations import watch_revocations
from app.services.match_model import keep_estimating
from app.services.privacy import keep_wiping
from app.services.profile_changes import settled
from app.services.segment_history_retention import EVERY_SECONDS, keep_forgetting_old_changes
from app.services.segment_watch import watch
from app.services.segments import keep_checking
from app.services.traits import keep_recomputing
from app.settings import Settings
from app.tracing import flush as flush_spans
from app.tracing import tracer as process_tracer
from graphql_schema.http import GraphQLApp
from graphql_schema.loopback_only import LoopbackOnly
from graphql_schema.playground import ASSETS_PATH, STATIC_DIR
from graphql_schema.shared_events import forget_profiles

log = logging.getLogger("cdp")


def create_app(settings: Settings | None = None, services: Services | None = None) -> Starlette:
    """The application; with `services` given (tests) it uses them and leaves their lifetime to the caller."""
    settings = services.settings if services else settings or Settings()
    if problem := settings.binding_problem():
        raise ValueError(problem)
    holder: dict[str, Services] = {"services": services} if services else {}
    tracer = services.tracer if services else process_tracer()  # None: tracing off (app/tracing.py)

    def current() -> Services:
        return holder["services"]

    arrivals = ArrivalQueue()  # HTTP requests waiting for their turn (app/arrival_order.py)
    if services is not None:
        _wire(services, arrivals)

    @asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        if services is not None:
            yield
            return
        # Worker processes starting together take turns: the store's schema is created or migrated
        # by one process, not raced by all of them.
        try:
            async with exclusive(settings.data_dir() / ".start.lock"):
                holder["services"] = await start(settings, tracer=tracer)
        except DomainError as exc:  # a file that is no store, a MongoDB not reachable: one line says it
            log.error("the store cannot be used: %s", exc.message)
            raise
        except OSError as exc:  # its folder a file, or one this user may not write in (the start's lock)
            log.error("the store cannot be used: %s", in_one_line(exc))
            raise
        log.info("store: %s; GraphQL at /graphql", holder["services"].store.backend)
        _wire(holder["services"], arrivals)
        background: list[asyncio.Task[None]] = []
        if await needs_seeding(holder["services"]):  # decided before the first request: /readyz never says ready early
            holder["services"].seeding.seeding = True
            background.append(asyncio.create_task(seed_in_background(holder["services"])))
        checks = asyncio.create_task(
            keep_checking(holder["services"].segments, every_seconds=settings.segment_check_seconds)
        )
        background += [checks, *_traits_schedule(holder["services"]), *_match_model_schedule(holder["services"])]
        background += _backup_schedule(settings)
        background.append(asyncio.create_task(keep_wiping(holder["services"].store, every_seconds=WIPE_RETRY_SECONDS)))
        background += _segment_history_schedule(holder["services"])
        if shared_dir() is not None:  # one of several workers: what its gauges read, for the others' scrapes
            background.append(asyncio.create_task(_publish_live_values(holder["services"].metrics)))
        revocations = watch_revocations(
            holder["services"].store, graphql.sockets.close_revoked, every_seconds=settings.key_check_seconds
        )
        background.append(asyncio.create_task(revocations))
        if not holder["services"].bus.local_delivery:  # hear every process's changes, this one's too
            running = holder["services"]
            # MongoDB resumes a change stream where this instance stopped; the embedded store's feed starts now.
            resume_as = settings.instance_name if running.store.backend == "mongodb" else None
            background.append(asyncio.create_task(watch(running.store, running.bus, instance=resume_as)))
        try:
            yield
        finally:
            for task in background:
                task.cancel()
            await asyncio.gather(*background, return_exceptions=True)
            # Requests cut short (WebSockets closed) may have left the upkeep of their committed writes.
            if left := await settled(timeout=settings.shutdown_grace_seconds):
                log.warning(
                    "%d committed writes' upkeep still running at shutdown: their segment checks catch up", left
                )
            await holder["services"].close()
            if tracer is not None:  # the spans still batched (app/tracing.py)
                await asyncio.to_thread(flush_spans)

    async def healthz(request: Request) -> Response:
        return JSONResponse({"status": "ok", "pid": os.getpid()})  # which worker process answered

    async def readyz(request: Request) -> Response:
        if not holder:
            return JSONResponse({"status": "unavailable", "reason": "starting"}, status_code=503)
        seeding = current().seeding
        if seeding.seeding:
            return JSONResponse({"status": "seeding", "progress": seeding.to_json()}, status_code=503)
        if seeding.failure is not None:
            return JSONResponse(
                {"status": "seeding failed", "reason": seeding.failure, "progress": seeding.to_json()}, status_code=503
            )
        try:
            await current().store.ping()
        except StoreUnavailable as exc:
            return JSONResponse({"status": "unavailable", "reason": str(exc)}, status_code=503)
        return JSONResponse({"status": "ready", "store": current().store.backend})

    async def root(request: Request) -> Response:
        return RedirectResponse("/graphql")

    async def metrics(request: Request) -> Response:
        return Response(current().metrics.exposition(), media_type=CONTENT_TYPE_LATEST)

    graphql = GraphQLApp(current, settings, tracer=tracer)
    open_websockets = OpenWebSockets()  # closed with 1001 when the server stops (see app/__main__.py)
    app = Starlette(
        # The router tries its routes in order (a regular expression each): the API's first.
        routes=[
            Route("/graphql", graphql, methods=["GET", "POST"]),
            WebSocketRoute("/graphql", open_websockets.track(graphql)),
            Route("/", root),
            Route("/healthz", healthz),
            Route("/readyz", readyz),
            Route("/metrics", metrics),
            Mount(ASSETS_PATH, app=StaticFiles(directory=STATIC_DIR), name="playground-assets"),
        ],
        lifespan=lifespan,
    )
    if not settings.auth:  # binding_problem() saw CDP_HOST only: each connection's address is checked too
        app.add_middleware(LoopbackOnly)
    app.add_middleware(Compression)
    if settings.cors_origins:  # outside the refusals, so a browser can read why it was refused
        app.add_middleware(CORSMiddleware, **cors_options(settings.cors_origins))
    app.add_middleware(ArrivalOrder, queue=arrivals)  # under load: first come first served, one a loop turn
    # Outermost: every request gets its id before anything logs, and is counted whatever happens.
    app.add_middleware(RequestObservation, metrics=lambda: holder["services"].metrics if holder else None)
    app.state.open_websockets = open_websockets
    return app


WIPE_RETRY_SECONDS = 10.0  # an erasure's wipe held off by another connection's read is asked again this often
LIVE_VALUES_SECONDS = 1.0  # how stale another worker's gauges (subscriptions, waiting requests) may be in /metrics
CORS_MAX_AGE_SECONDS = (
    7200  # Chromium's cap; a preflight answer cached this long grants nothing the actual response does not
)


def _wire(services: Services, arrivals: ArrivalQueue) -> None:
    """What the transport learns from the services: the requests waiting (a gauge), and each erased
    person (the subscription answers kept for their earlier changes go)."""
    services.metrics.watch_waiting_requests(arrivals.waiting)
    services.bus.on_erased.append(forget_profiles)


async def _publish_live_values(metrics: Metrics) -> None:
    while True:
        metrics.publish_live_values()
        await asyncio.sleep(LIVE_VALUES_SECONDS)


def cors_options(origins: list[str]) -> dict[str, Any]:
    """Cross-origin browser calls (CDP_CORS_ORIGINS). Keys travel in the Authorization header, which
    a preflight must allow. Listed origins may send credentials (fetch's `credentials: "include"`);
    `*` may not: browsers refuse `*` with credentials, and echoing any origin instead would hand
    every site the caller's credentials."""
    anyone = origins == ["*"]
    return {
        "allow_origins": origins,
        "allow_credentials": not anyone,
        "allow_methods": ["GET", "POST"],
        "allow_headers": ["Authorization", "Content-Type", "X-Request-Id"],
        "expose_headers": ["X-Request-Id"],
        "max_age": CORS_MAX_AGE_SECONDS,
    }


def _match_model_schedule(services: Services) -> list[asyncio.Task[None]]:
    """The learned match model re-estimated every CDP_MATCH_MODEL_EVERY_MINUTES (0: off)."""
    every = services.settings.match_model_every_minutes
    if every <= 0:
        return []
    return [asyncio.create_task(keep_estimating(services.store, every_minutes=every))]


def _segment_history_schedule(services: Services) -> list[asyncio.Task[None]]:
    """Segment changes older than CDP_SEGMENT_HISTORY_DAYS deleted every hour (unset: all kept)."""
    days = services.settings.segment_history_days
    if days is None:
        return []
    run = keep_forgetting_old_changes(services.store, kept_for=timedelta(days=days), every_seconds=EVERY_SECONDS)
    return [asyncio.create_task(run)]


def _backup_schedule(settings: Settings) -> list[asyncio.Task[None]]:
    """The embedded store backed up into CDP_BACKUP_DIR every CDP_BACKUP_EVERY_HOURS (unset: never)."""
    database = settings.embedded_file()
    if settings.backup_dir is None or database is None:
        return []
    schedule = BackupSchedule(
        database, settings.backup_dir, timedelta(hours=settings.backup_every_hours), settings.backup_keep
    )
    return [asyncio.create_task(keep_backing_up(schedule))]


def _traits_schedule(services: Services) -> list[asyncio.Task[None]]:
    """Computed traits every CDP_TRAITS_EVERY_MINUTES (0: off); an interrupted job resumes at start."""
    every = services.settings.traits_every_minutes
    if every <= 0:
        return []
    run = keep_recomputing(services.store, every_minutes=every, changes=services.changes)
    return [asyncio.create_task(run)]
