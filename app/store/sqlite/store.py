"""The embedded store: SQLite from the standard library, WAL mode, one file under `data/`.

Calls run on the event loop and are kept short (indexed lookups, one transaction per event or per
batch). One connection writes, under an asyncio lock; a second one reads, and in WAL mode it sees
only committed data, so a batch in progress is never visible half-done. `synchronous=FULL` makes a
commit durable before it returns: an event reported ACCEPTED survives a crash.
"""

from __future__ import annotations

import asyncio
import logging
import sqlite3
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from contextlib import asynccontextmanager
from contextvars import ContextVar
from datetime import datetime
from pathlib import Path
from typing import Any, TypeVar

from app.domain.access import ApiKey
from app.domain.clock import now, to_iso
from app.domain.errors import StoreUnavailable
from app.domain.identifiers import Identifier
from app.domain.matching.index import match_view
from app.domain.merge import MergeRecord, MergeRefusal
from app.domain.privacy import ConsentDecision, Erasure
from app.domain.products import CoPurchase, Product
from app.domain.profile import Interaction, Profile
from app.domain.profile_change import CappedPush, ProfileChange, apply_change
from app.domain.profile_query import InteractionFilter, InteractionPosition, ProfileFilter
from app.domain.segments.conditions import Condition
from app.domain.segments.segment import Segment, SegmentEvent
from app.services.ports import IdentityTaken, MessageAlreadyProcessed, StoreTransaction, VersionConflict
from app.store.documents import dumps, jsonable, loads
from app.store.sqlite.profile_filter import where_clause
from app.store.sqlite.schema import STATEMENTS
from app.store.sqlite.segment_query import where_clause as segment_where

T = TypeVar("T")
log = logging.getLogger("cdp.store")
_PURGE_EVERY_SECONDS = 3600.0
_IDS_PER_QUERY = 500  # below SQLite's bound on host parameters
_GROUPS_PER_QUERY = 1000


