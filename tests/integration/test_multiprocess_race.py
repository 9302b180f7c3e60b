"""Two server processes on one embedded store racing to create the same new customer end with one
profile: SQLite's write lock (BEGIN IMMEDIATE) serialises them across processes."""

from __future__ import annotations

import asyncio
import multiprocessing
from pathlib import Path
from typing import Any

from app.services import profile_reads
from app.services.ingestion import EventStatus, ingest_events
from app.store.sqlite.store import SQLiteStore
from tests.builders import event


def _ingest(path: str, worker: int, start: Any, results: Any) -> None:
    async def run() -> int:
        store = SQLiteStore(path)
        start.wait(10)
        accepted = 0
        for n in range(20):
            # anonymousId: a type without a limit on one profile, so every event's is kept
            ids = [("email", "race@example.com"), ("anonymousId", f"w{worker}-{n}")]
            batch = [event("page_view", identifiers=ids, message_id=f"w{worker}-m{n}")]
            accepted += sum(o.status is EventStatus.ACCEPTED for o in await ingest_events(store, batch))
        await store.close()
        return accepted

    results.put(asyncio.run(run()))


async def test_two_processes_creating_the_same_customer_make_one_profile(tmp_path: Path) -> None:
    path = str(tmp_path / "cdp.sqlite3")
    SQLiteStore(path)  # create the schema once
    context = multiprocessing.get_context("spawn")
    start, results = context.Event(), context.Queue()
    workers = [context.Process(target=_ingest, args=(path, w, start, results)) for w in range(2)]
    for worker in workers:
        worker.start()
    start.set()
    accepted = [results.get(timeout=60) for _ in workers]
    for worker in workers:
        worker.join(10)
    assert accepted == [20, 20]
    store = SQLiteStore(path)
    assert await store.count_profiles() == 1
    profile = await profile_reads.get_profile_by_identifier(store, "email", "race@example.com")
    assert profile is not None and profile.stats.page_views == 40 and len(profile.identifiers) == 41
    await store.close()
