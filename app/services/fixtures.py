"""Load the demo data set (fixtures/*.jsonl) through the same services a client would use:
products, then CRM profiles through upsert, then events through ingestion, with progress. Every
write reports its changes through `policy.changes`, so segments follow as they do for the API.

The files hold a fixed year; loaded as they are, windows such as "in the last 7 days" would find
nobody a few weeks later. So the demo data is loaded shifted (`demo_shift`): every date moves by the
same whole number of days, chosen at the first load so that the newest event lands within the day
before it, and kept in the store's meta, so a resumed or repeated load shifts the same way (message
ids do not change: loading again reports every event as already present)."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Iterator, Set
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from itertools import islice
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from app.domain.errors import DomainError, InvalidInput, StoreUnavailable, first_problem
from app.domain.events import RawEvent, RawIdentifier
from app.domain.products import Product, ProductFields, checked_document
from app.services.extended_json import Line, field_values, read_lines
from app.services.ingestion import EventStatus, IngestionPolicy, ingest_events
from app.services.ports import ProfileStore
from app.services.profiles import upsert_profiles
from app.services.recommendations import write_products

Progress = Callable[[str, int, int], None]  # (stage, done, total)
# Events ingested with one call: as many as a client's batch may hold (IngestionPolicy.max_batch_size),
# so that the load holds the writer no longer than any client's batch does. With 500 and 5 ms pauses
# before (2026-12-04, alternating, bench/first_start.py's start): the demo data ready in 9.31-9.89 s
# against 10.33-10.41; small API writes sent during the load waited 182-192 ms (p90) against 86-95.
# 2,000 was ready about as soon (9.28-10.42 s) with writes waiting 441-546 ms (p90), up to 1 s.
EVENT_BATCH = 1000
PROFILE_BATCH = 100  # profiles upserted with one commit (each its own unit of work)
# Seconds after each step (about 35 steps for the demo data). 1 ms turns the loop as 5 ms did: with 500
# events a step, writes sent during the load waited 80-84 ms (p90) against 89-95, ready 0.3 s sooner.
STEP_PAUSE = 0.001
MAX_PROBLEMS = 20
DATA_FILES = ("products.jsonl", "profiles.jsonl", "events.jsonl")  # what a data set holds, any of them
SEGMENTS_FILE = "segments.jsonl"  # segment definitions, read after the data (bootstrap.define_segments)
SHIFT_META = "demoDataShiftDays"  # the whole days the demo data's dates were moved by at its first load


@dataclass(slots=True)
class SeedProgress:
    """Where loading the demo data into a new store stands: what /readyz and the playground tell."""

    seeding: bool = False
    stage: str = "starting"
    done: int = 0
    total: int = 0
    failure: str | None = None  # why it stopped: the server serves what is in, /readyz says so
    # While this process waits for another one loading the data: that process's stage, when it told it
    # (app/shared_seed_progress.py), shown instead of this one's.
    elsewhere: Callable[[], tuple[str, int, int] | None] | None = None

    def __call__(self, stage: str, done: int, total: int) -> None:
        self.stage, self.done, self.total = stage, done, total

    def shown(self) -> tuple[str, int, int]:
        told = self.elsewhere() if self.elsewhere is not None else None
        return told if told is not None else (self.stage, self.done, self.total)

    def to_json(self) -> dict[str, object]:
        stage, done, total = self.shown()
        return {"stage": stage, "done": done, "total": total}

    def describe(self) -> str:
        stage, done, total = self.shown()
        return f"{stage}: {done:,} of {total:,}" if total else stage


@dataclass(slots=True)
class LoadReport:
    products: int = 0
    profiles: int = 0
    products_rejected: int = 0
    events_accepted: int = 0
    events_duplicate: int = 0
    events_rejected: int = 0
    profiles_rejected: int = 0
    segments_rejected: int = 0
    # What was refused, as "file:line: reason", in the files' order and each file's line order: a data
    # file has a bug, say where. The first MAX_PROBLEMS, and how many more (they were left out unsaid).
    problems: list[str] = field(default_factory=list)
    problems_left_out: int = 0

    def problem(self, text: str) -> None:
        if len(self.problems) < MAX_PROBLEMS:
            self.problems.append(text)
        else:
            self.problems_left_out += 1

    def lines_refused(self, file: str, refused: list[tuple[int, str]]) -> int:
        """Each (line, why) of a batch said in line order, whichever step refused it; how many."""
        for number, why in sorted(refused):
            self.problem(f"{file}:{number}: {why}")
        return len(refused)


def _identifiers(raw: object) -> list[RawIdentifier]:
    if not isinstance(raw, list) or not all(isinstance(i, dict) and "type" in i and "value" in i for i in raw):
        raise InvalidInput('must be a list of {"type": …, "value": …}', field="identifiers")
    for index, identifier in enumerate(raw):
        # Text only, as the API takes it: str() made a null "None" (every null customerId of a file one
        # customer), true "True", and a 24-digit number its float's text.
        for part in ("type", "value"):
            if not isinstance(identifier[part], str):
                raise InvalidInput(
                    f"must be a string, got {identifier[part]!r}"[:120], field=f"identifiers[{index}].{part}"
                )
    return [RawIdentifier(i["type"], i["value"]) for i in raw]


def raw_event(document: dict[str, Any], shift: timedelta = timedelta(0)) -> RawEvent:
    """The event a file line holds (its timestamp moved by `shift`); InvalidInput when it lacks what
    every event has."""
    missing = [key for key in ("type", "channel", "timestamp") if key not in document]
    # messageId unless it is empty (then _id), as the files have always been read; 0 is an id when the
    # line has no other.
    named = next((n for n in ("messageId", "_id") if document.get(n)), None)
    named = named or next((n for n in ("messageId", "_id") if document.get(n) == 0 and document[n] is not False), None)
    if missing or named is None:
        raise InvalidInput(f"missing {', '.join(missing or ['messageId (or _id)'])}")
    message_id = document[named]
    if isinstance(message_id, bool) or not isinstance(message_id, str | int):  # an object was its repr
        raise InvalidInput("must be a string (or an integer)", field=named)
    if not isinstance(document["timestamp"], datetime):
        raise InvalidInput('timestamp must be an ISO-8601 date in {"$date": …}', field="timestamp")
    try:
        timestamp = document["timestamp"] + shift
    except OverflowError:
        raise InvalidInput("timestamp is out of range once shifted", field="timestamp") from None
    return RawEvent(
        message_id=str(message_id),
        type=str(document["type"]),
        channel=str(document["channel"]),
        timestamp=timestamp,
        identifiers=_identifiers(document.get("identifiers", [])),
        properties=document.get("properties") or {},
    )


def _batches(lines: Iterator[Line], size: int) -> Iterator[list[Line]]:
    while batch := list(islice(lines, size)):
        yield batch


def data_file(directory: Path, name: str) -> Path | None:
    """`directory`/`name` when it is a file to read, None when there is none; InvalidInput naming it
    when something else has its name (a folder: a traceback from the line count before)."""
    path = directory / name
    if not path.exists():
        return None
    if not path.is_file():
        raise InvalidInput(f"{path} is not a file: the data set's {name} must be one", field=name)
    return path


def check_data_set(directory: Path) -> None:
    """InvalidInput unless `directory` holds a data set's file: a mistyped folder, or files of another
    format, loaded nothing and said "loaded 0", a success. Each of its files must be readable and hold
    JSON lines, before anything is written: an events.jsonl this user could not read was found once
    the profiles were in, and a JSON array (mongoexport --jsonArray) was read whole into memory (695 MB
    for 61 MB of events) to be refused as its one line, "not a JSON object"."""
    if not any(data_file(directory, name) for name in DATA_FILES):
        raise InvalidInput(
            f"no data set in {directory}: expected {', '.join(DATA_FILES)} (one JSON object a line)",
            field="directory",
        )
    for name in (*DATA_FILES, SEGMENTS_FILE):
        if (path := data_file(directory, name)) is None:
            continue
        try:
            with path.open("rb") as handle:
                start = handle.read(4096).lstrip()
        except OSError as exc:
            raise InvalidInput(f"{path} cannot be read: {exc.strerror or exc}", field=name) from None
        if start.startswith(b"["):
            raise InvalidInput(
                f"{path} holds a JSON array: one JSON object a line is read (mongoexport without --jsonArray)",
                field=name,
            )


def newest_event(directory: Path) -> datetime | None:
    """The latest timestamp of `directory`/events.jsonl (None without events)."""
    path = data_file(directory, "events.jsonl")
    if path is None:
        return None
    return max((t for t in field_values(path, "timestamp") if isinstance(t, datetime)), default=None)


async def demo_shift(store: ProfileStore, directory: Path, now: datetime) -> timedelta:
    """How far the demo data's dates move: the shift this store's first load chose (its meta), else
    the whole days that bring the newest event of `directory` within the day before `now`, recorded
    before anything is written so that an interrupted load resumes with it."""
    kept = await store.read_meta(SHIFT_META)
    if kept is not None:
        return timedelta(days=int(kept))
    newest = await asyncio.to_thread(newest_event, directory)
    days = (now - newest).days if newest is not None else 0  # floor: may be negative (data ahead of the clock)
    await store.write_meta(SHIFT_META, str(days))
    return timedelta(days=days)


def _product(document: dict[str, Any], shift: timedelta) -> tuple[ProductFields, Product]:
    """A products.jsonl line as `upsertProducts` fields and as a new product (its price history moved
    by `shift`); InvalidInput when it is not a product the API would take. Written as upsertProducts
    writes (`write_products`): a known product is updated with the fields, so that loading a file
    again keeps the price history the API added to and what the traits job computed."""
    fields, checked = checked_document(document)
    try:
        return fields, Product.model_validate(_shifted_product(checked, shift))
    except ValidationError as exc:
        path, message = first_problem(exc)
        raise InvalidInput(message, field=path or None) from None


def _shifted_product(document: dict[str, Any], shift: timedelta) -> dict[str, Any]:
    history = document.get("priceHistory")
    if not shift or not isinstance(history, list):
        return document
    moved = [
        {**point, "from": point["from"] + shift}
        if isinstance(point, dict) and isinstance(point.get("from"), datetime)
        else point
        for point in history
    ]
    return {**document, "priceHistory": moved}


def count_lines(path: Path) -> int:
    with path.open("rb") as handle:
        return sum(1 for line in handle if line.strip())


async def load_fixtures(
    store: ProfileStore,
    directory: Path,
    policy: IngestionPolicy,
    progress: Progress | None = None,
    *,
    shift: timedelta = timedelta(0),
    events: bool = True,
) -> LoadReport:
    """Load `directory` into `store`, every date (event timestamps, products' price history) moved
    by `shift` (see `demo_shift`); its events too unless `events` is False (load_events then)."""
    check_data_set(directory)
    report = LoadReport()
    report_progress = _reporting(progress)

    products = data_file(directory, "products.jsonl")
    if products is not None:
        for batch in _batches(read_lines(products), 500):
            kept = []
            for line in batch:
                try:
                    kept.append(_product(_document(line), shift))
                except InvalidInput as exc:
                    report.products_rejected += 1
                    report.problem(f"products.jsonl:{line.number}: {_said(exc)}")
            report.products += len(await write_products(store, list({f.id: (f, p) for f, p in kept}.values())))
        await report_progress("products", report.products, report.products)
    profiles = data_file(directory, "profiles.jsonl")
    if profiles is not None:
        total = count_lines(profiles)
        done = 0
        for batch in _batches(read_lines(profiles), PROFILE_BATCH):  # one commit each
            lines: list[int] = []
            upserts: list[tuple[list[RawIdentifier], dict[str, Any]]] = []
            refused: list[tuple[int, str]] = []  # (line, why)
            for line in batch:
                try:
                    document = _document(line)
                    fields = {k: v for k, v in document.items() if k not in ("_id", "identifiers")}
                    upserts.append((_identifiers(document.get("identifiers", [])), _snake_case(fields)))
                    lines.append(line.number)
                except InvalidInput as exc:
                    refused.append((line.number, _said(exc)))
            identity, changes = policy.identity, policy.changes
            written = await upsert_profiles(store, upserts, source="crm", policy=identity, changes=changes)
            for number, result in zip(lines, written, strict=True):
                if isinstance(result, InvalidInput):
                    refused.append((number, _said(result)))
                else:
                    report.profiles += 1
            report.profiles_rejected += report.lines_refused("profiles.jsonl", refused)
            done += len(batch)
            await report_progress("profiles", done, total)
    if events:
        await load_events(store, directory, policy, report, progress, shift=shift)
    return report


async def load_events(
    store: ProfileStore,
    directory: Path,
    policy: IngestionPolicy,
    report: LoadReport,
    progress: Progress | None = None,
    *,
    shift: timedelta = timedelta(0),
    lines: Set[int] | None = None,
    order: Callable[[list[int]], list[int]] | None = None,
) -> None:
    """The events of `directory` (those on `lines` of events.jsonl, when given: a part of them,
    app/services/fixture_shards.py), ingested in the file's order and counted into `report`; with
    `order`, each batch's lines in the order it gives them (EventGroups.ingestion_order)."""
    events = data_file(directory, "events.jsonl")
    report_progress = _reporting(progress)
    if events is not None:
        total = count_lines(events) if lines is None else len(lines)
        done = 0
        policy = replace(policy, max_batch_size=EVENT_BATCH)
        for batch in _batches(read_lines(events, lines), EVENT_BATCH):
            if order is not None:
                by_number = {line.number: line for line in batch}
                batch = [by_number[number] for number in order(list(by_number))]
            numbers: list[int] = []
            raws: list[RawEvent] = []
            refused = []
            for line in batch:
                try:
                    raws.append(raw_event(_document(line), shift))
                    numbers.append(line.number)
                except InvalidInput as exc:
                    refused.append((line.number, _said(exc)))
            outcomes = await ingest_events(store, raws, policy, place_duplicates=False)  # a report counts them
            for index, (number, outcome) in enumerate(zip(numbers, outcomes, strict=True)):
                if outcome.status is EventStatus.ACCEPTED:
                    report.events_accepted += 1
                elif outcome.status is EventStatus.DUPLICATE:
                    report.events_duplicate += 1
                else:
                    # The reason names the event by its place in the batch: the line says it here.
                    refused.append((number, (outcome.reason or "").removeprefix(f"events[{index}].")))
            report.events_rejected += report.lines_refused("events.jsonl", refused)
            done += len(batch)
            await report_progress("events", done, total)


def _reporting(progress: Progress | None) -> Callable[[str, int, int], Awaitable[None]]:
    async def report_progress(stage: str, done: int, total: int) -> None:
        if progress is not None:
            progress(stage, done, total)
        # While the server loads the demo data, requests waiting are answered between steps, even with
        # a store whose calls never wait (SQL run on the event loop): a real pause, not sleep(0), so
        # that the loop turns as often as a request needs (accept, read, answer) before the next step.
        await asyncio.sleep(STEP_PAUSE)

    return report_progress


_SNAKE = {
    "firstName": "first_name",
    "lastName": "last_name",
    "birthDate": "birth_date",
    "jobTitle": "job_title",
}


def _snake_case(fields: dict[str, Any]) -> dict[str, Any]:
    return {_SNAKE.get(key, key): value for key, value in fields.items()}


async def load_segments(
    create: Callable[[dict[str, Any], str], Awaitable[object]], directory: Path, report: LoadReport
) -> int:
    """Define the segments of `segments.jsonl` (each evaluated over the store as it is created), each
    line judged alone, as the data lines are: one refused (a bad condition, a purpose not configured,
    the store's segment limit) is in `report` and the others are defined. The first refused line
    stopped the load, the data already in, without its report."""
    path = data_file(directory, SEGMENTS_FILE)
    if path is None:
        return 0
    count = 0
    for line in read_lines(path):
        try:
            document = _document(line)
            if document.get("_id") in (None, ""):  # null was the segment "None"
                raise InvalidInput("missing _id", field="_id")
            await create({k: v for k, v in document.items() if k != "_id"}, str(document["_id"]))
        except (DomainError, ValidationError) as exc:
            if isinstance(exc, StoreUnavailable):
                raise
            if isinstance(exc, ValidationError):  # a field of the wrong type (a list for a description)
                where, message = first_problem(exc)
                said = f"{where}: {message}"
            else:
                said = exc.message
            report.segments_rejected += 1
            report.problem(f"{SEGMENTS_FILE}:{line.number}: {said}")
            continue
        count += 1
    return count


def _said(exc: InvalidInput) -> str:
    """The error as a report's line says it: the field first, unless the message names it already."""
    if exc.field is None or exc.message.startswith(exc.field):
        return exc.message
    return f"{exc.field}: {exc.message}"


def _document(line: Line) -> dict[str, Any]:
    """The object the line holds; InvalidInput saying why it holds none."""
    if line.document is None:
        raise InvalidInput(line.problem or "not a JSON object")
    return line.document