class SQLiteTransaction(StoreTransaction):
    def __init__(self, connection: sqlite3.Connection) -> None:
        self._db = connection

    async def owners_of(self, keys: Sequence[str]) -> dict[str, str]:
        if not keys:
            return {}
        marks = ",".join("?" * len(keys))
        rows = self._db.execute(f"SELECT key, profile_id FROM identities WHERE key IN ({marks})", list(keys))
        return dict(rows.fetchall())

    async def claim_identities(self, profile_id: str, identifiers: Sequence[Identifier], at: datetime) -> None:
        for identifier in identifiers:
            try:
                self._db.execute(
                    "INSERT INTO identities (key, profile_id, type, created_at) VALUES (?, ?, ?, ?)",
                    (identifier.key, profile_id, identifier.type, to_iso(at)),
                )
            except sqlite3.IntegrityError:
                row = self._db.execute("SELECT profile_id FROM identities WHERE key = ?", (identifier.key,)).fetchone()
                raise IdentityTaken(identifier.key, row[0] if row else None) from None

    async def get_profile(self, profile_id: str) -> Profile | None:
        row = self._db.execute("SELECT doc FROM profiles WHERE id = ?", (profile_id,)).fetchone()
        return Profile.from_document(loads(row[0])) if row else None

    async def insert_profile(self, profile: Profile) -> None:
        document = profile.to_document()
        self._db.execute(
            "INSERT INTO profiles (id, doc, version, merged_into) VALUES (?, ?, ?, ?)",
            (profile.id, dumps(document), profile.version, profile.merged_into),
        )
        _index_keys(self._db, profile.id, profile.blocking_keys)
        _mirror_segments(self._db, profile.id, profile.segments)

    async def update_profile(
        self, profile_id: str, change: ProfileChange, *, expected_version: int | None = None
    ) -> None:
        row = self._db.execute("SELECT doc, version FROM profiles WHERE id = ?", (profile_id,)).fetchone()
        if row is None or (expected_version is not None and row[1] != expected_version):
            raise VersionConflict(profile_id)
        document = apply_change(loads(row[0]), jsonable_change(change))
        self._db.execute(
            "UPDATE profiles SET doc = ?, version = ?, merged_into = ? WHERE id = ?",
            (dumps(document), document["version"], document.get("mergedInto"), profile_id),
        )
        if "blockingKeys" in change.set:
            _index_keys(self._db, profile_id, document["blockingKeys"])
        if "segments" in change.set:
            _mirror_segments(self._db, profile_id, document["segments"])

    async def record_message(self, message_id: str, profile_id: str, expires_at: datetime) -> None:
        try:
            self._db.execute(
                "INSERT INTO processed_messages (message_id, profile_id, expires_at) VALUES (?, ?, ?)",
                (message_id, profile_id, to_iso(expires_at)),
            )
        except sqlite3.IntegrityError:
            raise MessageAlreadyProcessed(message_id) from None

    async def message_seen(self, message_id: str) -> bool:
        row = self._db.execute(
            "SELECT 1 FROM processed_messages WHERE message_id = ? AND expires_at > ?", (message_id, to_iso(now()))
        ).fetchone()
        return row is not None

    async def append_interaction(self, profile_id: str, interaction: dict[str, Any]) -> None:
        self._db.execute(
            "INSERT OR IGNORE INTO interactions (profile_id, ts, message_id, type, channel, doc) "
            "VALUES (?, ?, ?, ?, ?, ?)",
            (
                profile_id,
                to_iso(interaction["timestamp"]),
                interaction["messageId"],
                interaction["type"],
                interaction["channel"],
                dumps(interaction),
            ),
        )

    # -- merges ------------------------------------------------------------------------------
    async def replace_profile(self, profile: Profile, *, expected_version: int) -> None:
        cursor = self._db.execute(
            "UPDATE profiles SET doc = ?, version = ?, merged_into = ? WHERE id = ? AND version = ?",
            (dumps(profile.to_document()), profile.version, profile.merged_into, profile.id, expected_version),
        )
        if cursor.rowcount != 1:
            raise VersionConflict(profile.id)
        _index_keys(self._db, profile.id, profile.blocking_keys)
        _mirror_segments(self._db, profile.id, profile.segments)

    async def history(self, profile_id: str) -> list[Interaction]:
        rows = self._db.execute("SELECT doc FROM interactions WHERE profile_id = ?", (profile_id,)).fetchall()
        return [Interaction.model_validate(loads(row[0])) for row in rows]

    async def reassign_history(self, from_ids: Sequence[str], to_id: str) -> None:
        marks = ",".join("?" * len(from_ids))
        self._db.execute(f"UPDATE interactions SET profile_id = ? WHERE profile_id IN ({marks})", [to_id, *from_ids])

    async def assign_history(self, owner_id: str, moves: dict[str, str]) -> None:
        self._db.executemany(
            "UPDATE interactions SET profile_id = ? WHERE profile_id = ? AND message_id = ?",
            [(target, owner_id, message_id) for message_id, target in moves.items()],
        )

    async def identities_of(self, profile_id: str) -> dict[str, datetime]:
        rows = self._db.execute("SELECT key, created_at FROM identities WHERE profile_id = ?", (profile_id,))
        return {key: datetime.fromisoformat(created.replace("Z", "+00:00")) for key, created in rows.fetchall()}

    async def reassign_identities(self, from_ids: Sequence[str], to_id: str) -> dict[str, str]:
        marks = ",".join("?" * len(from_ids))
        moved = dict(
            self._db.execute(f"SELECT key, profile_id FROM identities WHERE profile_id IN ({marks})", list(from_ids))
        )
        self._db.execute(f"UPDATE identities SET profile_id = ? WHERE profile_id IN ({marks})", [to_id, *from_ids])
        return moved

    async def set_identity_owner(self, keys: Sequence[str], owner_id: str) -> None:
        self._db.executemany("UPDATE identities SET profile_id = ? WHERE key = ?", [(owner_id, k) for k in keys])

    async def insert_merge(self, record: MergeRecord) -> None:
        self._db.execute("INSERT INTO merges (id, doc) VALUES (?, ?)", (record.id, dumps(record.to_document())))
        self._db.executemany(
            "INSERT OR IGNORE INTO merge_members (profile_id, merge_id) VALUES (?, ?)",
            [(pid, record.id) for pid in [record.survivor_id, *record.merged_ids]],
        )

    async def get_merge(self, merge_id: str) -> MergeRecord | None:
        row = self._db.execute("SELECT doc FROM merges WHERE id = ?", (merge_id,)).fetchone()
        return MergeRecord.from_document(loads(row[0])) if row else None

    async def replace_merge(self, record: MergeRecord) -> None:
        self._db.execute("UPDATE merges SET doc = ? WHERE id = ?", (dumps(record.to_document()), record.id))

    async def merges_of(self, profile_id: str) -> list[MergeRecord]:
        return merges_of(self._db, profile_id)

    async def record_refusal(self, refusal: MergeRefusal) -> None:
        self._db.execute(
            "INSERT INTO merge_refusals (id, doc) VALUES (?, ?)", (refusal.id, dumps(refusal.to_document()))
        )
        self._db.executemany(
            "INSERT OR IGNORE INTO merge_refusal_members (profile_id, refusal_id) VALUES (?, ?)",
            [(pid, refusal.id) for pid in refusal.profile_ids],
        )

    # -- privacy -------------------------------------------------------------------------------
    async def append_consent(self, decision: ConsentDecision) -> None:
        self._db.execute(
            "INSERT INTO consent_log (profile_id, at, doc) VALUES (?, ?, ?)",
            (decision.profile_id, to_iso(decision.at), dumps(decision.model_dump(by_alias=True, exclude_none=True))),
        )

    async def tombstones_of(self, profile_id: str) -> list[str]:
        rows = self._db.execute("SELECT id FROM profiles WHERE merged_into = ? ORDER BY id", (profile_id,))
        return [row[0] for row in rows.fetchall()]

    async def erase(self, profile_ids: Sequence[str]) -> tuple[int, int]:
        ids = list(profile_ids)
        marks = ",".join("?" * len(ids))
        db = self._db
        merge_ids = [r[0] for r in db.execute(f"SELECT merge_id FROM merge_members WHERE profile_id IN ({marks})", ids)]
        refusal_ids = [
            r[0] for r in db.execute(f"SELECT refusal_id FROM merge_refusal_members WHERE profile_id IN ({marks})", ids)
        ]
        for table, key, values in (
            ("merges", "id", merge_ids),
            ("merge_members", "merge_id", merge_ids),
            ("merge_refusals", "id", refusal_ids),
            ("merge_refusal_members", "refusal_id", refusal_ids),
        ):
            if values:
                db.execute(f"DELETE FROM {table} WHERE {key} IN ({','.join('?' * len(values))})", values)
        identifiers = db.execute(f"DELETE FROM identities WHERE profile_id IN ({marks})", ids).rowcount
        interactions = db.execute(f"DELETE FROM interactions WHERE profile_id IN ({marks})", ids).rowcount
        for table in ("blocking_keys", "processed_messages", "consent_log", "segment_members", "segment_events",
                      "segment_checks"):  # fmt: skip
            db.execute(f"DELETE FROM {table} WHERE profile_id IN ({marks})", ids)
        db.execute(f"DELETE FROM profiles WHERE id IN ({marks})", ids)
        return identifiers, interactions

    async def suppress(self, hashes: Sequence[str], at: datetime) -> None:
        self._db.executemany(
            "INSERT OR IGNORE INTO suppressions (hash, at) VALUES (?, ?)", [(h, to_iso(at)) for h in hashes]
        )

    async def suppressed(self, hashes: Sequence[str]) -> set[str]:
        if not hashes:
            return set()
        marks = ",".join("?" * len(hashes))
        return {r[0] for r in self._db.execute(f"SELECT hash FROM suppressions WHERE hash IN ({marks})", list(hashes))}

    async def insert_segment_event(self, event: SegmentEvent) -> None:
        self._db.execute(
            "INSERT INTO segment_events (id, segment_id, profile_id, at, doc) VALUES (?, ?, ?, ?, ?)",
            (event.id, event.segment_id, event.profile_id, to_iso(event.at), dumps(event.model_dump(by_alias=True))),
        )

    async def schedule_check(self, profile_id: str, segment_id: str, due_at: datetime | None) -> None:
        if due_at is None:
            self._db.execute(
                "DELETE FROM segment_checks WHERE profile_id = ? AND segment_id = ?", (profile_id, segment_id)
            )
        else:
            self._db.execute(
                "INSERT INTO segment_checks (profile_id, segment_id, due_at) VALUES (?, ?, ?) "
                "ON CONFLICT(profile_id, segment_id) DO UPDATE SET due_at = excluded.due_at",
                (profile_id, segment_id, to_iso(due_at)),
            )

    async def record_erasure(self, erasure: Erasure) -> None:
        self._db.execute(
            "INSERT INTO erasures (id, at, doc) VALUES (?, ?, ?)",
            (erasure.id, to_iso(erasure.at), dumps(erasure.model_dump(by_alias=True))),
        )


