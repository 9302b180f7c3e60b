"""The end of a demo data load on two worker processes (app/demo_segments.py): the loader offers the
segments that read no computed trait and computes the traits; a helper defines those meanwhile; the
loader defines the rest once the traits are in, and whatever the helper did not. Two services on one
embedded store stand for two workers: the locks are `flock`s, which two open files hold apart in one
process as in two."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from pathlib import Path

import orjson
import pytest

from app.bootstrap import Services, connect
from app.demo_segments import HELP_META, beside_traits, help_define, traits_and_segments
from app.domain.segments.segment import Segment
from app.services.fixtures import LoadReport, load_fixtures
from app.settings import Settings
from tests.builders import demo_fixtures

EVENTS = 1500
BAD_LINE = {"_id": "broken", "name": "Broken", "condition": {"compare": {"path": "stats.nope", "op": "eq", "value": 1}}}


@pytest.fixture
async def fixtures(tmp_path: Path) -> Path:
    """The demo data with its first events, and one segment line no store accepts."""
    folder = demo_fixtures(tmp_path / "fixtures", EVENTS)
    with (folder / "segments.jsonl").open("ab") as segments:
        segments.write(orjson.dumps(BAD_LINE) + b"\n")
    return folder


async def _worker(tmp_path: Path, fixtures: Path) -> Services:
    settings = Settings(
        database_url=f"sqlite:///{tmp_path}/cdp.sqlite3", fixtures_dir=fixtures, auth=False, traits_every_minutes=0
    )
    return await connect(settings)


@pytest.fixture
async def loader(tmp_path: Path, fixtures: Path) -> AsyncIterator[Services]:
    """A worker with the demo data's products, profiles and events in: its traits and segments to come."""
    services = await _worker(tmp_path, fixtures)
    await load_fixtures(services.store, fixtures, services.ingestion)
    yield services
    await services.close()


def _definitions(fixtures: Path) -> dict[str, dict[str, object]]:
    lines = (fixtures / "segments.jsonl").read_bytes().splitlines()
    return {str(d.pop("_id")): d for d in map(orjson.loads, lines)}


async def _members(services: Services, segment_id: str) -> list[str]:
    return sorted(await services.store.member_ids(segment_id))


async def test_a_loader_that_nobody_helps_defines_every_segment(
    loader: Services, fixtures: Path, tmp_path: Path
) -> None:
    report, steps = LoadReport(), []
    made = await traits_and_segments(
        loader, fixtures, lambda *step: steps.append(step), report, data_dir=tmp_path, workers=2
    )
    assert made == len(_definitions(fixtures)) - 1
    assert report.segments_rejected == 1 and "stats.nope" in report.problems[0]
    assert await loader.store.read_meta(HELP_META) == "done"
    assert await _members(loader, "vip-rfm")  # after the traits: the VIP segment reads RFM
    assert steps[-1] == ("segments", made, len(_definitions(fixtures)))  # the refused line is no step


async def test_a_helper_defines_the_segments_that_read_no_trait_and_the_loader_the_rest(
    loader: Services, fixtures: Path, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    helper = await _worker(tmp_path, fixtures)
    evaluated: list[tuple[str, str]] = []  # (segment, by whom), each evaluation over the store
    for name, services in (("loader", loader), ("helper", helper)):
        evaluate = services.segments._evaluate

        async def recorded(segment: Segment, *, _name: str = name, _evaluate=evaluate, **kwargs: object) -> object:
            evaluated.append((segment.id, _name))
            return await _evaluate(segment, **kwargs)

        services.segments._evaluate = recorded  # type: ignore[method-assign]

    async def helping() -> None:  # another worker, waiting for the loader: asks again and again
        while await helper.store.read_meta(HELP_META) != "done":
            await help_define(helper, fixtures, tmp_path)
            await asyncio.sleep(0.01)

    report = LoadReport()
    try:
        with caplog.at_level(logging.INFO, logger="cdp"):
            made, _ = await asyncio.gather(
                traits_and_segments(loader, fixtures, lambda *_: None, report, data_dir=tmp_path, workers=2),
                helping(),
            )
    finally:
        await helper.close()
    definitions = _definitions(fixtures)
    beside = {i for i, d in definitions.items() if i != "broken" and beside_traits(d)}
    assert beside and "vip-rfm" not in beside
    assert sorted(evaluated) == sorted(
        [(i, "helper") for i in beside] + [(i, "loader") for i in set(definitions) - beside - {"broken"}]
    )  # each once
    assert "beside the worker process computing its traits" in caplog.text
    assert made == len(definitions) - 1 and report.segments_rejected == 1  # the helper's refusal said once
    assert await _members(loader, "vip-rfm")


async def test_what_a_helper_that_stopped_left_the_loader_evaluates_again(
    loader: Services, fixtures: Path, tmp_path: Path
) -> None:
    """A helper that took the offer and stopped halfway: its lock released, the offer still standing.
    The loader evaluates what it defined as it stands, and defines the rest."""
    cart = _definitions(fixtures)["cart-abandoners-30d"]
    await loader.segments.create(cart, segment_id="cart-abandoners-30d")  # the helper got this far
    report = LoadReport()
    made = await traits_and_segments(loader, fixtures, lambda *_: None, report, data_dir=tmp_path, workers=2)
    assert made == len(_definitions(fixtures)) - 1
    assert [s.id for s in await loader.store.list_segments()] == sorted(set(_definitions(fixtures)) - {"broken"})


@pytest.mark.parametrize(
    ("definition", "beside"),
    [
        ({"condition": {"compare": {"path": "stats.orders", "op": "gte", "value": 2}}}, True),
        ({"condition": {"event": {"type": "order_completed", "atLeast": 1, "withinDays": 30}}}, True),
        ({"condition": {"compare": {"path": "rfm.segment", "op": "eq", "value": "Champions"}}}, False),
        (
            {
                "condition": {
                    "and": [
                        {"compare": {"path": "stats.orders", "op": "gte", "value": 2}},
                        {"not": {"compare": {"path": "rfm.segment", "op": "eq", "value": "Champions"}}},
                    ]
                }
            },
            False,
        ),
        ({"condition": {"inSegment": {"segmentId": "vip-rfm"}}}, False),  # which may read a trait
        ({"condition": {"compare": {"path": "stats.nope", "op": "eq", "value": 1}}}, False),  # refused by the loader
        ({"condition": "everyone"}, False),
    ],
)
def test_a_segment_is_defined_beside_the_traits_when_it_reads_none(definition: dict[str, object], beside: bool) -> None:
    assert beside_traits(definition) is beside
