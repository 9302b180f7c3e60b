"""The embedded store's unit of work: the StoreTransaction port on SQLite's write connection.

Its methods run on the writer thread (app/store/sqlite/threads.py), inside the transaction the store
opened there: a savepoint within a batch, so a unit that fails rolls back alone.
"""

from __future__ import annotations

import sqlite3
import uuid
from collections.abc import Callable, Collection, Iterable, Mapping, Sequence
from dataclasses import replace
from datetime import datetime
from types import MappingProxyType
from typing import Any

from app.domain.clock import now, parse_time, to_iso
from app.domain.events import REPLAY_TIME_SLACK
from app.domain.history_rebuild import joined_spans
from app.domain.identifiers import Identifier
from app.domain.matching.index import touches_match_fields
from app.domain.merge import MergeRecord, MergeRefusal
from app.domain.privacy import ConsentDecision, Erasure
from app.domain.products import Product
from app.domain.profile import Interaction, Profile
from app.domain.profile_change import ProfileChange, apply_change
from app.domain.segments.segment import Segment, SegmentEvent
from app.domain.segments.upkeep import EVERY_SEGMENT, awaits_upkeep, upkeep_due
from app.services.ports import (
    IdentityTaken,
    MessageAlreadyProcessed,
    ProfileWrite,
    Snapshot,
    StoreTransaction,
    VersionConflict,
)
from app.store.documents import dumps, jsonable, loads
from app.store.sqlite import history_rows, key_purge, match_rows, profile_facets, profile_rows
from app.store.sqlite.profile_revisions import NEW as NEW_REVISION
from app.store.sqlite.schema import WRITE_META
from app.store.sqlite.written_documents import WrittenDocuments

# Every write of a profile's document draws a new revision (profile_revisions.py).
# A row's `pad` makes it fill its pages (profile_rows.py).
_INSERT_PROFILE = (
    "INSERT INTO profiles (id, revision, doc, version, merged_into, pad) "
    f"VALUES (?, {NEW_REVISION}, ?, ?, ?, zeroblob(?))"
)
_UPDATE_PROFILE = (
    f"UPDATE profiles SET revision = {NEW_REVISION}, doc = ?, version = ?, merged_into = ?, pad = zeroblob(?) "
    "WHERE id = ?"
)
_UPDATE_PROFILE_AT_VERSION = f"{_UPDATE_PROFILE} AND version = ?"
# The pad gives back what the document gains (or takes what it loses): the row keeps its length.
_SET_SEGMENTS = f"""UPDATE profiles SET revision = {NEW_REVISION}, doc = changed.doc,
    pad = zeroblob(max(0, length(CAST(profiles.doc AS BLOB)) + coalesce(length(profiles.pad), 0)
                          - length(CAST(changed.doc AS BLOB))))
    FROM (SELECT json_set(doc, '$.segments', json(?1)) AS doc FROM profiles WHERE id = ?2) AS changed
    WHERE profiles.id = ?2"""

# The earliest due time stands: a later write must not put off the check an earlier one left.
_SCHEDULE_UPKEEP = (
    "INSERT INTO segment_checks (profile_id, segment_id, due_at) VALUES (?, ?, ?) "
    "ON CONFLICT(profile_id, segment_id) DO UPDATE SET due_at = min(due_at, excluded.due_at), writes = writes + 1"
)

WIPE_OWED = "wipe_owed"  # meta key: an erasure committed whose data the files may still hold

IDS_PER_QUERY = 500  # below SQLite's bound on host parameters
ABSENT = "absent"  # the revision `revisions` gives an id no profile has (a revision is a number or NULL)


