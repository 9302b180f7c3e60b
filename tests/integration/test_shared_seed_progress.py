"""Worker processes waiting for the one loading the demo data tell its progress, not "waiting"
(app/shared_seed_progress.py): /readyz and the playground's start page answer the same from any
worker. Two servers' services on one embedded store stand for two workers here: the seed lock is a
`flock`, which two open files hold apart in one process as in two."""

from __future__ import annotations

import asyncio
import os
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import orjson
import pytest

from app import bootstrap, demo_segments
from app.bootstrap import Services, connect, seed_in_background
from app.domain.events import RawEvent, RawIdentifier
from app.domain.profile import Profile
from app.domain.profile_query import ProfileFilter
from app.services import traits
from app.services.fixtures import SeedProgress
from app.services.ingestion import EventStatus, ingest_events
from app.services.leases import hold_for
from app.settings import Settings
from app.shared_seed_progress import PROGRESS_FILE, SharedSeedProgress
from tests.builders import demo_fixtures

WAITING = "waiting for the process loading the demo data"


class _Reached(SeedProgress):
    """A loader's progress that says when it reached a stage (the ordering the test needs, without sleeps)."""

    def __init__(self, stage: str) -> None:
        super().__init__()
        self.reached = asyncio.Event()
        self._awaited = stage

    def __call__(self, stage: str, done: int, total: int) -> None:
        super().__call__(stage, done, total)
        if stage == self._awaited and done > 0:
            self.reached.set()


async def _worker(tmp_path: Path, fixtures: Path) -> Services:
    settings = Settings(
        database_url=f"sqlite:///{tmp_path}/cdp.sqlite3", fixtures_dir=fixtures, auth=False, traits_every_minutes=0
    )
    return await connect(settings)


async def test_a_waiting_worker_tells_the_progress_of_the_one_loading(tmp_path: Path) -> None:
    fixtures = demo_fixtures(tmp_path / "fixtures", 1500)
    loader, waiter = await _worker(tmp_path, fixtures), await _worker(tmp_path, fixtures)
    loader.seeding = _Reached("events")
    try:
        loading = asyncio.create_task(seed_in_background(loader))
        await asyncio.wait_for(loader.seeding.reached.wait(), 120)
        waiting = asyncio.create_task(seed_in_background(waiter))
        await asyncio.sleep(0)  # the waiter's task starts: it asks for the lock the loader holds
        assert waiter.seeding.seeding and waiter.seeding.stage == WAITING  # its own state: it waits

        told = waiter.seeding.to_json()
        assert told["stage"] != WAITING, told
        assert told["stage"] in {"events", "traits", "segments"} and told["total"] > 0, told
        assert waiter.seeding.describe().startswith(f"{told['stage']}: ")

        await asyncio.wait_for(asyncio.gather(loading, waiting), 300)
        assert loader.seeding.failure is None and waiter.seeding.failure is None
        assert not loader.seeding.seeding and not waiter.seeding.seeding
        assert await waiter.store.count_profiles() > 0
    finally:
        await loader.close()
        await waiter.close()


def test_a_file_left_by_a_loader_that_is_gone_is_not_shown(tmp_path: Path) -> None:
    path = tmp_path / PROGRESS_FILE
    shared = SharedSeedProgress(path)
    assert shared.read() is None  # nothing told yet

    shared.write("events", 500, 1500)
    assert shared.read() == ("events", 500, 1500)

    gone = os.fork()
    if gone == 0:
        os._exit(0)
    os.waitpid(gone, 0)  # a process id no process has now
    path.write_bytes(orjson.dumps({"pid": gone, "stage": "events", "done": 700, "total": 1500}))
    assert shared.read() is None

    for broken in (b"", b"{", b"[]", b'{"pid": "1", "stage": "events", "done": 1, "total": 2}'):
        path.write_bytes(broken)
        assert shared.read() is None, broken


