"""The whole store's segment history (segmentHistory without a filter) on the embedded store: newest
first, ties in the order they were written, read from an index from its newest end, not by sorting
every event the store has for each request (a store of 100,000 customers keeps millions)."""

from __future__ import annotations

import sqlite3
from datetime import timedelta

from app.domain.segments.segment import MembershipChange, SegmentEvent
from app.store.sqlite.store import SQLiteStore
from tests.builders import BASE_TIME


def _event(n: int, minutes: int) -> SegmentEvent:
    return SegmentEvent(
        _id=f"e{n}",
        segment_id="gold" if n % 2 else "vip",
        profile_id=f"p{n % 3}",
        change=MembershipChange.ENTERED,
        at=BASE_TIME + timedelta(minutes=minutes),
        cause="test",
    )


async def test_the_whole_history_is_read_newest_first_from_an_index(sqlite_store: SQLiteStore) -> None:
    minutes = [5, 1, 9, 5, 3, 9, 0]  # two ties, written in this order
    events = [_event(n, m) for n, m in enumerate(minutes)]
    await sqlite_store.run_in_transaction(lambda tx: tx.insert_segment_events(events))
    statements: list[str] = []
    sqlite_store.trace(statements.append)
    try:
        found = await sqlite_store.segment_events(limit=4)
    finally:
        sqlite_store.trace(None)

    assert [e.id for e in found] == ["e5", "e2", "e3", "e0"]  # 9, 9 (the later written first), 5, 5
    (statement,) = [s for s in statements if "FROM segment_events" in s]
    with sqlite3.connect(sqlite_store.path) as db:
        plan = " | ".join(row[3] for row in db.execute(f"EXPLAIN QUERY PLAN {statement}"))
    assert "USING INDEX" in plan and "TEMP B-TREE" not in plan, plan