class SQLiteTransaction(StoreTransaction):
    def __init__(
        self,
        connection: sqlite3.Connection,
        *,
        erased: Callable[[list[str]], None] | None = None,
        written: WrittenDocuments | None = None,
        page_bytes: int,  # the file's (profile_rows.page_bytes): what a row's pad fills
    ) -> None:
        self._db = connection
        self._page_bytes = page_bytes
        self._erased = erased  # told the ids an erasure removes (the store's decoded profiles drop them)
        self._written = written if written is not None else WrittenDocuments(0)
        self._lent: dict[str, tuple[str, dict[str, Any]]] = {}  # documents read, with their text
        self._recent = history_rows.RecentLists()  # which interactions need a row (history_rows.py)

    def _row(
        self, profile_id: str, text: str, version: int, merged_into: str | None
    ) -> tuple[str, int, str | None, int]:
        """What a profile's row is written with, after its id: its document's text, version, merged_into
        and the pad that makes the row fill its pages (profile_rows.py)."""
        size = len(text) if text.isascii() else len(text.encode())  # its UTF-8 bytes
        return text, version, merged_into, profile_rows.padding(size, profile_id, merged_into, page=self._page_bytes)

    async def owners_of(self, keys: Sequence[str]) -> dict[str, str]:
        return dict(selected(self._db, "SELECT key, profile_id FROM identities WHERE key IN ({marks})", keys))

    async def profiles_holding_key_prefix(self, prefix: str, *, at_most: int) -> int:
        # The keys' primary key (key, profile_id) is read over the prefix's range only.
        row = self._db.execute(
            "SELECT count(*) FROM (SELECT DISTINCT profile_id FROM blocking_keys WHERE key >= ? AND key < ? LIMIT ?)",
            (prefix, prefix + "\U0010ffff", at_most),
        ).fetchone()
        return int(row[0])

    async def claim_identities(self, profile_id: str, identifiers: Sequence[Identifier], at: datetime) -> None:
        for identifier in identifiers:
            try:
                self._db.execute(
                    "INSERT INTO identities (key, profile_id, type, created_at) VALUES (?, ?, ?, ?)",
                    (identifier.key, profile_id, identifier.type, to_iso(at)),
                )
            except sqlite3.IntegrityError:
                raise IdentityTaken(identifier.key) from None

    async def get_profile(self, profile_id: str) -> Profile | None:
        row = self._db.execute("SELECT doc FROM profiles WHERE id = ?", (profile_id,)).fetchone()
        return Profile.from_own_json(row[0]) if row else None

    async def insert_profile(self, profile: Profile) -> None:
        document = profile.to_document()
        self._db.execute(
            _INSERT_PROFILE,
            (profile.id, *self._row(profile.id, dumps(document), profile.version, profile.merged_into)),
        )
        _index_keys(self._db, profile.id, profile.blocking_keys, live=profile.merged_into is None)
        _mirror_segments(self._db, profile.id, profile.segments)
        profile_facets.keep(self._db, [document], new=True)
        match_rows.keep(self._db, [document])
        _schedule_upkeep(self._db, [profile.id])
        self._recent.wrote([document])

    async def update_profile(
        self, profile_id: str, change: ProfileChange, *, expected_version: int | None = None
    ) -> None:
        row = self._db.execute("SELECT doc, version FROM profiles WHERE id = ?", (profile_id,)).fetchone()
        if row is None or (expected_version is not None and row[1] != expected_version):
            raise VersionConflict(profile_id)
        # A document the unit read and gave back (`unchanged`) is taken as it was kept, not decoded again.
        pushed_out: list[tuple[str, Any]] = []
        stored = self._written.take(profile_id, row[0]) or loads(row[0])
        document = apply_change(stored, change.with_values(jsonable), pushed_out=pushed_out)
        if "recent" in change.set or "mergedInto" in change.set:  # its list replaced, or merged away
            self._recent.copy(self._db, [profile_id], id_chunks)
        self._recent.wrote([document])
        self._rows((profile_id, item) for path, item in pushed_out if path == "recent")
        self._db.execute(
            _UPDATE_PROFILE,
            (*self._row(profile_id, dumps(document), document["version"], document.get("mergedInto")), profile_id),
        )
        profile_facets.keep(self._db, [document], cities=change.touches("addresses"))
        if "mergedInto" in change.set or touches_match_fields(change):
            match_rows.keep(self._db, [document])
        if "blockingKeys" in change.set or "mergedInto" in change.set:
            _index_keys(self._db, profile_id, document["blockingKeys"], live=document.get("mergedInto") is None)
        if "segments" in change.set:
            _mirror_segments(self._db, profile_id, document["segments"])
        if awaits_upkeep(change):
            _schedule_upkeep(self._db, [profile_id])

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
        self._rows([(profile_id, interaction)])

    def _rows(self, items: Iterable[tuple[str, dict[str, Any]]]) -> None:
        """A row of the interactions table for each (profile id, interaction), but for those the recent
        list this unit wrote for the profile holds (history_rows.py)."""
        self._db.executemany(
            history_rows.INSERT, [history_rows.row(p, i) for p, i in items if not self._recent.holds(p, i)]
        )

    # -- batches -----------------------------------------------------------------------------
    async def get_profiles(self, profile_ids: Collection[str]) -> dict[str, Profile]:
        rows = _rows_by_id(self._db, "profiles", list(profile_ids))
        return {profile_id: Profile.from_own_json(text) for profile_id, text in rows}

    async def get_profile_documents(self, profile_ids: Collection[str]) -> dict[str, dict[str, Any]]:
        found = {}
        for profile_id, text in _rows_by_id(self._db, "profiles", list(profile_ids)):
            document = self._written.take(profile_id, text) or loads(text)
            self._lent[profile_id] = (text, document)
            found[profile_id] = document
        return found

    async def changed_since(self, snapshot: Snapshot[Any]) -> set[str]:
        now = revisions(self._db, list(snapshot.revisions))
        return {profile_id for profile_id, then in snapshot.revisions.items() if now[profile_id] != then}

    async def unchanged(self, profile_ids: Collection[str]) -> None:
        for profile_id in profile_ids:
            if (lent := self._lent.pop(profile_id, None)) is not None:
                self._written.keep(profile_id, *lent)

    async def document_form(self) -> Callable[[Any], Any]:
        return jsonable

    async def keys_purged_through(self) -> datetime | None:
        return key_purge.purged_through(self._db)

    async def held_messages(self, interactions: Collection[tuple[str, datetime, str]]) -> set[str]:
        # Each profile's history read once over the span its events ask about (a range of the primary
        # key), its message ids compared there: a range an event read the same rows again for each, and
        # 1,000 old events into a profile holding 50,000 on their day held the writer 20 s.
        wanted: dict[str, dict[str, list[datetime]]] = {}
        for profile_id, at, message_id in interactions:
            wanted.setdefault(profile_id, {}).setdefault(message_id, []).append(at)
        found: set[str] = set()
        for profile_id, times_of in wanted.items():
            times = [at for ats in times_of.values() for at in ats]
            low, high = to_iso(min(times) - REPLAY_TIME_SLACK), to_iso(max(times) + REPLAY_TIME_SLACK)
            for chunk in id_chunks(list(times_of), size=IDS_PER_QUERY - 3):
                rows = self._db.execute(
                    "SELECT message_id, ts FROM history WHERE profile_id = ? AND ts BETWEEN ? AND ? "
                    f"AND message_id IN ({','.join('?' * len(chunk))})",
                    [profile_id, low, high, *chunk],
                )
                for message_id, ts in rows:
                    held = parse_time(ts)
                    if any(abs(held - at) <= REPLAY_TIME_SLACK for at in times_of[message_id]):
                        found.add(message_id)
        return found

    async def known_messages(self, message_ids: Collection[str]) -> set[str]:
        statement = "SELECT message_id FROM processed_messages WHERE message_id IN ({marks})"
        return {row[0] for row in selected(self._db, statement, message_ids)}

    async def claim_identity_keys(self, claims: Sequence[tuple[Identifier, str]], at: datetime) -> None:
        try:
            self._db.executemany(
                "INSERT INTO identities (key, profile_id, type, created_at) VALUES (?, ?, ?, ?)",
                [(identifier.key, owner, identifier.type, to_iso(at)) for identifier, owner in claims],
            )
        except sqlite3.IntegrityError:
            # Which one: the first claimed by another profile (the statement rolled back alone).
            owners = await self.owners_of([identifier.key for identifier, _ in claims])
            taken = next((i for i, _ in claims if i.key in owners), claims[0][0])
            raise IdentityTaken(taken.key) from None

    async def encoded(self, writes: Sequence[ProfileWrite]) -> list[ProfileWrite]:
        return [replace(w, encoded=dumps(w.document)) for w in writes]

    async def write_profiles(self, writes: Sequence[ProfileWrite]) -> None:
        inserts = [w.document for w in writes if w.expected_version is None]
        updates = [w for w in writes if w.expected_version is not None]
        texts = {w.document["_id"]: dumps(w.document) if w.encoded is None else w.encoded for w in writes}
        self._recent.wrote([w.document for w in writes])
        self._rows((w.document["_id"], item) for w in writes for item in w.pushed_out)
        self._db.executemany(
            _INSERT_PROFILE,
            [(d["_id"], *self._row(d["_id"], texts[d["_id"]], d["version"], d.get("mergedInto"))) for d in inserts],
        )
        cursor = self._db.executemany(
            _UPDATE_PROFILE_AT_VERSION,
            [
                (
                    *self._row(
                        w.document["_id"], texts[w.document["_id"]], w.document["version"], w.document.get("mergedInto")
                    ),
                    w.document["_id"],
                    w.expected_version,
                )
                for w in updates
            ],
        )
        if updates and cursor.rowcount != len(updates):
            raise VersionConflict("a profile of the batch changed since it was read")
        for write in writes:  # should the unit roll back, the text no longer matches and nothing is taken
            self._written.keep(write.document["_id"], texts[write.document["_id"]], write.document)
        for write in writes:
            profile_id, document = write.document["_id"], write.document
            if write.keys_moved or write.expected_version is None:
                live = not document.get("mergedInto")
                _index_keys(self._db, profile_id, document.get("blockingKeys", []), live=live)
            if write.expected_version is None:
                _mirror_segments(self._db, profile_id, document.get("segments", []))
        profile_facets.keep(self._db, inserts, new=True)
        match_rows.keep(self._db, [w.document for w in writes if w.matched_moved or w.expected_version is None])
        for moved in (True, False):  # the city rows are rewritten only for profiles whose addresses moved
            documents = [write.document for write in updates if write.addresses_moved is moved]
            profile_facets.keep(self._db, documents, cities=moved)
        _schedule_upkeep(self._db, [write.document["_id"] for write in writes])

    async def record_messages(self, records: Sequence[tuple[str, str]], expires_at: datetime) -> None:
        expiry = to_iso(expires_at)
        try:
            self._db.executemany(
                "INSERT INTO processed_messages (message_id, profile_id, expires_at) VALUES (?, ?, ?)",
                [(message_id, profile_id, expiry) for message_id, profile_id in records],
            )
        except sqlite3.IntegrityError:
            known = await self.known_messages([message_id for message_id, _ in records])
            raise MessageAlreadyProcessed(next(iter(known), records[0][0])) from None

    async def append_interactions(self, items: Sequence[tuple[str, dict[str, Any]]]) -> None:
        self._rows(items)

    # -- merges ------------------------------------------------------------------------------
    async def replace_profile(self, profile: Profile, *, expected_version: int) -> None:
        document = profile.to_document()
        self._recent.copy(self._db, [profile.id], id_chunks)  # its list is replaced whole
        self._recent.wrote([document])
        cursor = self._db.execute(
            _UPDATE_PROFILE_AT_VERSION,
            (
                *self._row(profile.id, dumps(document), profile.version, profile.merged_into),
                profile.id,
                expected_version,
            ),
        )
        if cursor.rowcount != 1:
            raise VersionConflict(profile.id)
        profile_facets.keep(self._db, [document])
        match_rows.keep(self._db, [document])
        _index_keys(self._db, profile.id, profile.blocking_keys, live=profile.merged_into is None)
        _mirror_segments(self._db, profile.id, profile.segments)
        _schedule_upkeep(self._db, [profile.id])

    async def history(self, profile_id: str) -> list[Interaction]:
        rows = self._db.execute("SELECT doc FROM history WHERE profile_id = ?", (profile_id,)).fetchall()
        return [Interaction.model_validate(loads(row[0])) for row in rows]

    async def activity_between(
        self, profile_id: str, windows: Sequence[tuple[datetime, datetime]]
    ) -> list[tuple[datetime, str, str]]:
        found: list[tuple[datetime, str, str]] = []
        for low, high in joined_spans(windows):  # each a range of the primary key and of the recent list
            rows = self._db.execute(
                "SELECT ts, type, channel FROM history WHERE profile_id = ? AND ts BETWEEN ? AND ?",
                (profile_id, to_iso(low), to_iso(high)),
            )
            found += [(parse_time(ts), kind, channel) for ts, kind, channel in rows]
        return found

    async def reassign_history(self, from_ids: Sequence[str], to_id: str) -> None:
        # An interaction is its (profile, time, message id) here: one `to_id` holds already (the same
        # message sent again for another person once its idempotency key had expired) stays one, and
        # the copy is dropped. A plain UPDATE failed the whole merge on the key.
        self._recent.moving(self._db, [*from_ids, to_id], id_chunks)
        marks = ",".join("?" * len(from_ids))
        self._db.execute(
            f"UPDATE OR IGNORE interactions SET profile_id = ? WHERE profile_id IN ({marks})", [to_id, *from_ids]
        )
        self._db.execute(f"DELETE FROM interactions WHERE profile_id IN ({marks})", list(from_ids))

    async def assign_history(
        self, owner_id: str, moves: dict[str, str], rewrites: dict[str, dict[str, Any]]
    ) -> None:
        # Each row by its whole primary key, the owner's times read once: by message id alone, each
        # statement read all of the owner's history (an unmerge of 55,400 events took 562 s, the
        # writer held throughout). One the target holds already stays with the owner too (see
        # reassign_history).
        self._recent.moving(self._db, [owner_id, *moves.values()], id_chunks)
        times: dict[str, list[str]] = {}
        for message_id, ts in self._db.execute(
            "SELECT message_id, ts FROM interactions WHERE profile_id = ?", (owner_id,)
        ).fetchall():
            times.setdefault(message_id, []).append(ts)
        self._db.executemany(
            "UPDATE OR IGNORE interactions SET profile_id = ? WHERE profile_id = ? AND ts = ? AND message_id = ?",
            [(target, owner_id, ts, mid) for mid, target in moves.items() for ts in times.get(mid, ())],
        )
        self._db.executemany(
            "UPDATE processed_messages SET profile_id = ? WHERE message_id = ? AND profile_id = ?",
            [(target, message_id, owner_id) for message_id, target in moves.items()],
        )
        self._db.executemany(  # json_patch: each field given replaces the document's (a list whole)
            "UPDATE interactions SET doc = json_patch(doc, ?) WHERE profile_id IN (?, ?) AND ts = ? AND message_id = ?",
            [
                (dumps(fields), owner_id, moves.get(mid, owner_id), ts, mid)
                for mid, fields in rewrites.items()
                for ts in times.get(mid, ())
            ],
        )

    async def identity_keys_of(self, profile_ids: Collection[str]) -> set[str]:
        return {
            row[0]
            for row in selected(self._db, "SELECT key FROM identities WHERE profile_id IN ({marks})", profile_ids)
        }

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

    async def merges_of_all(self, profile_ids: Collection[str]) -> list[MergeRecord]:
        statement = (
            "SELECT DISTINCT m.id, m.doc FROM merge_members mm JOIN merges m ON m.id = mm.merge_id"
            " WHERE mm.profile_id IN ({marks})"
        )
        found = dict(selected(self._db, statement, profile_ids))  # a merge of two of them, once
        return sorted((MergeRecord.from_document(loads(doc)) for doc in found.values()), key=lambda r: (r.at, r.id))

    async def products_of(self, product_ids: Collection[str]) -> dict[str, Product]:
        return {product.id: product for product in products_in(self._db, product_ids)}

    async def put_products(self, products: Sequence[dict[str, Any]]) -> None:
        self._db.executemany(
            "INSERT INTO products (id, doc) VALUES (?, ?) ON CONFLICT(id) DO UPDATE SET doc = excluded.doc",
            [(product["_id"], dumps(product)) for product in products],
        )

    async def record_refusal(self, refusal: MergeRefusal) -> None:
        self._db.execute(
            # The same refusal again (its id says which profiles, and why) keeps the first record.
            "INSERT OR IGNORE INTO merge_refusals (id, doc) VALUES (?, ?)",
            (refusal.id, dumps(refusal.to_document())),
        )
        self._db.executemany(
            "INSERT OR IGNORE INTO merge_refusal_members (profile_id, refusal_id) VALUES (?, ?)",
            [(pid, refusal.id) for pid in refusal.profile_ids],
        )

    async def refusals_of(self, profile_id: str) -> list[MergeRefusal]:
        return refusals_of(self._db, profile_id)

    # -- privacy -------------------------------------------------------------------------------
    async def append_consent(self, decision: ConsentDecision) -> None:
        self._db.execute(
            "INSERT INTO consent_log (profile_id, at, doc) VALUES (?, ?, ?)",
            (decision.profile_id, to_iso(decision.at), dumps(decision.model_dump(by_alias=True, exclude_none=True))),
        )

    async def consent_decisions(self, profile_id: str) -> list[ConsentDecision]:
        rows = self._db.execute("SELECT doc FROM consent_log WHERE profile_id = ? ORDER BY rowid", (profile_id,))
        return [ConsentDecision.model_validate(loads(row[0])) for row in rows.fetchall()]

    async def assign_consents(
        self, owner_id: str, moves: Mapping[str, str], direct: Mapping[str, str] = MappingProxyType({})
    ) -> None:
        if not moves and not direct:
            return
        rows = self._db.execute("SELECT rowid, doc FROM consent_log WHERE profile_id = ?", (owner_id,)).fetchall()
        updates = []
        for rowid, doc in rows:
            document = loads(doc)
            if "messageId" in document:
                target = moves.get(document["messageId"])
            else:
                target = direct.get(document["decisionId"]) if "decisionId" in document else None
            if target is not None and target != owner_id:
                document["profileId"] = target
                updates.append((target, dumps(document), rowid))
        # In place: the rowid keeps decisions of one millisecond in the order they were made.
        self._db.executemany("UPDATE consent_log SET profile_id = ?, doc = ? WHERE rowid = ?", updates)

    async def tombstones_of(self, profile_ids: Collection[str]) -> list[str]:
        return sorted(
            row[0] for row in selected(self._db, "SELECT id FROM profiles WHERE merged_into IN ({marks})", profile_ids)
        )

    async def erase(self, profile_ids: Sequence[str]) -> tuple[int, int]:
        ids = list(profile_ids)
        # Committed with the erasure: the files still hold the person until wiped (SQLiteStore.wipe_deleted).
        self._db.execute(WRITE_META, (WIPE_OWED, uuid.uuid4().hex))
        self._written.forget(ids)
        if self._erased is not None:
            self._erased(ids)
        identifiers = interactions = 0
        for chunk in id_chunks(ids):  # a family of any size: SQLite bounds parameters
            counted = _erase_some(self._db, chunk)
            identifiers, interactions = identifiers + counted[0], interactions + counted[1]
        return identifiers, interactions

    async def suppress(self, hashes: Sequence[str], at: datetime) -> None:
        self._db.executemany(
            "INSERT OR IGNORE INTO suppressions (hash, at) VALUES (?, ?)", [(h, to_iso(at)) for h in hashes]
        )

    async def read_meta(self, key: str) -> str | None:
        row = self._db.execute("SELECT value FROM meta WHERE key = ?", (key,)).fetchone()
        return str(row[0]) if row else None

    async def write_meta(self, key: str, value: str) -> None:
        self._db.execute(WRITE_META, (key, value))

    async def suppressed(self, hashes: Sequence[str]) -> set[str]:
        return {r[0] for r in selected(self._db, "SELECT hash FROM suppressions WHERE hash IN ({marks})", hashes)}

    async def insert_segment_event(self, event: SegmentEvent) -> None:
        self._db.execute(
            "INSERT INTO segment_events (id, segment_id, profile_id, at, doc) VALUES (?, ?, ?, ?, ?)",
            (event.id, event.segment_id, event.profile_id, to_iso(event.at), dumps(event.stored())),
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

    async def get_segments(self, segment_ids: Collection[str]) -> dict[str, Segment]:
        rows = selected(self._db, "SELECT id, doc FROM segments WHERE id IN ({marks})", segment_ids)
        return {segment_id: Segment.model_validate(loads(doc)) for segment_id, doc in rows}

    async def segment_memberships(self, profile_ids: Collection[str]) -> dict[str, tuple[int, list[str]]]:
        # The memberships from their mirror (segment_members), not json_extract: that parsed every
        # whole document, 4% of the writer's time ingesting batches of events over 100,000 profiles.
        found = dict[str, tuple[int, list[str]]]()
        for chunk in id_chunks(profile_ids):
            marks = ",".join("?" * len(chunk))
            held: dict[str, list[str]] = {}
            for segment_id, profile_id in self._db.execute(
                f"SELECT segment_id, profile_id FROM segment_members WHERE profile_id IN ({marks})", chunk
            ):
                held.setdefault(profile_id, []).append(segment_id)
            versions = self._db.execute(f"SELECT id, version FROM profiles WHERE id IN ({marks})", chunk)
            found |= {profile_id: (version, sorted(held.get(profile_id, ()))) for profile_id, version in versions}
        return found

    async def set_segments(self, memberships: Mapping[str, Sequence[str]]) -> None:
        rows = [(dumps(list(segments)), profile_id) for profile_id, segments in memberships.items()]
        self._db.executemany(_SET_SEGMENTS, rows)
        for profile_id, segments in memberships.items():
            _mirror_segments(self._db, profile_id, segments)

    async def insert_segment_events(self, events: Sequence[SegmentEvent]) -> None:
        self._db.executemany(
            "INSERT INTO segment_events (id, segment_id, profile_id, at, doc) VALUES (?, ?, ?, ?, ?)",
            [(e.id, e.segment_id, e.profile_id, to_iso(e.at), dumps(e.stored())) for e in events],
        )

    async def latest_segment_event_at(self) -> datetime | None:
        row = self._db.execute("SELECT max(at) FROM segment_events").fetchone()
        return parse_time(row[0]) if row and row[0] else None

    async def clear_upkeep(self, counted: Mapping[str, int]) -> None:
        self._db.executemany(
            "DELETE FROM segment_checks WHERE profile_id = ? AND segment_id = ? AND writes <= ?",
            [(profile_id, EVERY_SEGMENT, writes) for profile_id, writes in counted.items()],
        )

    async def schedule_checks(self, checks: Sequence[tuple[str, str, datetime | None]]) -> None:
        self._db.executemany(
            "DELETE FROM segment_checks WHERE profile_id = ? AND segment_id = ?",
            [(profile_id, segment_id) for profile_id, segment_id, due_at in checks if due_at is None],
        )
        self._db.executemany(
            "INSERT INTO segment_checks (profile_id, segment_id, due_at) VALUES (?, ?, ?) "
            "ON CONFLICT(profile_id, segment_id) DO UPDATE SET due_at = excluded.due_at",
            [(profile_id, segment_id, to_iso(due)) for profile_id, segment_id, due in checks if due is not None],
        )


def _rows_by_id(db: sqlite3.Connection, table: str, ids: list[str]) -> list[tuple[str, str]]:
    """(id, JSON text) of the rows of `ids` that exist, a query per IDS_PER_QUERY of them."""
    return selected(db, f"SELECT id, doc FROM {table} WHERE id IN ({{marks}})", ids)


def revisions(db: sqlite3.Connection, profile_ids: Collection[str]) -> dict[str, object]:
    """profile id → the revision of its stored document (profile_revisions.py), ABSENT for an id
    no profile has: each of `profile_ids`."""
    found = dict(selected(db, "SELECT id, revision FROM profiles WHERE id IN ({marks})", profile_ids))
    return {profile_id: found.get(profile_id, ABSENT) for profile_id in profile_ids}


def selected(db: sqlite3.Connection, statement: str, ids: Collection[str]) -> list[Any]:
    """The rows `statement` gives for `ids`, its `{marks}` their placeholders: a statement per
    IDS_PER_QUERY of them, as SQLite bounds a statement's parameters (a family of any size)."""
    rows: list[Any] = []
    for chunk in id_chunks(ids):
        rows += db.execute(statement.format(marks=",".join("?" * len(chunk))), chunk)
    return rows


def id_chunks(ids: Collection[str], *, size: int = IDS_PER_QUERY) -> list[list[str]]:
    """`ids`, each once, in lists of at most `size`: what one statement may bind."""
    unique = list(dict.fromkeys(ids))
    return [unique[start : start + size] for start in range(0, len(unique), size)]


def _schedule_upkeep(db: sqlite3.Connection, profile_ids: Sequence[str]) -> None:
    """The check of every segment that a write of these profiles leaves until its upkeep clears it."""
    due = to_iso(upkeep_due(now()))
    db.executemany(_SCHEDULE_UPKEEP, [(profile_id, EVERY_SEGMENT, due) for profile_id in profile_ids])


def _mirror_segments(db: sqlite3.Connection, profile_id: str, segments: Sequence[str]) -> None:
    db.execute("DELETE FROM segment_members WHERE profile_id = ?", (profile_id,))
    db.executemany(
        "INSERT INTO segment_members (segment_id, profile_id) VALUES (?, ?)", [(s, profile_id) for s in segments]
    )


def _index_keys(db: sqlite3.Connection, profile_id: str, keys: Sequence[str], *, live: bool) -> None:
    """Keep the `blocking_keys` table equal to the live profiles' `blockingKeys`, in the same
    transaction: a merged-away profile holds none there, as the matcher pairs live profiles only."""
    db.execute("DELETE FROM blocking_keys WHERE profile_id = ?", (profile_id,))
    if live:
        db.executemany("INSERT INTO blocking_keys (key, profile_id) VALUES (?, ?)", [(k, profile_id) for k in keys])


def merges_of(db: sqlite3.Connection, profile_id: str) -> list[MergeRecord]:
    rows = db.execute(
        "SELECT m.doc FROM merge_members mm JOIN merges m ON m.id = mm.merge_id WHERE mm.profile_id = ?",
        (profile_id,),
    ).fetchall()
    return sorted((MergeRecord.from_document(loads(row[0])) for row in rows), key=lambda r: (r.at, r.id))


def _erase_some(db: sqlite3.Connection, ids: list[str]) -> tuple[int, int]:
    """`SQLiteTransaction.erase` for at most IDS_PER_QUERY profiles."""
    marks = ",".join("?" * len(ids))
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
        selected(db, f"DELETE FROM {table} WHERE {key} IN ({{marks}})", values)
    identifiers = db.execute(f"DELETE FROM identities WHERE profile_id IN ({marks})", ids).rowcount
    # Those in the table and those only in the profiles' recent lists (history_rows.py).
    interactions = db.execute(f"SELECT count(*) FROM history WHERE profile_id IN ({marks})", ids).fetchone()[0]
    db.execute(f"DELETE FROM interactions WHERE profile_id IN ({marks})", ids)
    for table in (
        "blocking_keys",
        "processed_messages",
        "consent_log",
        "segment_members",
        "segment_events",
        "segment_checks",
    ):
        db.execute(f"DELETE FROM {table} WHERE profile_id IN ({marks})", ids)
    db.execute(f"DELETE FROM profiles WHERE id IN ({marks})", ids)
    profile_facets.forget(db, ids)
    match_rows.forget(db, ids)
    return identifiers, interactions


def refusals_of(db: sqlite3.Connection, profile_id: str) -> list[MergeRefusal]:
    rows = db.execute(
        "SELECT r.doc FROM merge_refusal_members rm JOIN merge_refusals r ON r.id = rm.refusal_id "
        "WHERE rm.profile_id = ?",
        (profile_id,),
    ).fetchall()
    return sorted((MergeRefusal.model_validate(loads(row[0])) for row in rows), key=lambda r: (r.at, r.id))


def products_in(db: sqlite3.Connection, product_ids: Collection[str]) -> list[Product]:
    """The known ones of `product_ids`, read on `db` (a reader's connection, or a transaction's)."""
    rows = selected(db, "SELECT doc FROM products WHERE id IN ({marks})", product_ids)  # each id once
    return [Product.model_validate(loads(row[0])) for row in rows]
