"""The demo data set: the committed files are what the committed generator writes, and they load
into a fresh embedded store through the real services with nothing rejected, giving the profiles
the README's examples query."""

from __future__ import annotations

import importlib.util
import json
import os
import sqlite3
import subprocess
import sys
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from types import ModuleType
from typing import Any

import httpx
import pytest
import pytest_asyncio

from app.bootstrap import Services
from app.domain import clock
from app.domain.access import Scope
from app.domain.errors import InvalidInput
from app.domain.events import Channel, EventType
from app.main import create_app
from app.services import match_candidates, profile_reads
from app.services.api_keys import create_key
from app.services.fixtures import (
    SHIFT_META,
    LoadReport,
    check_data_set,
    demo_shift,
    load_fixtures,
    load_segments,
    raw_event,
)
from app.services.ingestion import IngestionPolicy
from app.services.recommendations import upsert_products
from app.settings import Settings
from app.store.sqlite.store import SQLiteStore

FIXTURES = Path(__file__).resolve().parents[2] / "fixtures"


def _generator() -> ModuleType:
    spec = importlib.util.spec_from_file_location("fixtures_generate", FIXTURES / "generate.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # its dataclasses look their module up while being defined
    spec.loader.exec_module(module)
    return module


def test_the_committed_files_are_what_the_generator_writes(tmp_path: Path) -> None:
    _generator().generate(tmp_path)
    for name in ("products.jsonl", "profiles.jsonl", "events.jsonl"):
        assert (tmp_path / name).read_bytes() == (FIXTURES / name).read_bytes(), f"run `make fixtures`: {name}"


def test_the_data_set_has_what_the_issue_asks_for() -> None:
    events = [json.loads(line) for line in (FIXTURES / "events.jsonl").open(encoding="utf-8")]
    products = [json.loads(line) for line in (FIXTURES / "products.jsonl").open(encoding="utf-8")]
    assert len(events) >= 20_000 and len(products) >= 200
    assert {e["type"] for e in events} == set(EventType)
    assert {e["channel"] for e in events} == set(Channel)
    times = sorted(e["timestamp"]["$date"] for e in events)
    assert times[0] >= "2025-11-01" and times[-1] < "2026-11-01" and times[-1] > "2026-10-01"
    assert len({p["category"] for p in products}) >= 10
    assert all({"price", "stock", "category", "currency"} <= set(p) for p in products)
    known = {i["value"] for e in events for i in e["identifiers"] if i["type"] == "email"}
    assert len(known) >= 500


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def loaded(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[tuple[SQLiteStore, LoadReport]]:
    store = SQLiteStore(tmp_path_factory.mktemp("fixtures") / "cdp.sqlite3")
    settings = Settings()
    policy = IngestionPolicy(max_batch_size=settings.max_batch_size, identity=settings.identity_policy())
    # As the server's first start does: dates moved so that the newest event lands within the last day.
    report = await load_fixtures(store, FIXTURES, policy, shift=await demo_shift(store, FIXTURES, clock.now()))
    yield store, report
    await store.close()


@pytest.mark.asyncio(loop_scope="module")
async def test_everything_loads_and_nothing_is_rejected(loaded: tuple[SQLiteStore, LoadReport]) -> None:
    store, report = loaded
    assert report.problems == []
    assert (report.events_rejected, report.profiles_rejected, report.events_duplicate) == (0, 0, 0)
    assert report.events_accepted >= 20_000 and report.products >= 200 and report.profiles >= 200
    assert await store.count_products() == report.products
    assert await store.count_profiles() >= 500


@pytest.mark.asyncio(loop_scope="module")
async def test_every_event_type_and_channel_is_in_the_stored_history(loaded: tuple[SQLiteStore, LoadReport]) -> None:
    store, report = loaded
    with sqlite3.connect(store.path) as db:
        types = {row[0] for row in db.execute("SELECT DISTINCT type FROM history")}
        channels = {row[0] for row in db.execute("SELECT DISTINCT channel FROM history")}
        stored = db.execute("SELECT count(*) FROM history").fetchone()[0]
    assert types == set(EventType)
    assert channels == set(Channel)
    assert stored == report.events_accepted


@pytest.mark.asyncio(loop_scope="module")
async def test_the_readme_customer_and_stitched_channels(loaded: tuple[SQLiteStore, LoadReport]) -> None:
    store, _ = loaded
    emma = await profile_reads.get_profile_by_identifier(store, "email", "Emma.Martin@Example.com ")
    assert emma is not None
    assert (emma.first_name, emma.last_name, emma.addresses[0].city) == ("Emma", "Martin", "Lyon")
    assert emma.stats.orders >= 5 and emma.stats.revenue_cents > 0
    assert {"customerId:C000001", "phone:+33612345678", "email:emma.martin@example.com"} <= emma.identifier_keys()
    # Her web visits (anonymousId), app (deviceId) and till (loyaltyId) are on the same profile.
    assert {"anonymousId", "deviceId", "loyaltyId"} <= {r.type for r in emma.identifiers}
    assert {"web", "mobile", "store", "email"} <= set(emma.stats.channels)
    assert emma.recent and emma.recent[0].timestamp >= emma.recent[-1].timestamp

    # Across the store: profiles stitched from anonymous browsing to a known customer, consents, surveys.
    with sqlite3.connect(store.path) as db:
        stitched = db.execute(
            "SELECT count(*) FROM profiles p WHERE merged_into IS NULL AND "
            "EXISTS (SELECT 1 FROM identities WHERE profile_id = p.id AND type = 'anonymousId') AND "
            "EXISTS (SELECT 1 FROM identities WHERE profile_id = p.id AND type = 'email')"
        ).fetchone()[0]
        two_customer_ids = db.execute(
            "SELECT count(*) FROM (SELECT profile_id FROM identities WHERE type = 'customerId' "
            "GROUP BY profile_id HAVING count(*) > 1)"
        ).fetchone()[0]
    assert stitched >= 200
    assert two_customer_ids == 0


@pytest.mark.asyncio(loop_scope="module")
async def test_the_near_duplicates_are_merge_candidates(loaded: tuple[SQLiteStore, LoadReport]) -> None:
    store, _ = loaded
    rows = [json.loads(line) for line in (FIXTURES / "profiles.jsonl").open(encoding="utf-8")]
    duplicates = [row for row in rows if row["_id"].startswith("D-")]
    assert len(duplicates) >= 5
    found = 0
    for row in duplicates:
        original = await profile_reads.get_profile_by_identifier(store, "customerId", row["_id"].removeprefix("D-"))
        copy = await profile_reads.get_profile_by_identifier(store, "email", row["identifiers"][0]["value"])
        assert original is not None and copy is not None and original.id != copy.id
        candidates = await match_candidates.candidates_for_profile(store, copy.id)
        found += original.id in {c.b for c in candidates}
    assert found >= len(duplicates) - 1, f"only {found} of {len(duplicates)} near-duplicates found"


@pytest.mark.asyncio(loop_scope="module")
async def test_the_demo_segments_are_defined_and_have_members(loaded: tuple[SQLiteStore, LoadReport]) -> None:
    store, _ = loaded
    services = Services(settings=Settings(seed_fixtures=False), store=store, ingestion=IngestionPolicy())

    async def create(fields: dict[str, Any], segment_id: str) -> object:
        return await services.segments.create(fields, segment_id=segment_id)

    assert await load_segments(create, FIXTURES, LoadReport()) == 5
    counts = {s.id: await store.count_members(s.id) for s in await store.list_segments()}
    assert counts["nps-detractors"] > 0 and counts["email-engaged"] > 0 and counts["at-risk"] > 0, counts
    for profile_id in await store.member_ids("email-engaged"):
        profile = await store.get_profile(profile_id)
        assert profile is not None and profile.consents["email_marketing"].granted


async def test_bad_lines_are_reported_by_file_and_line_and_write_nothing(tmp_path: Path) -> None:
    good = {"_id": "C1", "identifiers": [{"type": "email", "value": "ok@example.com"}], "firstName": "Ok"}
    bad = {"_id": "C2", "identifiers": [{"type": "email", "value": "not-an-email"}], "firstName": "Bad"}
    (tmp_path / "profiles.jsonl").write_text(json.dumps(good) + "\n" + json.dumps(bad) + "\n")
    event = {
        "_id": "m1",
        "type": "page_view",
        "channel": "web",
        "timestamp": {"$date": "2026-01-01T10:00:00.000Z"},
        "identifiers": [{"type": "email", "value": "late@example.com"}],
        "properties": {"url": "/"},
    }
    no_type = {k: v for k, v in event.items() if k != "type"} | {"_id": "m2"}
    wrong_channel = event | {"_id": "m3", "channel": "fax"}
    lines = [event, no_type, wrong_channel]
    (tmp_path / "events.jsonl").write_text("".join(json.dumps(line) + "\n" for line in lines))
    store = SQLiteStore(tmp_path / "cdp.sqlite3")
    try:
        report = await load_fixtures(store, tmp_path, IngestionPolicy())
        assert (report.profiles, report.profiles_rejected, report.events_accepted, report.events_rejected) == (
            1,
            1,
            1,
            2,
        )
        assert report.problems[0].startswith("profiles.jsonl:2: identifiers[0].value")
        assert report.problems[1:] == [
            "events.jsonl:2: missing type",
            "events.jsonl:3: channel: unknown channel 'fax'; expected one of web, mobile, email, store, "
            "call_center, customer_service",
        ]
        assert await store.count_profiles() == 2  # ok@ and late@: nothing of the bad lines
        assert await profile_reads.get_profile_by_identifier(store, "email", "late@example.com") is not None
    finally:
        await store.close()


async def test_each_line_is_judged_alone_whatever_is_wrong_with_it(tmp_path: Path) -> None:
    """A line that is not JSON, not an object, holds a date that cannot be read, or identifiers of
    the wrong shape is reported by its line (blank lines counted) and writes nothing; the lines after
    it load. (A broken line stopped the whole load, or ended it with a traceback.)"""
    when = {"$date": "2026-01-01T10:00:00.000Z"}
    product = {"_id": "sku-1", "name": "Boot", "category": "shoes", "price": 10.0, "priceHistory": []}
    (tmp_path / "products.jsonl").write_text(
        "\n".join([json.dumps(product), "{", json.dumps({"_id": "sku-2", "name": "Hat", "price": "cheap"})]) + "\n"
    )
    good = {"_id": "C1", "identifiers": [{"type": "email", "value": "crm@example.com"}], "firstName": "Ok"}
    (tmp_path / "profiles.jsonl").write_text(
        "\n".join([json.dumps({"_id": "C0", "identifiers": "crm@example.com"}), "", json.dumps(good)]) + "\n"
    )

    def event(message_id: str, **changed: Any) -> str:
        fields = {
            "_id": message_id,
            "type": "page_view",
            "channel": "web",
            "timestamp": when,
            "identifiers": [{"type": "email", "value": f"{message_id}@example.com"}],
            "properties": {"url": "/"},
        }
        return json.dumps(fields | changed)  # fmt: skip

    lines = [
        event("m1"),
        "not json at all",
        "[1, 2]",
        "",
        event("m2", timestamp={"$date": "soon"}),
        event("m3", timestamp={"$date": ["2026-01-01"]}),
        event("m4", identifiers="m4@example.com"),
        event("m5", identifiers=[{"type": "email"}]),
        event("m6"),
        event("m7", _id={"a": 1}),
    ]
    (tmp_path / "events.jsonl").write_text("\n".join(lines) + "\n")
    store = SQLiteStore(tmp_path / "cdp.sqlite3")
    try:
        report = await load_fixtures(store, tmp_path, IngestionPolicy())
        assert (report.products, report.products_rejected) == (1, 2)
        assert (report.profiles, report.profiles_rejected) == (1, 1)
        assert (report.events_accepted, report.events_rejected) == (2, 7)
        assert [p.split(": ")[0] for p in report.problems] == [
            "products.jsonl:2",
            "products.jsonl:3",
            "profiles.jsonl:1",
            *(f"events.jsonl:{n}" for n in (2, 3, 5, 6, 7, 8, 10)),
        ]
        said = dict(p.split(": ", 1) for p in report.problems)
        assert said["products.jsonl:2"].startswith("not valid JSON")
        assert said["products.jsonl:3"].startswith("price: Input should be a valid number")
        wrong_identifiers = 'identifiers: must be a list of {"type": …, "value": …}'
        assert said["profiles.jsonl:1"] == wrong_identifiers
        assert said["events.jsonl:2"].startswith("not valid JSON")
        assert said["events.jsonl:3"] == "not a JSON object"
        assert said["events.jsonl:5"].startswith("not valid Extended JSON (ValueError: Invalid isoformat string")
        assert said["events.jsonl:6"] == "not valid Extended JSON (ValueError: $date holds list, not an integer)"
        assert said["events.jsonl:7"] == said["events.jsonl:8"] == wrong_identifiers
        assert said["events.jsonl:10"] == "_id: must be a string (or an integer)"  # its repr was the messageId
        assert [p.id for p in await store.get_products(["sku-1", "sku-2"])] == ["sku-1"]
        assert await store.count_profiles() == 3  # crm@, m1@ and m6@: nothing of the bad lines
        for value in ("m1@example.com", "m6@example.com"):
            assert await profile_reads.get_profile_by_identifier(store, "email", value) is not None
    finally:
        await store.close()


def test_an_event_id_of_0_is_an_id_and_an_empty_one_is_missing() -> None:
    line = {"type": "page_view", "channel": "web", "timestamp": datetime(2026, 1, 1, tzinfo=UTC)}
    assert raw_event({**line, "_id": 0}).message_id == "0"
    # An empty messageId falls back to _id, as the files were always read (found by a review).
    for empty in ("", False, 0, None):
        assert raw_event({**line, "messageId": empty, "_id": "m2"}).message_id == "m2"
    with pytest.raises(InvalidInput, match=r"missing messageId \(or _id\)"):
        raw_event({**line, "_id": ""})


async def test_a_segment_line_with_a_null_id_is_refused(tmp_path: Path) -> None:
    """It was defined as the segment "None" (found by a review)."""
    (tmp_path / "segments.jsonl").write_text(json.dumps({"_id": None, "name": "Nobody", "condition": {}}) + "\n")
    made: list[str] = []

    async def create(fields: dict[str, Any], segment_id: str) -> object:
        made.append(segment_id)
        return None

    report = LoadReport()
    assert await load_segments(create, tmp_path, report) == 0
    assert made == [] and report.problems == ["segments.jsonl:1: missing _id"]


def test_the_load_command_reports_every_bad_line_and_exits_1(tmp_path: Path) -> None:
    data = tmp_path / "data"
    data.mkdir()
    good = {"_id": "m1", "type": "page_view", "channel": "web", "timestamp": {"$date": "2026-01-01T10:00:00.000Z"},
            "identifiers": [{"type": "email", "value": "one@example.com"}], "properties": {"url": "/"}}  # fmt: skip
    (data / "events.jsonl").write_text("\n".join(["{oops", json.dumps(good)]) + "\n")
    database = tmp_path / "cdp.sqlite3"
    done, said = _load(data, database)  # the report is printed on the console (stderr)
    assert done.returncode == 1, said
    assert "Traceback" not in said
    assert "1 events (0 already present; rejected: 0 products, 0 profiles, 1 events)" in said, said
    assert "events.jsonl:1: not valid JSON" in said, said
    with sqlite3.connect(database) as db:
        assert db.execute("SELECT count(*) FROM history").fetchone()[0] == 1


def test_a_json_array_or_an_unreadable_file_is_refused_before_anything_is_written(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Found by an audit: a mongoexport --jsonArray file was read whole into memory and refused as its
    one line; an events.jsonl this user could not read was found once the profiles were in."""
    data = tmp_path / "data"
    data.mkdir()
    (data / "profiles.jsonl").write_text(
        json.dumps({"_id": "c1", "identifiers": [{"type": "email", "value": "a@b.co"}]})
    )
    (data / "events.jsonl").write_text('\n  [{"_id": "m1"},\n {"_id": "m2"}]\n')
    database = tmp_path / "cdp.sqlite3"
    done, said = _load(data, database)
    assert done.returncode == 1 and "Traceback" not in said, said
    assert "events.jsonl holds a JSON array: one JSON object a line is read (mongoexport without --jsonArray)" in said
    assert not database.exists()

    (data / "events.jsonl").write_text("")
    real_open = Path.open

    def refused(path: Path, *args: Any, **kwargs: Any) -> Any:  # as the system refuses a file of mode 000
        if path.name == "events.jsonl":
            raise PermissionError(13, "Permission denied", str(path))
        return real_open(path, *args, **kwargs)

    monkeypatch.setattr(Path, "open", refused)
    with pytest.raises(InvalidInput, match=r"events\.jsonl cannot be read: Permission denied"):
        check_data_set(data)


def test_the_load_command_lists_the_first_refused_lines_in_order_then_how_many_more(tmp_path: Path) -> None:
    """Found by an audit: lines the reading refused were listed before the lines ingestion refused
    earlier in the batch (2, 3, 5 … then 7, 8), and past 20 the rest were left out unsaid."""
    data = tmp_path / "data"
    data.mkdir()
    unknown = {"type": "not_a_type", "channel": "web", "timestamp": {"$date": "2026-01-01T10:00:00.000Z"},
               "identifiers": [{"type": "email", "value": "one@example.com"}]}  # fmt: skip
    lines = ["{oops" if n % 2 else json.dumps({**unknown, "_id": f"m{n}"}) for n in range(1, 26)]
    (data / "events.jsonl").write_text("\n".join(lines) + "\n")
    done, said = _load(data, tmp_path / "cdp.sqlite3")
    assert done.returncode == 1, said
    listed = [int(line.split(":")[1]) for line in said.splitlines() if line.strip().startswith("events.jsonl:")]
    assert listed == list(range(1, 21)), said
    assert "… and 5 more (the first 20 are above)" in said, said


def test_the_load_command_defines_the_segments_of_the_data_set_after_the_traits(tmp_path: Path) -> None:
    """`python -m app load` is how a MongoDB deployment gets the demo data: it defined no segment of
    segments.jsonl (only the server's first start did), so the README's examples found nothing. Run
    twice, the second run evaluates the segments already defined. A refused line is judged alone (it
    stopped the load, its report unsaid)."""
    data = tmp_path / "data"
    data.mkdir()
    when = {"$date": "2026-01-01T10:00:00.000Z"}
    one, two = [{"type": "email", "value": "one@example.com"}], [{"type": "email", "value": "two@example.com"}]
    order = {"_id": "o1", "type": "order_completed", "channel": "web", "timestamp": when, "identifiers": one,
             "properties": {"orderId": "A", "total": 30}}  # fmt: skip
    view = {**order, "_id": "v1", "type": "page_view", "properties": {"url": "/"}, "identifiers": two}
    (data / "events.jsonl").write_text(f"{json.dumps(order)}\n{json.dumps(view)}\n")
    buyers = {
        "_id": "buyers",
        "name": "Buyers",
        "condition": {"compare": {"path": "stats.orders", "op": "gte", "value": 1}},
    }
    scored = {"_id": "scored", "name": "Scored",
              "condition": {"compare": {"path": "rfm.recencyScore", "op": "gte", "value": 1}}}  # fmt: skip
    bad = {"_id": "typo", "name": "Typo", "condition": {"compare": {"path": "stats.ordres", "op": "gte", "value": 1}}}
    odd = {**buyers, "_id": "odd", "description": ["a list"]}  # a pydantic error, not a domain one: a traceback
    lines = [buyers, bad, odd, scored]
    (data / "segments.jsonl").write_text("".join(f"{json.dumps(line)}\n" for line in lines))
    database = tmp_path / "cdp.sqlite3"
    for run in range(2):
        done, said = _load(data, database)
        assert done.returncode == 1, said  # a line refused, judged alone: the others are defined
        assert "rejected: 0 products, 0 profiles, 0 events, 2 segments), 2 segments defined and evaluated" in said
        assert 'segments.jsonl:2: condition.compare.path: unknown path "stats.ordres"' in said, said
        assert "segments.jsonl:3: description: Input should be a valid string" in said and "Traceback" not in said
        with sqlite3.connect(database) as db:
            members = db.execute(
                "SELECT s.id, count(m.profile_id) FROM segments s LEFT JOIN segment_members m ON m.segment_id = s.id "
                "GROUP BY s.id ORDER BY s.id"
            ).fetchall()
        assert members == [("buyers", 1), ("scored", 1)], (run, members)  # RFM: the buyer only, traits first


def _load(data: Path, database: Path) -> tuple[subprocess.CompletedProcess[str], str]:
    """`python -m app load DATA` into `database`, and what it said (the report is on stderr)."""
    done = subprocess.run(
        [sys.executable, "-m", "app", "load", str(data)],
        cwd=FIXTURES.parent,
        env={**os.environ, "CDP_DATABASE_URL": f"sqlite:///{database}", "COLUMNS": "200"},
        capture_output=True,
        text=True,
        timeout=120,
    )
    return done, done.stdout + done.stderr


def _readme_example(containing: str) -> str:
    """The first ```graphql block of the README that contains `containing`."""
    readme = (FIXTURES.parent / "README.md").read_text(encoding="utf-8")
    blocks = readme.split("```graphql\n")[1:]
    return next(block.split("```")[0] for block in blocks if containing in block)


@pytest.mark.asyncio(loop_scope="module")
async def test_the_demo_data_ends_within_the_day_before_it_was_loaded(loaded: tuple[SQLiteStore, LoadReport]) -> None:
    store, _ = loaded
    files = [json.loads(line)["timestamp"]["$date"] for line in (FIXTURES / "events.jsonl").open(encoding="utf-8")]
    with sqlite3.connect(store.path) as db:
        first, last = db.execute("SELECT min(ts), max(ts) FROM history").fetchone()
    newest, oldest = datetime.fromisoformat(last), datetime.fromisoformat(first)
    assert clock.now() - timedelta(days=1) < newest <= clock.now()
    # Moved as a whole, by whole days: the spacing and the time of day are those of the files.
    shift = timedelta(days=int(await store.read_meta(SHIFT_META) or "x"))
    assert (oldest - shift, newest - shift) == (datetime.fromisoformat(min(files)), datetime.fromisoformat(max(files)))


@pytest.mark.asyncio(loop_scope="module")
async def test_the_readme_cart_abandoners_example_finds_members(loaded: tuple[SQLiteStore, LoadReport]) -> None:
    """Issue 16 item 2: the README's `createSegment` (a 7-day window) run through HTTP on the demo data."""
    store, _ = loaded
    services = Services(settings=Settings(seed_fixtures=False), store=store, ingestion=IngestionPolicy())
    _, token = await create_key(store, "readme", list(Scope))
    transport = httpx.ASGITransport(app=create_app(services=services))
    async with httpx.AsyncClient(
        transport=transport, base_url="http://test", headers={"authorization": f"Bearer {token}"}
    ) as http:
        example = _readme_example("createSegment(input")
        assert "withinDays: 7" in example
        body = (await http.post("/graphql", json={"query": example})).json()
        assert "errors" not in body, body
        created = body["data"]["createSegment"]
        assert created["members"] > 0 and created["segment"]["count"] == created["members"], created
        members = (
            await http.post(
                "/graphql",
                json={
                    "query": "query($id: ID!) { segment(id: $id) { members(first: 50) { edges { node { "
                    "stats { revenue } consents { purpose granted } } } } } }",
                    "variables": {"id": created["segment"]["id"]},
                },
            )
        ).json()
    for edge in members["data"]["segment"]["members"]["edges"]:
        node = edge["node"]
        assert node["stats"]["revenue"] >= 50
        assert {"purpose": "email_marketing", "granted": True} in [
            {"purpose": c["purpose"], "granted": c["granted"]} for c in node["consents"]
        ]


@pytest.mark.asyncio(loop_scope="module")
async def test_loading_again_moves_the_dates_the_same_way_and_duplicates_nothing(
    loaded: tuple[SQLiteStore, LoadReport], tmp_path: Path
) -> None:
    """A repeated or resumed load, even days later, uses the shift the first load kept: every event is
    already present (the last 1,000 lines of the file, for speed)."""
    store, _ = loaded
    first = await store.read_meta(SHIFT_META)
    assert first is not None
    later = await demo_shift(store, FIXTURES, clock.now() + timedelta(days=3))
    assert later == timedelta(days=int(first))
    lines = (FIXTURES / "events.jsonl").read_text(encoding="utf-8").splitlines()[-1000:]
    (tmp_path / "events.jsonl").write_text("\n".join(lines) + "\n", encoding="utf-8")
    with sqlite3.connect(store.path) as db:
        before = db.execute("SELECT count(*) FROM history").fetchone()[0]
    settings = Settings()
    policy = IngestionPolicy(max_batch_size=settings.max_batch_size, identity=settings.identity_policy())
    report = await load_fixtures(store, tmp_path, policy, shift=later)
    assert (report.events_accepted, report.events_duplicate, report.events_rejected) == (0, 1000, 0)
    with sqlite3.connect(store.path) as db:
        assert db.execute("SELECT count(*) FROM history").fetchone()[0] == before


async def test_a_data_file_is_held_to_what_the_api_takes(tmp_path: Path) -> None:
    """Found by an audit of the loaders: an identifier value of null was stored as the text "None"
    (two customers of one file became one profile); products the API refuses were stored (a NaN
    price then failed every customer's recommendations); a 24-digit stock failed the whole load with
    a traceback; and a second load replaced the price history the API had added to."""
    when = {"$date": "2026-01-01T10:00:00.000Z"}
    boot = {"_id": "sku-1", "name": "Boot", "category": "shoes", "price": 10.5, "stock": 3}
    products = [
        boot,
        {**boot, "_id": "sku-2", "price": {"$numberDecimal": "NaN"}},
        {**boot, "_id": "sku-3", "stock": -3},
        {**boot, "_id": "sp ace"},
        {**boot, "_id": "sku-4", "stock": {"$numberLong": "99999999999999999999999"}},
        {**boot, "_id": "sku-5", "currency": "eur"},
    ]
    (tmp_path / "products.jsonl").write_text("\n".join(json.dumps(p) for p in products) + "\n")
    people = [
        {"_id": "A", "identifiers": [{"type": "customerId", "value": None}], "firstName": "Ann"},
        {"_id": "B", "identifiers": [{"type": "customerId", "value": None}], "firstName": "Bob"},
        {"_id": "C", "identifiers": [{"type": "customerId", "value": True}], "firstName": "Cy"},
    ]
    (tmp_path / "profiles.jsonl").write_text("\n".join(json.dumps(p) for p in people) + "\n")
    view = {"type": "page_view", "channel": "web", "timestamp": when, "properties": {"url": "/"}}
    events = [{**view, "_id": "m1", "identifiers": [{"type": "anonymousId", "value": None}]}]
    (tmp_path / "events.jsonl").write_text("\n".join(json.dumps(e) for e in events) + "\n")
    store = SQLiteStore(tmp_path / "cdp.sqlite3")
    try:
        report = await load_fixtures(store, tmp_path, IngestionPolicy())
        said = dict(p.split(": ", 1) for p in report.problems)
        assert (report.products, report.products_rejected) == (1, 5)
        assert said["products.jsonl:2"].startswith("price: ")  # NaN
        assert said["products.jsonl:3"].startswith("stock: Input should be greater than or equal to 0")
        assert said["products.jsonl:4"].startswith("id: String should match pattern")
        assert said["products.jsonl:5"].startswith("stock: Input should be less than or equal to 2147483647")
        assert said["products.jsonl:6"].startswith("currency: String should match pattern")
        assert (report.profiles, report.profiles_rejected, report.events_accepted) == (0, 3, 0)
        assert said["profiles.jsonl:1"] == "identifiers[0].value: must be a string, got None"
        assert said["profiles.jsonl:3"] == "identifiers[0].value: must be a string, got True"
        assert said["events.jsonl:1"] == "identifiers[0].value: must be a string, got None"
        assert await store.count_profiles() == 0

        # A change through the API, then the same load again: the file's price is set again, as a new
        # entry of the history, which keeps the API's; what the traits job computed stays.
        await upsert_products(store, [{"id": "sku-1", "price": 8.0, "stock": 50}])
        await store.set_product_signals({"sku-1": (7, [])})
        await load_fixtures(store, tmp_path, IngestionPolicy())
        (shoe,) = await store.get_products(["sku-1"])
        assert [p.price for p in shoe.price_history] == [8.0, 10.5]  # the file has none of its own
        assert (shoe.price, shoe.stock, shoe.sales) == (10.5, 3, 7)
    finally:
        await store.close()