def _mirror_segments(db: sqlite3.Connection, profile_id: str, segments: Sequence[str]) -> None:
    db.execute("DELETE FROM segment_members WHERE profile_id = ?", (profile_id,))
    db.executemany(
        "INSERT INTO segment_members (segment_id, profile_id) VALUES (?, ?)", [(s, profile_id) for s in segments]
    )


def _index_keys(db: sqlite3.Connection, profile_id: str, keys: Sequence[str]) -> None:
    """Keep the `blocking_keys` table equal to the profile's `blockingKeys`, in the same transaction."""
    db.execute("DELETE FROM blocking_keys WHERE profile_id = ?", (profile_id,))
    db.executemany("INSERT INTO blocking_keys (key, profile_id) VALUES (?, ?)", [(key, profile_id) for key in keys])


def merges_of(db: sqlite3.Connection, profile_id: str) -> list[MergeRecord]:
    rows = db.execute(
        "SELECT m.doc FROM merge_members mm JOIN merges m ON m.id = mm.merge_id WHERE mm.profile_id = ?",
        (profile_id,),
    ).fetchall()
    return sorted((MergeRecord.from_document(loads(row[0])) for row in rows), key=lambda r: (r.at, r.id))


def refusals_of(db: sqlite3.Connection, profile_id: str) -> list[MergeRefusal]:
    rows = db.execute(
        "SELECT r.doc FROM merge_refusal_members rm JOIN merge_refusals r ON r.id = rm.refusal_id "
        "WHERE rm.profile_id = ?",
        (profile_id,),
    ).fetchall()
    return sorted((MergeRefusal.model_validate(loads(row[0])) for row in rows), key=lambda r: (r.at, r.id))


