"""What a newer version gives a store written before it, when the store is opened: columns, and rows
kept beside the profiles (the list filters', matching's), each in one write transaction; rows are
marked done in `meta` so no later opening (or another worker opening the store at the same time)
makes them again."""

from __future__ import annotations

import sqlite3
from collections.abc import Callable
from typing import Any, TypeVar

from app.store.documents import loads

T = TypeVar("T")
FILL_CHUNK = 2_000  # live profiles' documents decoded at a time (`live_documents_once`)


def once(db: sqlite3.Connection, mark: str, fill: Callable[[sqlite3.Connection], int]) -> int:
    """Run `fill` (which returns how many profiles it gave rows) unless `mark` says it ran; 0 then."""

    def unless_marked(db: sqlite3.Connection) -> int:
        if db.execute("SELECT 1 FROM meta WHERE key = ?", (mark,)).fetchone() is not None:
            return 0
        filled = fill(db)
        db.execute("INSERT OR REPLACE INTO meta (key, value) VALUES (?, '1')", (mark,))
        return filled

    return in_one_transaction(db, unless_marked)


def live_documents_once(
    db: sqlite3.Connection, mark: str, keep: Callable[[sqlite3.Connection, list[dict[str, Any]]], None]
) -> int:
    """Rows kept beside the profiles, built for those a store held before it had them: `keep` with
    every live profile's document, FILL_CHUNK at a time, unless `mark` says it ran. Returns how many."""

    def fill(db: sqlite3.Connection) -> int:
        filled = 0
        rows = db.execute("SELECT doc FROM profiles WHERE merged_into IS NULL")
        while chunk := rows.fetchmany(FILL_CHUNK):
            keep(db, [loads(doc) for (doc,) in chunk])
            filled += len(chunk)
        return filled

    return once(db, mark, fill)


def in_one_transaction(db: sqlite3.Connection, change: Callable[[sqlite3.Connection], T]) -> T:
    """`change` in one write transaction, committed, or rolled back whole: what an older store is given
    when it is opened, by the first of the workers opening it at once (the others then find it done)."""
    db.execute("BEGIN IMMEDIATE")
    try:
        done = change(db)
        db.execute("COMMIT")
    except BaseException:
        db.execute("ROLLBACK")
        raise
    return done
