"""The purge of expired idempotency keys, and how far it has gone.

An event dated before its idempotency window may be a replay whose key was purged, and a run asks
its profile's history whether it holds it (ingestion_batch.held): a read of the history view, whose
recent lists SQLite parses from each profile's document, ~0.2 ms a profile and a query. The demo
data (a year of events, received at once) asked it of nearly every event: ~1.4 s of a first start's
CPU, half of it under the write lock. A key can only be missing once a purge has deleted it, and a
purge deletes keys that expired, so the store remembers the latest expiry it has purged: a key that
expires after it is still here, and a store that never purged one has every key it ever recorded.

A store made before this remembers nothing of its past purges, which may have gone up to any time
until now: it answers now, as every store answered before, whatever it purges later.
"""

from __future__ import annotations

import sqlite3
from datetime import datetime

from app.domain.clock import now, parse_time, to_iso
from app.store.sqlite.schema import WRITE_META

PURGED_THROUGH = "idempotencyKeysPurgedThrough"  # meta key: an expiry, or NEVER
NEVER = "never"


def mark_new(db: sqlite3.Connection) -> None:
    """A store just made: it has purged no key (the tables were created in this connection's open)."""
    db.execute("INSERT OR IGNORE INTO meta (key, value) VALUES (?, ?)", (PURGED_THROUGH, NEVER))


def purge(db: sqlite3.Connection, at: datetime) -> None:
    """The keys expired by `at` deleted, the latest expiry among them remembered (a store that
    cannot say goes on answering now: its earlier purges may have gone further)."""
    cutoff = to_iso(at)
    (latest,) = db.execute("SELECT max(expires_at) FROM processed_messages WHERE expires_at <= ?", (cutoff,)).fetchone()
    if latest is None:
        return
    db.execute("DELETE FROM processed_messages WHERE expires_at <= ?", (cutoff,))
    known = purged_through(db)
    if known is None or parse_time(latest) > known:
        db.execute(WRITE_META, (PURGED_THROUGH, latest))


def purged_through(db: sqlite3.Connection) -> datetime | None:
    """The latest expiry of a key this store purged; None if it never purged one; now if it cannot
    say (made before it remembered)."""
    row = db.execute("SELECT value FROM meta WHERE key = ?", (PURGED_THROUGH,)).fetchone()
    if row is None:
        return now()
    return None if row[0] == NEVER else parse_time(row[0])
