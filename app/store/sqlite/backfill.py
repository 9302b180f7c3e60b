"""Rows a newer version keeps beside the profiles (the list filters'), made once for a store
written before them: in one write transaction, marked done in `meta` so no later opening (or another
worker opening the store at the same time) makes them again."""

from __future__ import annotations

import sqlite3
from collections.abc import Callable


def once(db: sqlite3.Connection, mark: str, fill: Callable[[sqlite3.Connection], int]) -> int:
    """Run `fill` (which returns how many profiles it gave rows) unless `mark` says it ran; 0 then."""
    db.execute("BEGIN IMMEDIATE")
    try:
        if db.execute("SELECT 1 FROM meta WHERE key = ?", (mark,)).fetchone() is not None:
            db.execute("ROLLBACK")
            return 0
        filled = fill(db)
        db.execute("INSERT OR REPLACE INTO meta (key, value) VALUES (?, '1')", (mark,))
        db.execute("COMMIT")
    except BaseException:
        db.execute("ROLLBACK")
        raise
    return filled