def jsonable_change(change: ProfileChange) -> ProfileChange:
    """The change with its values as they read back from JSON, to apply to a document read from JSON."""
    return ProfileChange(
        set=jsonable(change.set),
        inc=dict(change.inc),
        max=jsonable(change.max),
        min=jsonable(change.min),
        push={path: CappedPush(jsonable(p.items), p.sort, p.cap) for path, p in change.push.items()},
        append=jsonable(change.append),
    )


class SQLiteStore:
    backend = "sqlite"

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        if str(path) != ":memory:":
            self.path.parent.mkdir(parents=True, exist_ok=True)
        self._writer = self._connect()
        self._writer.execute("PRAGMA journal_mode=WAL")
        for statement in STATEMENTS:
            self._writer.execute(statement)
        self._reader = self._connect()
        self._reader.execute("PRAGMA query_only=ON")
        self._write_lock = asyncio.Lock()
        self._in_batch: ContextVar[bool] = ContextVar(f"sqlite-batch-{id(self)}", default=False)
        self._last_purge = 0.0

    def _connect(self) -> sqlite3.Connection:
        connection = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False)
        connection.execute("PRAGMA busy_timeout=5000")
        connection.execute("PRAGMA synchronous=FULL")
        # Deleted content is overwritten with zeros, not left in free pages: an erasure must leave the
        # person readable nowhere in the file (see wipe_deleted for the write-ahead log).
        connection.execute("PRAGMA secure_delete=ON")
        return connection

    # -- lifecycle ---------------------------------------------------------------------------
    async def ping(self) -> None:
        try:
            self._reader.execute("SELECT count(*) FROM meta").fetchone()
        except sqlite3.Error as exc:
            raise StoreUnavailable(f"the embedded store cannot be read ({type(exc).__name__}: {exc})") from exc

    async def close(self) -> None:
        self._reader.close()
        self._writer.close()

    def trace(self, callback: Callable[[str], None] | None) -> None:
        """Report every SQL statement run on the read connection (tests count round trips with it)."""
        self._reader.set_trace_callback(callback)

    # -- writes ------------------------------------------------------------------------------
    @asynccontextmanager
    async def batch(self) -> AsyncIterator[None]:
        if self._in_batch.get():
            yield
            return
        async with self._write_lock:
            self._purge_expired_messages()
            self._writer.execute("BEGIN IMMEDIATE")
            token = self._in_batch.set(True)
            try:
                yield
            except BaseException:
                self._writer.execute("ROLLBACK")
                raise
            else:
                self._writer.execute("COMMIT")
            finally:
                self._in_batch.reset(token)

    async def run_in_transaction(self, work: Callable[[StoreTransaction], Awaitable[T]]) -> T:
        if self._in_batch.get():
            # Inside a batch each unit of work is a savepoint: it rolls back alone, commits with the batch.
            self._writer.execute("SAVEPOINT unit")
            try:
                result = await work(SQLiteTransaction(self._writer))
            except BaseException:
                self._writer.execute("ROLLBACK TO unit")
                self._writer.execute("RELEASE unit")
                raise
            self._writer.execute("RELEASE unit")
            return result
        async with self.batch():
            return await self.run_in_transaction(work)

    def _purge_expired_messages(self) -> None:
        if time.monotonic() - self._last_purge < _PURGE_EVERY_SECONDS:
            return
        self._last_purge = time.monotonic()
        self._writer.execute("DELETE FROM processed_messages WHERE expires_at <= ?", (to_iso(now()),))

    async def upsert_products(self, products: Sequence[dict[str, Any]]) -> int:
        async with self.batch():
            self._writer.executemany(
                "INSERT INTO products (id, doc) VALUES (?, ?) ON CONFLICT(id) DO UPDATE SET doc = excluded.doc",
                [(product["_id"], dumps(product)) for product in products],
            )
        return len(products)

    # -- reads -------------------------------------------------------------------------------
    async def get_profile(self, profile_id: str) -> Profile | None:
        row = self._reader.execute("SELECT doc FROM profiles WHERE id = ?", (profile_id,)).fetchone()
        return Profile.from_document(loads(row[0])) if row else None

    async def find_profile_by_identity(self, key: str) -> Profile | None:
        row = self._reader.execute(
            "SELECT p.doc FROM identities i JOIN profiles p ON p.id = i.profile_id WHERE i.key = ?", (key,)
        ).fetchone()
        return Profile.from_document(loads(row[0])) if row else None

    async def list_profiles(self, query: ProfileFilter, *, after: str | None, limit: int) -> list[Profile]:
        clause, params = where_clause(query)
        if after is not None:
            clause += " AND p.id > ?"
            params.append(after)
        rows = self._reader.execute(
            f"SELECT p.doc FROM profiles p WHERE {clause} ORDER BY p.id LIMIT ?", [*params, limit]
        ).fetchall()
        return [Profile.from_document(loads(row[0])) for row in rows]

    async def count_profiles(self) -> int:
        return int(self._reader.execute("SELECT count(*) FROM profiles WHERE merged_into IS NULL").fetchone()[0])

    async def list_interactions(
        self,
        profile_id: str,
        *,
        before: InteractionPosition | None,
        where: InteractionFilter,
        limit: int,
    ) -> list[Interaction]:
        sql = ["SELECT doc FROM interactions WHERE profile_id = ?"]
        params: list[Any] = [profile_id]
        if before is not None:
            sql.append("AND (ts, message_id) < (?, ?)")
            params += [to_iso(before.timestamp), before.message_id]
        for column, values in (("type", where.types), ("channel", where.channels)):
            if values:
                sql.append(f"AND {column} IN ({','.join('?' * len(values))})")
                params += sorted(values)
        sql.append("ORDER BY ts DESC, message_id DESC LIMIT ?")
        params.append(limit)
        rows = self._reader.execute(" ".join(sql), params).fetchall()
        return [Interaction.model_validate(loads(row[0])) for row in rows]

    async def count_products(self) -> int:
        return int(self._reader.execute("SELECT count(*) FROM products").fetchone()[0])

    async def get_products(self, product_ids: Sequence[str]) -> list[Product]:
        ids = list(dict.fromkeys(product_ids))
        found: list[Product] = []
        for start in range(0, len(ids), _IDS_PER_QUERY):
            chunk = ids[start : start + _IDS_PER_QUERY]
            rows = self._reader.execute(f"SELECT doc FROM products WHERE id IN ({','.join('?' * len(chunk))})", chunk)
            found += [Product.model_validate(loads(row[0])) for row in rows]
        return found

    async def best_sellers(self, category: str | None, *, limit: int) -> list[Product]:
        clause, params = "json_extract(doc, '$.stock') > 0", []
        if category is not None:
            clause += " AND json_extract(doc, '$.category') = ?"
            params.append(category)
        rows = self._reader.execute(
            f"SELECT doc FROM products WHERE {clause} "
            "ORDER BY coalesce(json_extract(doc, '$.sales'), 0) DESC, id LIMIT ?",
            [*params, limit],
        )
        return [Product.model_validate(loads(row[0])) for row in rows]

    async def set_product_signals(self, signals: dict[str, tuple[int, list[CoPurchase]]]) -> None:
        async with self.batch():
            self._writer.execute("UPDATE products SET doc = json_set(doc, '$.sales', 0, '$.alsoBought', json('[]'))")
            self._writer.executemany(
                "UPDATE products SET doc = json_set(doc, '$.sales', ?, '$.alsoBought', json(?)) WHERE id = ?",
                [
                    (sales, dumps([link.model_dump(by_alias=True) for link in links]), product_id)
                    for product_id, (sales, links) in signals.items()
                ],
            )

    # -- fuzzy matching ----------------------------------------------------------------------
    async def profiles_sharing_keys(self, keys: Sequence[str], *, max_block: int, limit: int) -> list[Profile]:
        if not keys:
            return []
        marks = ",".join("?" * len(keys))
        rows = self._reader.execute(
            f"WITH usable AS (SELECT key FROM blocking_keys WHERE key IN ({marks}) GROUP BY key HAVING count(*) <= ?) "
            "SELECT p.doc FROM profiles p WHERE p.merged_into IS NULL AND p.id IN "
            "(SELECT profile_id FROM blocking_keys WHERE key IN (SELECT key FROM usable)) LIMIT ?",
            [*keys, max_block, limit],
        ).fetchall()
        return [match_view(loads(row[0])) for row in rows]

    async def match_views(self, profile_ids: Sequence[str]) -> list[Profile]:
        found: list[Profile] = []
        for start in range(0, len(profile_ids), _IDS_PER_QUERY):
            chunk = profile_ids[start : start + _IDS_PER_QUERY]
            rows = self._reader.execute(
                f"SELECT doc FROM profiles WHERE merged_into IS NULL AND id IN ({','.join('?' * len(chunk))})",
                chunk,
            ).fetchall()
            found += [match_view(loads(row[0])) for row in rows]
        return found

    async def blocking_groups(self) -> AsyncIterator[tuple[str, list[str]]]:
        # Read in pages by key so that no call holds the event loop (or a read snapshot) for long.
        after = ""
        while True:
            rows = self._reader.execute(
                "SELECT key, json_group_array(profile_id) FROM blocking_keys WHERE key > ? "
                "GROUP BY key HAVING count(*) > 1 ORDER BY key LIMIT ?",
                (after, _GROUPS_PER_QUERY),
            ).fetchall()
            for key, members in rows:
                yield key, sorted(loads(members))
            if len(rows) < _GROUPS_PER_QUERY:
                return
            after = rows[-1][0]
            await asyncio.sleep(0)

    async def insert_api_key(self, key: ApiKey) -> None:
        async with self.batch():
            self._writer.execute("INSERT INTO api_keys (id, doc) VALUES (?, ?)", (key.id, dumps(key.to_document())))

    async def get_api_key(self, key_id: str) -> ApiKey | None:
        row = self._reader.execute("SELECT doc FROM api_keys WHERE id = ?", (key_id,)).fetchone()
        return ApiKey.model_validate(loads(row[0])) if row else None

    async def list_api_keys(self) -> list[ApiKey]:
        rows = self._reader.execute("SELECT doc FROM api_keys ORDER BY id").fetchall()
        return [ApiKey.model_validate(loads(row[0])) for row in rows]

    async def revoke_api_key(self, key_id: str, at: datetime) -> bool:
        async with self.batch():
            row = self._writer.execute("SELECT doc FROM api_keys WHERE id = ?", (key_id,)).fetchone()
            if row is None or ApiKey.model_validate(loads(row[0])).revoked_at is not None:
                return False
            document = loads(row[0]) | {"revokedAt": at}
            self._writer.execute("UPDATE api_keys SET doc = ? WHERE id = ?", (dumps(document), key_id))
            return True

    async def consent_history(self, profile_ids: Sequence[str]) -> list[ConsentDecision]:
        if not profile_ids:
            return []
        rows = self._reader.execute(
            f"SELECT doc FROM consent_log WHERE profile_id IN ({','.join('?' * len(profile_ids))}) "
            "ORDER BY at DESC, rowid DESC",
            list(profile_ids),
        ).fetchall()
        return [ConsentDecision.model_validate(loads(row[0])) for row in rows]

    async def save_segment(self, segment: Segment) -> None:
        async with self.batch():
            self._writer.execute(
                "INSERT INTO segments (id, doc) VALUES (?, ?) ON CONFLICT(id) DO UPDATE SET doc = excluded.doc",
                (segment.id, dumps(segment.model_dump(by_alias=True))),
            )

    async def get_segment(self, segment_id: str) -> Segment | None:
        row = self._reader.execute("SELECT doc FROM segments WHERE id = ?", (segment_id,)).fetchone()
        return Segment.model_validate(loads(row[0])) if row else None

    async def list_segments(self) -> list[Segment]:
        return [
            Segment.model_validate(loads(r[0])) for r in self._reader.execute("SELECT doc FROM segments ORDER BY id")
        ]

    async def delete_segment(self, segment_id: str) -> None:
        async with self.batch():
            self._writer.execute("DELETE FROM segments WHERE id = ?", (segment_id,))
            self._writer.execute("DELETE FROM segment_checks WHERE segment_id = ?", (segment_id,))

    async def matching_profile_ids(self, tree: Condition, *, now: datetime) -> list[str]:
        clause, params = segment_where(tree, now=now)
        return [r[0] for r in self._reader.execute(f"SELECT p.id FROM profiles p WHERE {clause} ORDER BY p.id", params)]

    async def member_ids(self, segment_id: str) -> list[str]:
        rows = self._reader.execute(
            "SELECT sm.profile_id FROM segment_members sm JOIN profiles p ON p.id = sm.profile_id "
            "WHERE sm.segment_id = ? AND p.merged_into IS NULL ORDER BY sm.profile_id",
            (segment_id,),
        )
        return [r[0] for r in rows]

    async def count_members(self, segment_id: str) -> int:
        row = self._reader.execute(
            "SELECT count(*) FROM segment_members sm JOIN profiles p ON p.id = sm.profile_id "
            "WHERE sm.segment_id = ? AND p.merged_into IS NULL",
            (segment_id,),
        ).fetchone()
        return int(row[0])

    async def segment_events(
        self, *, segment_id: str | None = None, profile_id: str | None = None, limit: int
    ) -> list[SegmentEvent]:
        clauses, params = ["1 = 1"], []
        for column, value in (("segment_id", segment_id), ("profile_id", profile_id)):
            if value is not None:
                clauses.append(f"{column} = ?")
                params.append(value)
        rows = self._reader.execute(
            f"SELECT doc FROM segment_events WHERE {' AND '.join(clauses)} ORDER BY at DESC, rowid DESC LIMIT ?",
            [*params, limit],
        )
        return [SegmentEvent.model_validate(loads(r[0])) for r in rows]

    async def due_checks(self, now: datetime, *, limit: int) -> list[tuple[str, str]]:
        rows = self._reader.execute(
            "SELECT profile_id, segment_id FROM segment_checks WHERE due_at <= ? ORDER BY due_at LIMIT ?",
            (to_iso(now), limit),
        )
        return [(r[0], r[1]) for r in rows]

    async def watch_segment_events(self, resume_token: str | None) -> AsyncIterator[tuple[str, SegmentEvent]]:
        raise NotImplementedError("the embedded store serves one process: changes are delivered in-process")
        yield  # pragma: no cover - makes this an async generator

    async def next_check_at(self) -> datetime | None:
        row = self._reader.execute("SELECT min(due_at) FROM segment_checks").fetchone()
        return datetime.fromisoformat(row[0]) if row and row[0] else None

    async def erasures(self, *, limit: int) -> list[Erasure]:
        rows = self._reader.execute("SELECT doc FROM erasures ORDER BY at DESC LIMIT ?", (limit,)).fetchall()
        return [Erasure.model_validate(loads(row[0])) for row in rows]

    async def wipe_deleted(self) -> None:
        # The write-ahead log still holds the pages as they were before the delete until a checkpoint
        # copies the new ones into the database file; TRUNCATE then empties the log file.
        async with self._write_lock:
            busy, _, _ = self._writer.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchone()
        if busy:  # a reader in another process held the log past busy_timeout: the next checkpoint wipes it
            log.warning("write-ahead log not emptied after an erasure: another connection was reading")

    async def read_meta(self, key: str) -> str | None:
        row = self._reader.execute("SELECT value FROM meta WHERE key = ?", (key,)).fetchone()
        return str(row[0]) if row else None

    async def write_meta(self, key: str, value: str) -> None:
        async with self.batch():
            self._writer.execute(
                "INSERT INTO meta (key, value) VALUES (?, ?) ON CONFLICT(key) DO UPDATE SET value = excluded.value",
                (key, value),
            )

    async def merges_of(self, profile_id: str) -> list[MergeRecord]:
        return merges_of(self._reader, profile_id)

    async def refusals_of(self, profile_id: str) -> list[MergeRefusal]:
        return refusals_of(self._reader, profile_id)