def test_steps_soon_after_each_other_are_written_once_and_the_last_of_a_stage_always(tmp_path: Path) -> None:
    path = tmp_path / PROGRESS_FILE
    shared = SharedSeedProgress(path)
    shared.write("events", 500, 1500)
    shared.write("events", 1000, 1500)  # within WRITE_EVERY_SECONDS of the last: left for the next
    assert shared.read() == ("events", 500, 1500)
    shared.write("events", 1500, 1500)  # the stage's last step
    assert shared.read() == ("events", 1500, 1500)
    shared.write("traits", 0, 10)  # a new stage
    assert shared.read() == ("traits", 0, 10)
    assert sorted(p.name for p in tmp_path.iterdir()) == [PROGRESS_FILE]  # no temporary file left


async def test_a_failed_load_is_told_to_readyz_by_its_kind_and_an_id_not_its_text(tmp_path: Path) -> None:
    """Found by an audit: /readyz (no key) said the exception's text, with the data folder's absolute
    path. It names the kind of error and an id; the server's log holds the rest under that id."""
    fixtures = tmp_path / "fixtures"
    (fixtures / "events.jsonl").mkdir(parents=True)  # a folder where the data file belongs
    services = await _worker(tmp_path, fixtures)
    try:
        await seed_in_background(services)
        failure = services.seeding.failure
        assert failure is not None and failure.startswith("InvalidInput (error id "), failure
        assert str(tmp_path) not in failure and "events.jsonl" not in failure
    finally:
        await services.close()


async def test_a_demo_load_killed_while_computing_traits_computes_them_when_resumed(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Found by an audit: killed while computing the demo profiles' traits, the load left the job's
    lease behind; resumed, it took that lease for a job computing them ("already running") and
    finished without them: no RFM, the VIP segment empty until the schedule's next round an hour
    later (never with it off). It now waits for the lease to run out, then computes them."""
    monkeypatch.setattr(demo_segments, "TRAITS_WAIT_SECONDS", 0.05)
    services = await _worker(tmp_path, demo_fixtures(tmp_path / "fixtures", 300))
    try:
        # The killed process's lease: it runs out as a real one would, after traits.LEASE_FOR.
        assert await hold_for(services.store, traits.LEASE, "a killed process", timedelta(seconds=1))
        await bootstrap.seed(services)
        assert await services.store.read_meta(bootstrap.SEED_META) == "loaded"
        profiles = [p async for p in _every_profile(services)]
        assert profiles and any(p.rfm is not None for p in profiles)
    finally:
        await services.close()


async def _every_profile(services: Services) -> AsyncIterator[Profile]:
    after = None
    while page := await services.store.list_profiles(ProfileFilter(), after=after, limit=100):
        for profile in page:
            yield profile
        after = page[-1].id


async def test_a_write_before_the_demo_load_begins_does_not_keep_the_demo_data_out(tmp_path: Path) -> None:
    """Found while measuring writes during a first start: a client's event that reached the new store
    before the load began made it a store with data, and the demo data never went in. `start` marks a
    new store for it before the server answers anything."""
    settings = Settings(
        database_url=f"sqlite:///{tmp_path}/cdp.sqlite3",
        fixtures_dir=demo_fixtures(tmp_path / "fixtures", 300),
        auth=False,
        traits_every_minutes=0,
    )
    services = await bootstrap.start(settings)
    try:
        visitor = [RawIdentifier("anonymousId", "early-visitor")]
        early = RawEvent(message_id="early-1", type="page_view", channel="web", timestamp=datetime.now(UTC),
                         identifiers=visitor, properties={"url": "/"})  # fmt: skip
        (outcome,) = await ingest_events(services.store, [early])
        assert outcome.status is EventStatus.ACCEPTED
        await seed_in_background(services)
        assert services.seeding.failure is None
        assert await services.store.read_meta(bootstrap.SEED_META) == "loaded"
        profiles = [p async for p in _every_profile(services)]
        assert len(profiles) > 100 and any(p.id == outcome.profile_id for p in profiles)  # the demo's and the early one
    finally:
        await services.close()
