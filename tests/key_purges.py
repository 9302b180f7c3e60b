"""Idempotency keys purged at once, as each store's own purge does CDP_IDEMPOTENCY_TTL_DAYS after
receipt (the embedded store remembers how far it purged: app/store/sqlite/key_purge.py)."""

from __future__ import annotations

import sqlite3
from collections.abc import Collection

from app.domain import clock
from app.services.ports import ProfileStore
from app.store.sqlite import key_purge
from app.store.sqlite.store import SQLiteStore


async def purge_keys(store: ProfileStore, message_ids: Collection[str] | None = None) -> None:
    """The keys of `message_ids` (all when None) expired now and purged."""
    if isinstance(store, SQLiteStore):
        ids = list(message_ids) if message_ids is not None else None
        which = "" if ids is None else f"WHERE message_id IN ({','.join('?' * len(ids))})"
        with sqlite3.connect(store.path) as db:
            expired = [clock.to_iso(clock.now()), *(ids or [])]
            db.execute(f"UPDATE processed_messages SET expires_at = ? {which}", expired)
            key_purge.purge(db, clock.now())
    else:
        selector = {} if message_ids is None else {"_id": {"$in": list(message_ids)}}
        await store._db.processed_messages.delete_many(selector)  # type: ignore[attr-defined]
