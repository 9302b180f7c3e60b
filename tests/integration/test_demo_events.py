"""The demo data's events in two parts (app/demo_events.py): the loader offers the second part and
loads it itself when nobody took it; a helper's part and counts end in the loader's report."""

from __future__ import annotations

import asyncio
import logging
from datetime import timedelta
from pathlib import Path

import pytest

from app.demo_events import HELP_META, GroupsAhead, help_load, load_demo_events
from app.services.fixture_shards import event_groups
from app.services.fixtures import LoadReport, load_fixtures
from app.services.ingestion import IngestionPolicy
from app.store.sqlite.store import SQLiteStore
from tests.builders import demo_fixtures

EVENTS = 6000  # past HELPED_FROM


@pytest.fixture
async def offered(sqlite_store: SQLiteStore, tmp_path: Path) -> Path:
    """The demo data's products and profiles in, its first `EVENTS` events still to load."""
    fixtures = demo_fixtures(tmp_path / "fixtures", EVENTS)
    await load_fixtures(sqlite_store, fixtures, IngestionPolicy(), events=False)
    return fixtures


async def test_a_loader_that_nobody_helps_loads_the_part_it_offered(
    sqlite_store: SQLiteStore, offered: Path, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    report, steps = LoadReport(), []
    with caplog.at_level(logging.INFO, logger="cdp"):
        await load_demo_events(
            sqlite_store, offered, IngestionPolicy(), report, lambda *step: steps.append(step),
            shift=timedelta(0), data_dir=tmp_path, workers=2,
        )  # fmt: skip
    assert report.events_accepted == EVENTS and report.events_rejected == 0
    assert "no other worker loaded the second part" in caplog.text
    assert steps[-1] == ("events", EVENTS, EVENTS)
    assert await sqlite_store.read_meta(HELP_META) == "done"


async def test_a_helper_loads_the_offered_part_and_the_loader_counts_it(
    sqlite_store: SQLiteStore, offered: Path, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    policy, report = IngestionPolicy(), LoadReport()

    ahead = GroupsAhead()

    async def helper() -> None:  # another worker, waiting for the loader: asks again and again
        while await sqlite_store.read_meta(HELP_META) != "done":
            await help_load(sqlite_store, offered, policy, tmp_path, ahead)
            await asyncio.sleep(0.01)

    with caplog.at_level(logging.INFO, logger="cdp"):
        await asyncio.gather(
            load_demo_events(
                sqlite_store, offered, policy, report, lambda *step: None,
                shift=timedelta(0), data_dir=tmp_path, workers=2,
            ),
            helper(),
        )  # fmt: skip
    assert "beside the worker process loading the rest" in caplog.text
    assert "no other worker loaded the second part" not in caplog.text
    assert report.events_accepted == EVENTS and report.events_duplicate == 0  # the helper's counted in


async def test_a_waiting_worker_cuts_the_events_before_the_loader_offers_them(
    sqlite_store: SQLiteStore, offered: Path, tmp_path: Path
) -> None:
    """Asked before anything is offered, a waiting worker loads nothing but has the groups the loader
    will cut: when the offer comes, its part starts at once."""
    ahead = GroupsAhead()
    await help_load(sqlite_store, offered, IngestionPolicy(), tmp_path, ahead)
    assert await sqlite_store.read_meta(HELP_META) is None
    assert await sqlite_store.count_profiles() == 248  # the CRM profiles only: no event loaded
    assert ahead.groups is not None
    assert ahead.groups.parts(2) == event_groups(offered / "events.jsonl", offered / "profiles.jsonl").parts(2)


async def test_a_waiting_worker_that_cannot_cut_the_events_waits_quietly(
    sqlite_store: SQLiteStore, tmp_path: Path
) -> None:
    """A data set whose events file is a folder: the loader's load fails and says why (/readyz, the
    log); the waiting worker's early cut raises nothing, and is not tried again on every poll."""
    fixtures = tmp_path / "fixtures"
    (fixtures / "events.jsonl").mkdir(parents=True)
    ahead = GroupsAhead()
    for _ in range(2):
        await help_load(sqlite_store, fixtures, IngestionPolicy(), tmp_path, ahead)
    assert ahead.tried and ahead.groups is None
