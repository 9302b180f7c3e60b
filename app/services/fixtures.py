"""Load the demo data set (fixtures/*.jsonl) through the same services a client would use:
products, then CRM profiles through upsert, then events through ingestion, with progress."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass, replace
from itertools import islice
from pathlib import Path
from typing import Any

from app.domain.events import RawEvent, RawIdentifier
from app.services.extended_json import read_lines
from app.services.ingestion import EventStatus, IngestionPolicy, ingest_events
from app.services.ports import ProfileStore
from app.services.profiles import upsert_profile

Progress = Callable[[str, int, int], None]  # (stage, done, total)
EVENT_BATCH = 500


@dataclass(slots=True)
class LoadReport:
    products: int = 0
    profiles: int = 0
    events_accepted: int = 0
    events_duplicate: int = 0
    events_rejected: int = 0


def _identifiers(raw: list[dict[str, Any]]) -> list[RawIdentifier]:
    return [RawIdentifier(str(i["type"]), str(i["value"])) for i in raw]


def raw_event(document: dict[str, Any]) -> RawEvent:
    return RawEvent(
        message_id=str(document.get("messageId") or document["_id"]),
        type=str(document["type"]),
        channel=str(document["channel"]),
        timestamp=document["timestamp"],
        identifiers=_identifiers(document.get("identifiers", [])),
        properties=document.get("properties") or {},
    )


def _batches(items: Iterator[dict[str, Any]], size: int) -> Iterator[list[dict[str, Any]]]:
    while batch := list(islice(items, size)):
        yield batch


def _count_lines(path: Path) -> int:
    with path.open("rb") as handle:
        return sum(1 for line in handle if line.strip())


async def load_fixtures(
    store: ProfileStore, directory: Path, policy: IngestionPolicy, progress: Progress | None = None
) -> LoadReport:
    report = LoadReport()
    report_progress = progress or (lambda stage, done, total: None)
    products = directory / "products.jsonl"
    if products.exists():
        for batch in _batches(read_lines(products), 500):
            report.products += await store.upsert_products(batch)
        report_progress("products", report.products, report.products)
    profiles = directory / "profiles.jsonl"
    if profiles.exists():
        total = _count_lines(profiles)
        for document in read_lines(profiles):
            fields = {k: v for k, v in document.items() if k not in ("_id", "identifiers")}
            fields = _snake_case(fields)
            await upsert_profile(
                store, _identifiers(document["identifiers"]), fields, source="crm", policy=policy.identity
            )
            report.profiles += 1
            if report.profiles % 100 == 0 or report.profiles == total:
                report_progress("profiles", report.profiles, total)
    events = directory / "events.jsonl"
    if events.exists():
        total = _count_lines(events)
        done = 0
        policy = replace(policy, max_batch_size=EVENT_BATCH)
        for batch in _batches(read_lines(events), EVENT_BATCH):
            for outcome in await ingest_events(store, [raw_event(d) for d in batch], policy):
                if outcome.status is EventStatus.ACCEPTED:
                    report.events_accepted += 1
                elif outcome.status is EventStatus.DUPLICATE:
                    report.events_duplicate += 1
                else:
                    report.events_rejected += 1
            done += len(batch)
            report_progress("events", done, total)
    return report


_SNAKE = {
    "firstName": "first_name",
    "lastName": "last_name",
    "birthDate": "birth_date",
    "jobTitle": "job_title",
}


def _snake_case(fields: dict[str, Any]) -> dict[str, Any]:
    return {_SNAKE.get(key, key): value for key, value in fields.items()}
