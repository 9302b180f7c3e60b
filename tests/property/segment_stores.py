"""Evaluate condition trees three ways on the same profiles: the in-memory predicate, the SQLite
WHERE clause and the MongoDB pipeline on mongomock-ng. Profiles, identities and interactions are
written through the real stores' transaction API, so the stored forms are what production writes."""

from __future__ import annotations

import sqlite3
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

from app.domain.identifiers import Identifier
from app.domain.profile import RECENT_INTERACTIONS_CAP, Interaction, Profile
from app.domain.segments.conditions import Condition
from app.domain.segments.predicate import Activity, predicate
from app.services.ports import StoreTransaction
from app.store.mongo.segment_query import membership_pipeline
from app.store.mongo.store import MongoStore
from app.store.sqlite.segment_query import where_clause
from app.store.sqlite.store import SQLiteStore
from tests.fakes.async_mongo import FakeClient

Member = tuple[Profile, list[Interaction]]


@dataclass(frozen=True)
class Selected:
    """The ids each evaluation selected for one tree."""

    tree: Condition
    memory: frozenset[str]
    sqlite: frozenset[str]
    mongo: frozenset[str]
    detail: Any


async def _write(store: Any, population: Sequence[Member], at: datetime) -> None:
    async with store.batch():
        for profile, history in population:

            async def work(
                tx: StoreTransaction, profile: Profile = profile, history: list[Interaction] = history
            ) -> None:
                keys = [Identifier(r.type, r.value) for r in profile.identifiers]
                await tx.claim_identities(profile.id, keys, at)
                # Its newest interactions embedded, as ingestion leaves them: the embedded store keeps
                # those in the list only (app/store/sqlite/history_rows.py), the rest as rows.
                newest = sorted(history, key=lambda i: (i.timestamp, i.message_id), reverse=True)
                await tx.insert_profile(profile.model_copy(update={"recent": newest[:RECENT_INTERACTIONS_CAP]}))
                for item in history:
                    await tx.append_interaction(profile.id, item.model_dump(by_alias=True, exclude_none=True))

            await store.run_in_transaction(work)


async def select_everywhere(
    population: Sequence[Member], trees: Sequence[Condition], directory: Path, *, now: datetime
) -> list[Selected]:
    sqlite_store = SQLiteStore(directory / "cdp.sqlite3")
    client = FakeClient()
    mongo_store = MongoStore(client, "cdp_test")
    results = []
    try:
        await _write(sqlite_store, population, now)
        await _write(mongo_store, population, now)
        # The predicate sees each profile as each store reads it back: both must give one answer.
        read_back = [
            (await sqlite_store.get_profile(p.id), await mongo_store.get_profile(p.id), Activity.of(history))
            for p, history in population
        ]
        reader = sqlite3.connect(sqlite_store.path)
        try:
            for tree in trees:
                clause, params = where_clause(tree, now=now)
                in_sqlite = {row[0] for row in reader.execute(f"SELECT p.id FROM profiles p WHERE {clause}", params)}
                pipeline = membership_pipeline(tree, now=now)
                in_mongo = {doc["_id"] for doc in client.sync["cdp_test"].profiles.aggregate(pipeline)}
                evaluate = predicate(tree)
                in_memory = set()
                for from_sqlite, from_mongo, activity in read_back:
                    assert from_sqlite is not None and from_mongo is not None
                    answer = evaluate(from_sqlite, activity, set(from_sqlite.segments), now=now)
                    assert evaluate(from_mongo, activity, set(from_mongo.segments), now=now) == answer
                    if answer:
                        in_memory.add(from_sqlite.id)
                detail = {"sql": clause, "params": params, "pipeline": pipeline}
                results.append(Selected(tree, frozenset(in_memory), frozenset(in_sqlite), frozenset(in_mongo), detail))
        finally:
            reader.close()
    finally:
        await sqlite_store.close()
        await mongo_store.close()
    return results
