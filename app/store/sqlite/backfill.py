"""What a newer version gives a store written before it, when the store is opened: columns, and rows
kept beside the profiles (the list filters'), each in one write transaction; rows are marked done in
`meta` so no later opening (or another worker opening the store at the same time) makes them again."""

from __future__ import annotations

import sqlite3
from collections.abc import Callable
from typing import TypeVar

T = TypeVar("T")


def once(db: sqlite3.Connection, mark: str, fill: Callable[[sqlite3.Connection], int]) -> int:
    """Run `fill` (which returns how many profiles it gave rows) unless `mark` says it ran; 0 then."""

    def unless_marked(db: sqlite3.Connection) -> int:
        if db.execute("SELECT 1 FROM meta WHERE key = ?", (mark,)).fetchone() is not None:
            return 0
        filled = fill(db)
        db.execute("INSERT OR REPLACE INTO meta (key, value) VALUES (?, '1')", (mark,))
        return filled

    return in_one_transaction(db, unless_marked)


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
