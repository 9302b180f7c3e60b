"""The embedded store: SQLite from the standard library, WAL mode, one file under `data/`.

Nothing long runs on the event loop (app/store/sqlite/threads.py): one connection writes, owned by
a writer thread, under an asyncio lock (a unit of work and the commit run there); reads that scan
run on reader threads with connections of their own; only short indexed lookups (a profile by id or
identifier, a key, a setting) run on the loop's own read connection. In WAL mode a reader sees only
committed data, so a batch in progress is never visible half-done. `synchronous=FULL` makes a
commit durable before it returns: an event reported ACCEPTED survives a crash.
"""

from __future__ import annotations

import asyncio
import logging
import math
import os
import sqlite3
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Collection, Sequence
from contextlib import asynccontextmanager
from contextvars import ContextVar
from datetime import datetime
from pathlib import Path
from typing import Any, TypeVar

from app.domain.access import ApiKey
from app.domain.clock import now, to_iso
from app.domain.errors import InvalidInput, StoreUnavailable
from app.domain.matching.index import MatchView
from app.domain.merge import MergeRecord, MergeRefusal
from app.domain.privacy import ConsentDecision, Erasure
from app.domain.products import CoPurchase, Product
from app.domain.profile import Interaction, Profile
from app.domain.profile_query import InteractionFilter, InteractionPosition, ProfileFilter
from app.domain.segments.conditions import Condition
from app.domain.segments.segment import MembershipChange, Segment, SegmentEvent, is_event_id
from app.domain.segments.upkeep import EVERY_SEGMENT
from app.services.ports import (
    Snapshot,
    StoreTransaction,
)
from app.store.documents import dumps, loads
from app.store.sqlite import (
    key_purge,
    match_rows,
    profile_facets,
    profile_filter,
    profile_revisions,
    profile_rows,
    schema,
    segment_feed,
    store_users,
)
from app.store.sqlite.checkpoints import LOG_LIMIT_BYTES, Checkpointer, checkpoint_waiting, restart_after_copying
from app.store.sqlite.commit_groups import CommitGroups, TransactionSteps
from app.store.sqlite.commit_watch import CommitWatch
from app.store.sqlite.decoded_profiles import DEFAULT_BUDGET_BYTES, DecodedProfiles
from app.store.sqlite.lock_waits import LockWaits
from app.store.sqlite.private_files import create_private
from app.store.sqlite.schema import STATEMENTS, WRITE_META
from app.store.sqlite.segment_query import where_clause as segment_where
from app.store.sqlite.snapshots import Snapshots
from app.store.sqlite.threads import ReaderPool, WriterThread
from app.store.sqlite.transaction import (
    IDS_PER_QUERY,
    WIPE_OWED,
    SQLiteTransaction,
    id_chunks,
    merges_of,
    products_in,
    refusals_of,
    selected,
)
from app.store.sqlite.write_lock_held import WriteLockHeld
from app.store.sqlite.written_documents import WrittenDocuments
from app.thread_priority import give_way_to, may_leave_background

T = TypeVar("T")
R = TypeVar("R", MergeRecord, MergeRefusal)
log = logging.getLogger("cdp.store")
_PURGE_EVERY_SECONDS = 3600.0
# Worded as the partial index segment_events_to_forget (schema.py), which they then read alone.
_TO_FORGET = "segment_events WHERE json_extract(doc, '$.forgetAt') IS NOT NULL AND json_extract(doc, '$.forgetAt') <= ?"
_FORGET_EVENTS = f"DELETE FROM {_TO_FORGET}"
_ANY_TO_FORGET = f"SELECT 1 FROM {_TO_FORGET} LIMIT 1"
# The history's changes before a time, oldest first, from past a change (by the time index).
_OLD_CHANGES = "SELECT doc FROM segment_events WHERE at < ?{past} ORDER BY at, id LIMIT ?"
_PAST = " AND at >= ? AND (at > ? OR id > ?)"  # one range of the index (an OR of two made it sort them all)
SCAN_NICENESS = 10  # whole-store scans yield the core (app/store/sqlite/threads.py)
# The writer thread's priority beside the event loop's, for the writes that are not bulk work
# (small ingests, upserts, consents, merges, segment upkeep) where a batch of events runs in the
# background class (app/thread_priority.py). At 5 those writes waited behind the reads under bench
# serving's mixed load (small ingests' p99 314-366 ms); at 2, 209 ms then, 268-286 ms since, the
# class furthest from its 250 ms. At 0 (the loop's own priority), three runs of the mixed load
# alternating with 2 (2026-12-04, 06:58-07:10 UTC): small ingests' p99 229 / 253 / 246 ms against
# 271 / 268 ms, profile queries' 149 / 147 / 147 against 114 / 118 ms, filtered lists' 235 / 214 /
# 206 against 216 / 194 ms, /healthz's 36 / 23 / 29 against 29 / 27 ms; at 1, 271 / 270 ms for
# the ingests, 214 / 253 ms for the lists. The classes' worst p99 is lowest at 0.
WRITER_NICENESS = 0
# Where a thread at the loop's priority may not leave the background class (no CAP_SYS_NICE, and an
# RLIMIT_NICE below 20 - the process's nice value), the writer runs this far below the loop: a batch
# of events that cannot go into the background class gives way to the reads by its nice value (and
# with an RLIMIT_NICE of 18 or 19 one may from there). The checkpoints run at the writer's priority,
# as in the runs above.
WRITER_NICENESS_WITHOUT_BACKGROUND = 2
BUSY_TIMEOUT_MS = 5000  # how long a statement waits for a lock another process holds
# How long after a write last found another process holding the write lock large batches are still
# computed before they take it (read_snapshot).
CONTENDED_FOR_SECONDS = 10.0
WIPE_WAIT_MS = 200  # how long an erasure's wipe waits for readers elsewhere to leave the log
FEW_ON_THE_LOOP = 16  # profiles read by id on the loop's own connection; more go to a reader thread
# The writer connection's page cache, in KiB (SQLite's default is 2 MiB). A 1,000-event batch of the
# bench dirties ~3,500 pages (interactions, profile rows, list-filter rows, new identities: each row on
# a random page of its table): past the default cache, SQLite spilled dirty pages into the log during
# the transaction and read the tables' inner pages again for every batch. 32 MiB holds a batch with
# room: HTTP ingestion 3,751 -> 4,178 events/s (bench serving's batches; 32 and 64 MiB alike). A
# reader's cache is dropped whenever another connection commits, so under writes it holds memory for
# nothing: the readers keep the default, but those of the lists (below).
WRITER_CACHE_KIB = 32 * 1024
# The page cache of the reader threads that read lists: between writes, a list's pages stay there for
# its next read. Three segments' 100 members each are ~300 documents of 4.5 KB, each a row and an
# overflow page: past the default 2 MiB, every read of the list read ~410 pages again (pread, strace),
# and `segments { members(first: 100) { interactions(first: 10) } }` took 6.0 ms instead of 4.4-4.8
# on a store whose documents were 5% smaller. At most this much per thread (READER_THREADS of them).
LIST_READER_CACHE_KIB = 8 * 1024
_GROUPS_PER_QUERY = 1000
_PAGES_PER_QUERY = 100  # one page per parent, joined with UNION ALL (SQLite allows 500 terms)


def _refuse_foreign(db: sqlite3.Connection, path: Path) -> None:
    """InvalidInput for another application's SQLite database: opened as a store, it was switched to
    WAL and given this server's tables, by a command that only lists keys."""
    tables = _tables(db)
    if tables and not {"meta", "profiles"} <= tables:
        shown = ", ".join(sorted(tables)[:5]) + (", …" if len(tables) > 5 else "")
        raise InvalidInput(
            f"{path} is not a store of this server: it holds another application's tables ({shown}); "
            "point CDP_DATABASE_URL at this server's file, or at a new one",
            field="CDP_DATABASE_URL",
        )


def _tables(db: sqlite3.Connection) -> set[str]:
    return {name for (name,) in db.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}


# A consent history's order: newest first; of decisions at one instant the refusal first (the one in
# effect: privacy.supersedes), then the later recorded.
_CONSENT_ORDER = "at DESC, json_extract(doc, '$.granted'), rowid DESC"


def writer_niceness() -> int:
    """How far below the process the writer thread and its checkpoints run: WRITER_NICENESS where a
    batch of events may go into the background class from there, else WRITER_NICENESS_WITHOUT_BACKGROUND."""
    process = os.getpriority(os.PRIO_PROCESS, os.getpid()) if hasattr(os, "getpriority") else 0
    if may_leave_background(process + WRITER_NICENESS):
        return WRITER_NICENESS
    return WRITER_NICENESS_WITHOUT_BACKGROUND


class SQLiteStore:
    backend = "sqlite"

    def __init__(
        self,
        path: str | Path,
        *,
        decoded_budget_bytes: int = DEFAULT_BUDGET_BYTES,
        held_alone: bool = False,
        snapshots_always: bool = False,
    ) -> None:
        """`held_alone`: the caller holds the store's lock exclusively (a restore, store_users.py), so
        the store does not take its shared one. `snapshots_always`: read_snapshot whether or not
        another process writes (tests; by default only while one does)."""
        self.path = Path(path)
        self.decoded = DecodedProfiles(decoded_budget_bytes)  # what reads decoded, by the text they read
        self.written = WrittenDocuments()  # what the writer wrote, by the text it wrote (its thread only)
        self._open_lock: int | None = None
        try:
            if str(path) != ":memory:":
                self.path.parent.mkdir(parents=True, exist_ok=True)
                create_private(self.path)
                if not held_alone:
                    self._open_lock = store_users.hold_shared(self.path)
            self._writer = self._prepared_writer()
        except (sqlite3.Error, OSError) as exc:  # not a database, a folder, a place it may not write
            self._release_open_lock()
            raise StoreUnavailable(f"the embedded store {self.path} cannot be opened: {exc}") from None
        except BaseException:  # another application's database, a schema it cannot migrate: not open
            self._release_open_lock()
            raise
        self._page_bytes = profile_rows.page_bytes(self._writer)
        self._reader = self._connect_reader()
        self._commits = CommitWatch(self._reader, self.decoded.ticket)
        self._waits = LockWaits(None if str(path) == ":memory:" else self.path)
        nice = writer_niceness()  # the writer's and its checkpoints'
        self._thread = WriterThread(f"sqlite-writer-{self.path.name}", nice=nice, waits=self._waits)
        self._reads = ReaderPool(self._connect_list_reader, name="sqlite-read")
        self._scans = ReaderPool(self._connect_reader, name="sqlite-scan", nice=SCAN_NICENESS)
        self._checkpoints = Checkpointer(
            self._connect, database=self.path, name=f"sqlite-ckpt-{self.path.name}", nice=nice
        )
        self._write_lock = asyncio.Lock()  # used on the writer thread's loop only
        # None in memory: another connection would open another, empty database.
        # Held by this process's writer: its snapshot plans and bulk work give way (write_lock_held.py).
        self.lock_held = WriteLockHeld()
        self._stop_giving_way = give_way_to(self.lock_held.wait_free)
        self._snapshots = (
            None
            if str(path) == ":memory:"
            else Snapshots(self._connect_reader, self.lock_held, page_bytes=self._page_bytes)
        )
        self._snapshots_always = snapshots_always
        # One snapshot's work at a time, and at most one batch waiting for its turn (read_snapshot).
        self._plan_turn = asyncio.Lock()  # on the caller's loop (the server's)
        self._plans_waiting = 0
        self._last_contended = -math.inf  # when a write last found another process holding the lock
        self._holder: object | None = None  # the batch holding it
        self._in_batch: ContextVar[bool] = ContextVar(f"sqlite-batch-{id(self)}", default=False)
        writer = self._writer
        in_transaction, background = (lambda: writer.in_transaction), self._thread.background
        steps = TransactionSteps(self._begin, self._end, writer.execute, in_transaction, self._in_batch, background)
        self._groups = CommitGroups(steps)
        self._last_purge = 0.0

    def _prepared_writer(self) -> sqlite3.Connection:
        """The write connection, the schema created or migrated."""
        writer = self._connect()
        try:
            _refuse_foreign(writer, self.path)  # before anything is written: WAL mode is a write
            schema.refuse_newer(writer, self.path, field="CDP_DATABASE_URL")
            writer.execute("PRAGMA journal_mode=WAL")
            writer.execute("PRAGMA wal_autocheckpoint=0")  # the checkpointer's thread copies the log
            writer.execute(f"PRAGMA cache_size=-{WRITER_CACHE_KIB}")
            # A unit of work inside a batch is a savepoint, for which SQLite copies each page it first
            # changes to a sub-journal: a temporary file by default, ~7,200 page writes for a batch of
            # 1,000 events, which made its statements twice the SQL floor's (~35 ms of ~400). In memory
            # it holds those pages until the transaction's outermost savepoint is released (a commit
            # group's batches share one): measured at the peak against the file, +4 MB for four
            # batches of 1,000 events at once, +131 MB for one of 10,000 (CDP_MAX_BATCH_SIZE's most).
            writer.execute("PRAGMA temp_store=MEMORY")
            made = not _tables(writer)
            for statement in STATEMENTS:
                writer.execute(statement)
            if made:
                key_purge.mark_new(writer)
            schema.add_columns(writer)
            if profile_revisions.prepare(writer):
                log.info("profiles have a revision column now: each is read in full until it is next written")
            if filled := profile_facets.fill(writer):
                log.info("built the list filters' rows of %d profiles stored before them", filled)
            if filled := match_rows.fill(writer):
                log.info("built the matching rows of %d profiles stored before them", filled)
            if folded := profile_facets.fold_final_sigmas(writer):
                log.info("folded the final sigma in %d of the list filters' rows", folded)
            schema.mark_format(writer)
        except BaseException:
            writer.close()
            raise
        return writer

    def _release_open_lock(self) -> None:
        if self._open_lock is not None:
            os.close(self._open_lock)
            self._open_lock = None

    def _connect(self) -> sqlite3.Connection:
        connection = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False)
        connection.execute(f"PRAGMA busy_timeout={BUSY_TIMEOUT_MS}")
        connection.execute("PRAGMA synchronous=FULL")
        connection.execute(f"PRAGMA journal_size_limit={LOG_LIMIT_BYTES}")  # the log file kept for reuse
        # Deleted content is overwritten with zeros, not left in free pages: an erasure must leave the
        # person readable nowhere in the file (see wipe_deleted for the write-ahead log).
        connection.execute("PRAGMA secure_delete=ON")
        return connection

    def _connect_reader(self) -> sqlite3.Connection:
        connection = self._connect()
        connection.execute("PRAGMA query_only=ON")
        return connection

    def _connect_list_reader(self) -> sqlite3.Connection:
        connection = self._connect_reader()
        connection.execute(f"PRAGMA cache_size=-{LIST_READER_CACHE_KIB}")
        return connection

    # -- lifecycle ---------------------------------------------------------------------------
    async def ping(self) -> None:
        try:
            self._reader.execute("SELECT count(*) FROM meta").fetchone()
        except sqlite3.Error as exc:
            raise StoreUnavailable(f"the embedded store cannot be read ({type(exc).__name__}: {exc})") from exc

    async def close(self) -> None:
        self._stop_giving_way()
        self._checkpoints.close()
        if self._snapshots is not None:
            self._snapshots.close()
        self._reads.close()
        self._scans.close()
        self._reader.close()
        if not self._thread.closed:  # closing twice is harmless, as sqlite3's own close is
            await self._thread.run(self._thread.settle())
            await self._thread.call(self._writer.close)
            self._thread.close()
        self._release_open_lock()

    def trace(self, callback: Callable[[str], None] | None) -> None:
        """Report every SQL statement run on the read connections (tests count round trips with it)."""
        self._reader.set_trace_callback(callback)
        self._reads.trace(callback)
        self._scans.trace(callback)

    # -- writes ------------------------------------------------------------------------------
    # The write lock is taken and released on the writer thread, with the work it guards: a batch run
    # with `run_batch` holds it for its own work only. Held across hops back to the server's loop (a
    # BEGIN, each unit, the COMMIT), it stayed held while a saturated loop got round to each hop:
    # under a mixed load, small ingests queued behind one another for seconds.
    @asynccontextmanager
    async def batch(self) -> AsyncIterator[None]:
        if self._in_batch.get():
            yield
            return
        holder = object()
        try:
            await self._thread.run(self._begin(holder))
        except asyncio.CancelledError:
            self._thread.submit(self._abandon(holder))  # in case the lock was taken as the caller went
            raise
        token = self._in_batch.set(True)
        try:
            yield
        except BaseException:
            await self._thread.run(self._end(holder, "ROLLBACK"))
            raise
        else:
            await self._thread.run(self._end(holder, "COMMIT"))  # the fsync of synchronous=FULL
        finally:
            self._in_batch.reset(token)

    async def run_batch(self, work: Callable[[], Awaitable[T]]) -> T:
        """`work` as one batch run on the writer thread from BEGIN to COMMIT, in one hop; batches that
        wait for the writer meanwhile share the next transaction (app/store/sqlite/commit_groups.py)."""
        if self._in_batch.get():
            return await work()
        return await self._thread.run(self._groups.run(work))

    async def read_snapshot(self, work: Callable[[StoreTransaction], Awaitable[T]]) -> Snapshot[T] | None:
        # Only while another process's writes hold the lock now and then: alone on the file (one
        # worker, a load, the demo data's first start), a batch computed before the lock is computed
        # where it would be anyway, plus the reads checking it.
        if self._snapshots is None:
            return None
        if not self._snapshots_always and time.monotonic() - self._last_contended > CONTENDED_FOR_SECONDS:
            return None
        # One at a time (beside another, it would only share the GIL with it), whether this process's
        # writer is busy or not: a batch that arrives while another is planned waits for its turn.
        # When one connection's batch was on the writer and another's arrived meanwhile (a
        # connector's connections), that one was computed under the lock: 55-60% of the batches of
        # two workers ingesting at once. One waiting its turn gives 97-99% and ~7% more events a
        # second (bench serving's 2b by hand, three runs of three rounds alternating with the code
        # before: 3,812 -> 4,076 events/s on average, the most in the later rounds, as the store
        # grows). One more waiting goes under the lock, so none waits for more than one plan: it is
        # counted until it resumes, since the lock reads as free from its release until then (a
        # batch asking in that gap waited behind it as well).
        if self._plans_waiting:
            return None
        self._plans_waiting += 1
        try:
            await self._plan_turn.acquire()
        finally:
            self._plans_waiting -= 1
        # The default executor: while serving, the bulk threads, in the background class (app/collector.py).
        planning = asyncio.ensure_future(asyncio.to_thread(self._snapshots.run, work))
        planning.add_done_callback(self._planned)
        # A caller cancelled meanwhile leaves it: the thread goes on to the end, and until then no
        # other plan starts.
        return await asyncio.shield(planning)

    def _planned(self, planning: asyncio.Future[Any]) -> None:
        self._plan_turn.release()
        if not planning.cancelled():
            planning.exception()  # retrieved here too: a caller cancelled meanwhile no longer asks

    async def _begin(self, holder: object) -> None:
        await self._write_lock.acquire()
        try:
            self._checkpoints.keep_log_short(self._restart_log)
            self._begin_immediate()
            self.lock_held.take()
            self._purge_expired_messages()
        except BaseException:
            if self._writer.in_transaction:
                self._writer.execute("ROLLBACK")
            self.lock_held.release()
            self._write_lock.release()
            raise
        self._holder = holder

    def _begin_immediate(self) -> None:
        """BEGIN IMMEDIATE. When another process holds the write lock, it is told that this one
        waits (lock_waits.py: its bulk batch may be in the background) before waiting, up to
        busy_timeout, as before."""
        writer = self._writer
        writer.execute("PRAGMA busy_timeout=0")
        try:
            writer.execute("BEGIN IMMEDIATE")
            return
        except sqlite3.OperationalError as exc:
            if exc.sqlite_errorcode != sqlite3.SQLITE_BUSY:
                raise
            self._last_contended = time.monotonic()
            self._waits.announce()
        finally:
            writer.execute(f"PRAGMA busy_timeout={BUSY_TIMEOUT_MS}")
        writer.execute("BEGIN IMMEDIATE")

    async def _end(self, holder: object, statement: str) -> None:
        if self._holder is not holder:
            return
        try:
            self._writer.execute(statement)
        except BaseException:
            if self._writer.in_transaction:  # a COMMIT that failed leaves the transaction open
                self._writer.execute("ROLLBACK")
            raise
        finally:
            self.lock_held.release()
            self._holder = None
            self._write_lock.release()
            self.written.release()  # what this unit's writes pushed out of the kept documents, freed unlocked
        if statement == "COMMIT":  # a bulk group's commit runs in the background class (commit_groups.py)
            self._checkpoints.committed(bulk=self._thread.scheduling.in_background)

    async def _abandon(self, holder: object) -> None:
        await self._end(holder, "ROLLBACK")

    async def run_in_transaction(self, work: Callable[[StoreTransaction], Awaitable[T]]) -> T:
        if self._in_batch.get():
            # The unit of work (its SQL and whatever it computes in between) runs on the writer thread.
            return await (self._unit(work) if self._thread.here else self._thread.run(self._unit(work)))
        return await self.run_batch(lambda: self.run_in_transaction(work))

    async def _unit(self, work: Callable[[StoreTransaction], Awaitable[T]]) -> T:
        """Inside a batch each unit of work is a savepoint: it rolls back alone, commits with the batch."""
        tx = SQLiteTransaction(
            self._writer, erased=self.decoded.forget, written=self.written, page_bytes=self._page_bytes
        )
        self._writer.execute("SAVEPOINT unit")
        try:
            result = await work(tx)
        except BaseException:
            self._writer.execute("ROLLBACK TO unit")
            self._writer.execute("RELEASE unit")
            raise
        self._writer.execute("RELEASE unit")
        return result

    def _purge_expired_messages(self) -> None:
        if time.monotonic() - self._last_purge < _PURGE_EVERY_SECONDS:
            return
        self._last_purge = time.monotonic()
        key_purge.purge(self._writer, now())

    # -- reads -------------------------------------------------------------------------------
    async def _by_keys(self, lookups: int, scan: Callable[[sqlite3.Connection], T]) -> T:
        """`scan`'s `lookups` reads by key: a few on the loop's own connection (less than the loop turn a
        hop would wait for), more on a reader thread, where reads arriving meanwhile do not wait for them."""
        if lookups <= FEW_ON_THE_LOOP and not self._thread.here:
            return scan(self._reader)
        return await self._reads.read(scan)

    async def get_profile(self, profile_id: str) -> Profile | None:
        row = self._reader.execute("SELECT doc FROM profiles WHERE id = ?", (profile_id,)).fetchone()
        if row is None:
            self.decoded.forget((profile_id,))
            return None
        return self.decoded.decode(profile_id, row[0])

    async def get_profiles(self, profile_ids: Collection[str]) -> dict[str, Profile]:
        ids, decoded, current = list(dict.fromkeys(profile_ids)), self.decoded, dict[str, Profile]()
        if not self._thread.here:  # nothing committed since their revisions were read: as kept
            current = decoded.confirmed_since(ids, self._commits.quiet_from())
            if len(current) == len(ids):
                return current
            ids = [i for i in ids if i not in current]

        def scan(db: sqlite3.Connection) -> dict[str, Profile]:
            found = dict[str, Profile]()
            for chunk in id_chunks(ids, size=IDS_PER_QUERY // 2):  # two parameters an id
                asked = [v for pair in decoded.revisions_of(chunk) for v in pair]
                read = decoded.ticket()  # before the statement: it dates the revisions it finds
                rows = db.execute(profile_revisions.documents_unless_kept(len(chunk)), asked).fetchall()
                kept = decoded.kept_at(
                    ((profile_id, revision) for profile_id, revision, doc in rows if doc is None), read=read
                )
                found.update(kept)
                for profile_id, revision, doc in rows:
                    at = read
                    if doc is None:
                        if profile_id in kept:
                            continue
                        # Not stored, or let go of since the query was made: its document, if any.
                        at = decoded.ticket()
                        row = db.execute(profile_revisions.DOCUMENT, (profile_id,)).fetchone()
                        if row is None:
                            continue
                        doc, revision = row
                    found[profile_id] = decoded.decode(profile_id, doc, revision, read=at)
            if len(found) < len(ids):
                decoded.forget(i for i in ids if i not in found)
            return found

        return current | await self._by_keys(len(ids), scan)  # many documents to decode go to a reader thread

    async def find_profile_by_identity(self, key: str) -> Profile | None:
        row = self._reader.execute(
            "SELECT p.id, p.doc FROM identities i JOIN profiles p ON p.id = i.profile_id WHERE i.key = ?", (key,)
        ).fetchone()
        return self.decoded.decode(row[0], row[1]) if row else None

    async def list_profiles(
        self,
        query: ProfileFilter,
        *,
        after: str | None,
        limit: int,
        before: str | None = None,
        from_end: bool = False,
    ) -> list[Profile]:
        def scan(db: sqlite3.Connection) -> list[Profile]:
            listed = profile_filter.chosen_statement(db, query)
            clause, params = listed.where, list(listed.params)
            for bound, value in ((">", after), ("<", before)):
                if value is not None:
                    clause += f" AND {listed.key} {bound} ?"
                    params.append(value)
            # A profile's document is read once its facets matched (CROSS JOIN keeps that order), and
            # once per profile where the driver's rows repeat one.
            grouped = f" GROUP BY {listed.key}" if listed.repeats else ""
            rows = db.execute(
                f"SELECT p.id, p.doc FROM {listed.source} CROSS JOIN profiles p ON p.id = f.profile_id "
                f"WHERE {clause}{grouped} ORDER BY {listed.key} {'DESC' if from_end else ''} LIMIT ?",
                [*params, limit],
            ).fetchall()
            return [self.decoded.decode(*row) for row in (reversed(rows) if from_end else rows)]

        return await self._scans.read(scan)  # a scan: on a reader thread

    async def count_profiles(self, query: ProfileFilter | None = None) -> int:
        def scan(db: sqlite3.Connection) -> int:
            counted = profile_filter.chosen_statement(db, query or ProfileFilter())
            what = f"count(DISTINCT {counted.key})" if counted.repeats else "count(*)"
            row = db.execute(f"SELECT {what} FROM {counted.source} WHERE {counted.where}", counted.params).fetchone()
            return int(row[0])

        return await self._scans.read(scan)  # a scan: on a reader thread

    async def list_interactions(
        self,
        profile_id: str,
        *,
        before: InteractionPosition | None,
        where: InteractionFilter,
        limit: int,
        after: InteractionPosition | None = None,
        from_end: bool = False,
    ) -> list[Interaction]:
        page, shared = _history_page("doc", before=before, after=after, where=where, from_end=from_end)

        def scan(db: sqlite3.Connection) -> list[Interaction]:
            rows = db.execute(page, [profile_id, *shared, limit]).fetchall()
            return [Interaction.model_validate(loads(row[0])) for row in (reversed(rows) if from_end else rows)]

        return await self._reads.read(scan)  # a scan: on a reader thread

    async def count_interactions(self, profile_ids: Collection[str], where: InteractionFilter) -> dict[str, int]:
        filters, shared = _history_filters(where)

        def scan(db: sqlite3.Connection) -> dict[str, int]:
            found = dict.fromkeys(profile_ids, 0)
            for chunk in id_chunks(profile_ids):
                rows = db.execute(
                    f"SELECT profile_id, count(*) FROM history WHERE profile_id IN ({','.join('?' * len(chunk))}) "
                    f"{filters} GROUP BY profile_id",
                    [*chunk, *shared],
                )
                found |= {profile_id: int(count) for profile_id, count in rows}
            return found

        return await self._reads.read(scan)  # each profile's range of the primary key: on a reader thread

    async def interactions_since(
        self, profile_ids: Collection[str], since: datetime, where: InteractionFilter
    ) -> dict[str, list[Interaction]]:
        filters, shared = _history_filters(where)

        def scan(db: sqlite3.Connection) -> dict[str, list[Interaction]]:
            found = dict[str, list[Interaction]]()
            for chunk in id_chunks(profile_ids):
                rows = db.execute(
                    f"SELECT profile_id, doc FROM history WHERE profile_id IN ({','.join('?' * len(chunk))}) "
                    f"AND ts >= ? {filters}",
                    [*chunk, to_iso(since), *shared],
                )
                for profile_id, doc in rows:
                    found.setdefault(profile_id, []).append(Interaction.model_validate(loads(doc)))
            return found

        return await self._reads.read(scan)  # a scan: on a reader thread

    async def message_profiles(self, message_ids: Collection[str]) -> dict[str, str]:
        statement = "SELECT message_id, profile_id FROM processed_messages WHERE message_id IN ({marks})"
        return dict(await self._reads.read(lambda db: selected(db, statement, message_ids)))

    async def count_products(self) -> int:
        return int(self._reader.execute("SELECT count(*) FROM products").fetchone()[0])

    async def get_products(self, product_ids: Sequence[str]) -> list[Product]:
        return await self._reads.read(lambda db: products_in(db, product_ids))  # a scan: on a reader thread

    async def best_sellers(self, category: str | None, *, limit: int) -> list[Product]:
        def scan(db: sqlite3.Connection) -> list[Product]:
            clause, params = "json_extract(doc, '$.stock') > 0", []
            if category is not None:
                clause += " AND json_extract(doc, '$.category') = ?"
                params.append(category)
            rows = db.execute(
                f"SELECT doc FROM products WHERE {clause} "
                "ORDER BY coalesce(json_extract(doc, '$.sales'), 0) DESC, id LIMIT ?",
                [*params, limit],
            )
            return [Product.model_validate(loads(row[0])) for row in rows]

        return await self._scans.read(scan)  # a scan: on a reader thread

    async def set_product_signals(self, signals: dict[str, tuple[int, list[CoPurchase]]]) -> None:
        rows = [
            (sales, dumps([link.model_dump(by_alias=True) for link in links]), product_id)
            for product_id, (sales, links) in signals.items()
        ]

        def write() -> None:  # the whole catalogue: on the writer thread
            self._writer.execute("UPDATE products SET doc = json_set(doc, '$.sales', 0, '$.alsoBought', json('[]'))")
            self._writer.executemany(
                "UPDATE products SET doc = json_set(doc, '$.sales', ?, '$.alsoBought', json(?)) WHERE id = ?", rows
            )

        async with self.batch():
            await self._thread.call(write)

    # -- fuzzy matching ----------------------------------------------------------------------
    async def profiles_sharing_keys(self, keys: Sequence[str], *, max_block: int, limit: int) -> list[MatchView]:
        def scan(db: sqlite3.Connection) -> list[MatchView]:
            if not keys:
                return []
            usable, params = _usable_keys(keys, max_block)
            rows = db.execute(  # a live profile's own row (match_rows.py), not its whole document
                f"{usable}SELECT doc FROM match_rows WHERE profile_id IN (SELECT profile_id FROM blocking_keys "
                "WHERE key IN (SELECT key FROM usable)) ORDER BY profile_id LIMIT ?",
                [*params, limit],
            ).fetchall()
            return [match_rows.view(row[0]) for row in rows]

        # A scan: on a reader thread, where it overlaps the loop's other work. On the loop's own
        # connection (~9 us a view) one lookup after another ran 11-15% faster in process, but under
        # a mixed load (one server process on one core; wrk asking mergeCandidates on two connections
        # and profile(id) every 5 ms on two more) the profile reads' p99 rose from 5.26 to 7.96 ms
        # (medians of three 20 s rounds, rotated with the code without it).
        return await self._reads.read(scan)

    async def profile_ids_sharing_keys(self, keys: Sequence[str], *, max_block: int, limit: int) -> list[str]:
        def scan(db: sqlite3.Connection) -> list[str]:
            if not keys:
                return []
            usable, params = _usable_keys(keys, max_block)
            rows = db.execute(
                f"{usable}SELECT DISTINCT profile_id FROM blocking_keys WHERE key IN (SELECT key FROM usable) "
                "ORDER BY profile_id LIMIT ?",
                [*params, limit],
            ).fetchall()
            return [row[0] for row in rows]

        # At most max_block ids a key: a sole namesake's confirmation (one key, two ids) is read on the
        # loop's own connection, a lookup's keys (a link's too) on a reader thread. A link's keys read
        # on the loop (up to 300 ids, 45-57 us each) made one lookup after another faster in process,
        # but under the mixed load of `profiles_sharing_keys` the profile reads' p99 read 6.16 ms
        # against 4.68 ms on a thread, and the lookups' own 26.4 against 21.2 ms (medians of six
        # rounds alternated).
        return await self._by_keys(len(keys) * max_block, scan)

    async def match_views(self, profile_ids: Sequence[str]) -> list[MatchView]:
        def scan(db: sqlite3.Connection) -> list[MatchView]:
            found: list[MatchView] = []
            for chunk in id_chunks(profile_ids):
                rows = db.execute(  # rows of live profiles only (match_rows.py)
                    f"SELECT doc FROM match_rows WHERE profile_id IN ({','.join('?' * len(chunk))})", chunk
                ).fetchall()
                found += [match_rows.view(row[0]) for row in rows]
            return found

        return await self._by_keys(len(profile_ids), scan)

    async def blocking_groups(self) -> AsyncIterator[tuple[str, list[str]]]:
        # Read in pages by key so that no call holds the event loop (or a read snapshot) for long.
        after = ""
        while True:

            def page(db: sqlite3.Connection, after: str = after) -> list[tuple[str, list[str]]]:
                rows = db.execute(
                    "SELECT key, json_group_array(profile_id) FROM blocking_keys WHERE key > ? "
                    "GROUP BY key HAVING count(*) > 1 ORDER BY key LIMIT ?",
                    (after, _GROUPS_PER_QUERY),
                ).fetchall()
                return [(key, sorted(loads(members))) for key, members in rows]

            groups = await self._scans.read(page)  # a scan, page by page: on a reader thread
            for group in groups:
                yield group
            if len(groups) < _GROUPS_PER_QUERY:
                return
            after = groups[-1][0]

    async def key_counts(self, prefix: str) -> dict[str, int]:
        def scan(db: sqlite3.Connection) -> dict[str, int]:
            # The keys' primary key (key, profile_id) is read over the prefix's range only.
            rows = db.execute(
                "SELECT key, count(*) FROM blocking_keys WHERE key >= ? AND key < ? GROUP BY key",
                (prefix, prefix + "\U0010ffff"),
            ).fetchall()
            return {key: count for key, count in rows}

        return await self._scans.read(scan)

    async def insert_api_key(self, key: ApiKey) -> None:
        async with self.batch():
            self._writer.execute("INSERT INTO api_keys (id, doc) VALUES (?, ?)", (key.id, dumps(key.to_document())))

    async def get_api_key(self, key_id: str) -> ApiKey | None:
        row = self._reader.execute("SELECT doc FROM api_keys WHERE id = ?", (key_id,)).fetchone()
        return ApiKey.model_validate(loads(row[0])) if row else None

    async def list_api_keys(self) -> list[ApiKey]:
        def scan(db: sqlite3.Connection) -> list[ApiKey]:
            return [ApiKey.model_validate(loads(row[0])) for row in db.execute("SELECT doc FROM api_keys ORDER BY id")]

        return await self._reads.read(scan)  # every key: on a reader thread

    async def revoke_api_key(self, key_id: str, at: datetime) -> bool:
        async with self.batch():
            row = self._writer.execute("SELECT doc FROM api_keys WHERE id = ?", (key_id,)).fetchone()
            if row is None or ApiKey.model_validate(loads(row[0])).revoked_at is not None:
                return False
            document = loads(row[0]) | {"revokedAt": at}
            self._writer.execute("UPDATE api_keys SET doc = ? WHERE id = ?", (dumps(document), key_id))
            return True

    async def api_keys_version(self) -> int:
        # Read on every authenticated request: one row on the loop's own connection (a few microseconds),
        # where a hop to a reader thread would wait for a loop turn.
        return int(self._reader.execute("SELECT n FROM api_keys_version").fetchone()[0])

    async def consent_history(self, profile_ids: Sequence[str], *, limit: int | None = None) -> list[ConsentDecision]:
        def scan(db: sqlite3.Connection) -> list[ConsentDecision]:
            if not profile_ids:
                return []
            marks = ",".join("?" * len(profile_ids))
            if limit is None:
                sql = f"SELECT doc FROM consent_log WHERE profile_id IN ({marks}) ORDER BY {_CONSENT_ORDER}"
                rows = db.execute(sql, list(profile_ids)).fetchall()
            else:  # each profile's newest, found on its index (profile_id, at) before any document is read
                sql = (
                    "SELECT doc FROM consent_log WHERE rowid IN (SELECT r FROM (SELECT rowid AS r, ROW_NUMBER() "
                    f"OVER (PARTITION BY profile_id ORDER BY {_CONSENT_ORDER}) AS n FROM consent_log "
                    f"WHERE profile_id IN ({marks})) WHERE n <= ?) ORDER BY {_CONSENT_ORDER}"
                )
                rows = db.execute(sql, [*profile_ids, limit]).fetchall()
            return [ConsentDecision.model_validate(loads(row[0])) for row in rows]

        return await self._reads.read(scan)  # a scan: on a reader thread

    async def consent_refusals(self) -> list[ConsentDecision]:
        def scan(db: sqlite3.Connection) -> list[ConsentDecision]:
            sql = "SELECT doc FROM consent_log WHERE NOT json_extract(doc, '$.granted') ORDER BY at, rowid"
            return [ConsentDecision.model_validate(loads(row[0])) for row in db.execute(sql)]

        return await self._reads.read(scan)

    async def save_segment(self, segment: Segment) -> None:
        async with self.batch():
            self._writer.execute(
                "INSERT INTO segments (id, doc) VALUES (?, ?) ON CONFLICT(id) DO UPDATE SET doc = excluded.doc",
                (segment.id, dumps(segment.model_dump(by_alias=True))),
            )

    async def mark_evaluated(self, segment: Segment, *, evaluated_at: datetime) -> bool:
        async with self.batch():
            marked = self._writer.execute(
                "UPDATE segments SET doc = json_set(doc, '$.evaluatedAt', ?) "
                "WHERE id = ? AND json_extract(doc, '$.updatedAt') = ? AND json_extract(doc, '$.revision') IS ?",
                (to_iso(evaluated_at), segment.id, to_iso(segment.updated_at), segment.revision),
            )
            return marked.rowcount == 1

    async def get_segment(self, segment_id: str) -> Segment | None:
        row = self._reader.execute("SELECT doc FROM segments WHERE id = ?", (segment_id,)).fetchone()
        return Segment.model_validate(loads(row[0])) if row else None

    async def list_segments(self) -> list[Segment]:
        # A few rows, read after every profile change (segment upkeep): on the loop's own connection,
        # where a reader thread's hop would cost more than the read, and a turn of a busy loop.
        rows = self._reader.execute("SELECT doc FROM segments ORDER BY id")
        return [Segment.model_validate(loads(r[0])) for r in rows]

    async def delete_segment(self, segment_id: str) -> None:
        async with self.batch():
            self._writer.execute("DELETE FROM segments WHERE id = ?", (segment_id,))
            self._writer.execute("DELETE FROM segment_checks WHERE segment_id = ?", (segment_id,))

    async def matching_versions(self, tree: Condition, *, now: datetime) -> dict[str, int]:
        def scan(db: sqlite3.Connection) -> dict[str, int]:
            clause, params = segment_where(tree, now=now)
            return dict(db.execute(f"SELECT p.id, p.version FROM profiles p WHERE {clause} ORDER BY p.id", params))

        return await self._scans.read(scan)  # a scan: on a reader thread

    async def member_ids(self, segment_id: str) -> list[str]:
        return list(await self.member_versions(segment_id))

    async def member_versions(self, segment_id: str) -> dict[str, int]:
        def scan(db: sqlite3.Connection) -> dict[str, int]:
            rows = db.execute(
                "SELECT sm.profile_id, p.version FROM segment_members sm "
                "JOIN profile_facets f ON f.profile_id = sm.profile_id JOIN profiles p ON p.id = sm.profile_id "
                "WHERE sm.segment_id = ? ORDER BY sm.profile_id",
                (segment_id,),
            )
            return dict(rows)

        return await self._scans.read(scan)  # a scan: on a reader thread

    async def count_members(self, segment_id: str) -> int:
        def scan(db: sqlite3.Connection) -> int:
            row = db.execute(
                "SELECT count(*) FROM segment_members sm JOIN profile_facets f ON f.profile_id = sm.profile_id "
                "WHERE sm.segment_id = ?",
                (segment_id,),
            ).fetchone()
            return int(row[0])

        return await self._scans.read(scan)  # a scan: on a reader thread

    async def segment_events(
        self,
        *,
        segment_id: str | None = None,
        profile_id: str | None = None,
        limit: int,
        before: str | None = None,
        profile_ids: Sequence[str] | None = None,
    ) -> list[SegmentEvent]:
        def scan(db: sqlite3.Connection) -> list[SegmentEvent]:
            clauses, params = ["1 = 1"], []
            for column, value in (("segment_id", segment_id), ("profile_id", profile_id)):
                if value is not None:
                    clauses.append(f"{column} = ?")
                    params.append(value)
            if profile_ids is not None:
                clauses.append(f"profile_id IN ({','.join('?' * len(profile_ids))})")
                params += profile_ids
            if before is not None:  # after it in the list's order (at, then the order of insertion)
                place = db.execute("SELECT at, rowid FROM segment_events WHERE id = ?", (before,)).fetchone()
                if place is not None:
                    clauses.append("(at < ? OR (at = ? AND rowid < ?))")
                    params += [place[0], place[0], place[1]]
                elif is_event_id(before):  # deleted since: the events made before it
                    clauses.append("id < ?")
                    params.append(before)
                else:
                    raise InvalidInput(f"no segment event {before}", field="before")
            rows = db.execute(
                f"SELECT doc FROM segment_events WHERE {' AND '.join(clauses)} ORDER BY at DESC, rowid DESC LIMIT ?",
                [*params, limit],
            )
            return [SegmentEvent.model_validate(loads(r[0])) for r in rows]

        return await self._reads.read(scan)  # a scan: on a reader thread

    async def pending_writes(self, profile_ids: Collection[str]) -> dict[str, int]:
        ids = list(profile_ids)

        def scan(db: sqlite3.Connection) -> dict[str, int]:
            found = dict[str, int]()
            for chunk in id_chunks(ids):
                rows = db.execute(
                    f"SELECT profile_id, writes FROM segment_checks WHERE segment_id = ? "
                    f"AND profile_id IN ({','.join('?' * len(chunk))})",
                    [EVERY_SEGMENT, *chunk],
                )
                found |= dict(rows.fetchall())
            return found

        # A batch's upkeep asks for its 1,000 profiles: 0.7-1.2 ms of lookups, which held the loop.
        return await self._by_keys(len(ids), scan)

    async def due_checks(self, now: datetime, *, limit: int) -> list[tuple[str, str]]:
        rows = self._reader.execute(
            "SELECT profile_id, segment_id FROM segment_checks WHERE due_at <= ? ORDER BY due_at LIMIT ?",
            (to_iso(now), limit),
        )
        return [(r[0], r[1]) for r in rows]

    def watch_segment_events(
        self, resume_token: str | None, *, committed_here: asyncio.Event | None = None
    ) -> AsyncIterator[tuple[str, SegmentEvent]]:
        # Every process follows the committed rows; its own commits wake it before the next poll.
        return segment_feed.follow(self.path, resume_token, wake=committed_here)

    async def next_check_at(self) -> datetime | None:
        row = self._reader.execute("SELECT min(due_at) FROM segment_checks").fetchone()
        return datetime.fromisoformat(row[0]) if row and row[0] else None

    async def erasures(self, *, limit: int) -> list[Erasure]:
        def scan(db: sqlite3.Connection) -> list[Erasure]:
            rows = db.execute("SELECT doc FROM erasures ORDER BY at DESC LIMIT ?", (limit,)).fetchall()
            return [Erasure.model_validate(loads(row[0])) for row in rows]

        return await self._reads.read(scan)  # a scan: on a reader thread

    async def suppression_list(self) -> dict[str, datetime]:
        def scan(db: sqlite3.Connection) -> dict[str, datetime]:
            rows = db.execute("SELECT hash, at FROM suppressions").fetchall()
            return {digest: datetime.fromisoformat(at) for digest, at in rows}

        return await self._reads.read(scan)

    async def identity_owners(self, *, after: str | None, limit: int) -> list[tuple[str, str]]:
        def scan(db: sqlite3.Connection) -> list[tuple[str, str]]:
            rows = db.execute(
                "SELECT key, profile_id FROM identities WHERE key > ? ORDER BY key LIMIT ?", (after or "", limit)
            )
            return [(key, profile_id) for key, profile_id in rows.fetchall()]

        return await self._reads.read(scan)

    async def feed_position(self) -> str | None:
        return str(segment_feed.newest(self._reader))

    async def forget_segment_events(self, *, now: datetime) -> int:
        if self._reader.execute(_ANY_TO_FORGET, (to_iso(now),)).fetchone() is None:
            return 0  # asked every 10 s by every worker: the write lock only when there is something
        async with self.batch():
            forgotten = self._writer.execute(_FORGET_EVENTS, (to_iso(now),)).rowcount
            if forgotten:  # secure_delete zeroed the rows' pages; the log's older frames wait for the wipe
                self._writer.execute(WRITE_META, (WIPE_OWED, uuid.uuid4().hex))
            return forgotten

    async def old_segment_changes(
        self, *, before: datetime, after: tuple[datetime, str] | None, limit: int
    ) -> list[SegmentEvent]:
        def scan(db: sqlite3.Connection) -> list[SegmentEvent]:
            if after is None:
                rows = db.execute(_OLD_CHANGES.format(past=""), (to_iso(before), limit))
            else:
                at = to_iso(after[0])
                rows = db.execute(_OLD_CHANGES.format(past=_PAST), (to_iso(before), at, at, after[1], limit))
            return [SegmentEvent.model_validate(loads(doc)) for (doc,) in rows]

        return await self._scans.read(scan)  # a walk of the history: on the background reader

    async def delete_segment_events(self, event_ids: Collection[str]) -> int:
        async def delete() -> int:
            deleted = 0
            for chunk in id_chunks(event_ids):
                marks = ",".join("?" * len(chunk))
                deleted += self._writer.execute(f"DELETE FROM segment_events WHERE id IN ({marks})", chunk).rowcount
            return deleted

        async with self.batch():
            return await self._thread.run(delete())

    async def wipe_owed(self) -> bool:
        return self._reader.execute("SELECT 1 FROM meta WHERE key = ?", (WIPE_OWED,)).fetchone() is not None

    async def wipe_deleted(self) -> bool:
        # The write-ahead log still holds the pages as they were before the delete until a checkpoint
        # copies the new ones into the database file; TRUNCATE then empties the log file. Until then
        # the erasure's mark stays, and the server's schedule asks again (privacy.keep_wiping).
        busy = await self._thread.run(self._wipe())
        if busy:  # a reader, in another process, held the log past busy_timeout
            log.warning("write-ahead log not emptied after an erasure: another connection was reading; retried")
        return not busy

    async def _wipe(self) -> bool:
        # On the writer's loop, as every holder of the write lock: an asyncio lock belongs to one loop
        # (taken on the caller's, it failed, or woke a waiter of the other loop, when a batch held it).
        async with self._write_lock:
            writer = self._writer
            owed = writer.execute("SELECT value FROM meta WHERE key = ?", (WIPE_OWED,)).fetchone()
            # It holds the write lock: waiting long for a reader elsewhere would stall every write here,
            # every round of the schedule while the reader lasts. Held off, it is asked again.
            busy = self._checkpoints.exclusive(lambda: self._checkpoint_on_writer("TRUNCATE", WIPE_WAIT_MS))
            if not busy and owed is not None:  # an erasure committed meanwhile keeps its own mark
                writer.execute("DELETE FROM meta WHERE key = ? AND value = ?", (WIPE_OWED, owed[0]))
                self._checkpoints.committed()
            return bool(busy)

    def _checkpoint_on_writer(self, mode: str, wait_ms: int) -> bool:
        return checkpoint_waiting(self._writer, mode, wait_ms=wait_ms, then_ms=BUSY_TIMEOUT_MS)

    def _restart_log(self, wait_ms: int) -> bool:
        return restart_after_copying(self._writer, wait_ms=wait_ms, then_ms=BUSY_TIMEOUT_MS)

    async def read_meta(self, key: str) -> str | None:
        row = self._reader.execute("SELECT value FROM meta WHERE key = ?", (key,)).fetchone()
        return str(row[0]) if row else None

    async def write_meta(self, key: str, value: str) -> None:
        async with self.batch():
            self._writer.execute(WRITE_META, (key, value))

    async def take_lease(self, name: str, holder: str, *, now: datetime, until: datetime) -> bool:
        key = f"lease:{name}"
        async with self.batch():  # read and written under the write lock, which other processes share
            row = self._writer.execute("SELECT value FROM meta WHERE key = ?", (key,)).fetchone()
            held = loads(row[0]) if row else None
            if held is not None and held["holder"] != holder and held["until"] > to_iso(now):
                return False
            self._writer.execute(WRITE_META, (key, dumps({"holder": holder, "until": until})))
            return True

    async def end_lease(self, name: str, holder: str) -> None:
        async with self.batch():
            self._writer.execute(
                "DELETE FROM meta WHERE key = ? AND json_extract(value, '$.holder') = ?", (f"lease:{name}", holder)
            )

    async def setdefault_meta(self, key: str, value: str) -> str:
        async with self.batch():
            self._writer.execute(
                "INSERT INTO meta (key, value) VALUES (?, ?) ON CONFLICT(key) DO NOTHING", (key, value)
            )
            return str(self._writer.execute("SELECT value FROM meta WHERE key = ?", (key,)).fetchone()[0])

    async def merges_of(self, profile_id: str) -> list[MergeRecord]:
        return merges_of(self._reader, profile_id)

    async def refusals_of(self, profile_id: str) -> list[MergeRefusal]:
        return refusals_of(self._reader, profile_id)

    # -- one read for the same question about many parents (GraphQL loaders) ------------------------
    async def get_segments(self, segment_ids: Collection[str]) -> dict[str, Segment]:
        def scan(db: sqlite3.Connection) -> dict[str, Segment]:
            found: dict[str, Segment] = {}
            for chunk in id_chunks(segment_ids):
                rows = db.execute(f"SELECT id, doc FROM segments WHERE id IN ({','.join('?' * len(chunk))})", chunk)
                found |= {row[0]: Segment.model_validate(loads(row[1])) for row in rows}
            return found

        return await self._reads.read(scan)  # many documents to decode: on a reader thread

    async def merges_of_profiles(self, profile_ids: Collection[str]) -> dict[str, list[MergeRecord]]:
        sql = (
            "SELECT mm.profile_id, m.doc FROM merge_members mm JOIN merges m ON m.id = mm.merge_id "
            "WHERE mm.profile_id IN ({})"
        )
        return await self._records_by_profile(sql, profile_ids, MergeRecord.from_document)

    async def refusals_of_profiles(self, profile_ids: Collection[str]) -> dict[str, list[MergeRefusal]]:
        sql = (
            "SELECT rm.profile_id, r.doc FROM merge_refusal_members rm JOIN merge_refusals r "
            "ON r.id = rm.refusal_id WHERE rm.profile_id IN ({})"
        )
        return await self._records_by_profile(sql, profile_ids, MergeRefusal.model_validate)

    async def _records_by_profile(
        self, sql: str, profile_ids: Collection[str], load: Callable[[Any], R]
    ) -> dict[str, list[R]]:
        """Each profile's merge records or refusals (`sql`: profile id and document for the ids in its
        `{}`), oldest first, in one statement per chunk of ids."""

        def scan(db: sqlite3.Connection) -> dict[str, list[R]]:
            found: dict[str, list[R]] = {profile_id: [] for profile_id in profile_ids}
            for chunk in id_chunks(profile_ids):
                for profile_id, doc in db.execute(sql.format(",".join("?" * len(chunk))), chunk):
                    found[profile_id].append(load(loads(doc)))
            return {p: sorted(records, key=lambda r: (r.at, r.id)) for p, records in found.items()}

        return await self._reads.read(scan)  # a scan: on a reader thread

    async def member_counts(self, segment_ids: Collection[str]) -> dict[str, int]:
        def scan(db: sqlite3.Connection) -> dict[str, int]:
            found = dict.fromkeys(segment_ids, 0)
            for chunk in id_chunks(segment_ids):
                rows = db.execute(
                    "SELECT sm.segment_id, count(*) FROM segment_members sm "
                    "JOIN profile_facets f ON f.profile_id = sm.profile_id "
                    f"WHERE sm.segment_id IN ({','.join('?' * len(chunk))}) GROUP BY sm.segment_id",
                    chunk,
                )
                found |= {segment_id: int(count) for segment_id, count in rows}
            return found

        return await self._scans.read(scan)  # a scan: on a reader thread

    async def segment_entries(self, profile_ids: Collection[str]) -> dict[str, dict[str, datetime]]:
        def scan(db: sqlite3.Connection) -> dict[str, dict[str, datetime]]:
            found: dict[str, dict[str, datetime]] = {profile_id: {} for profile_id in profile_ids}
            for chunk in id_chunks(profile_ids):
                rows = db.execute(
                    "SELECT profile_id, segment_id, max(at) FROM segment_events "
                    f"WHERE profile_id IN ({','.join('?' * len(chunk))}) AND json_extract(doc, '$.change') = ? "
                    "GROUP BY profile_id, segment_id",
                    [*chunk, MembershipChange.ENTERED.value],
                )
                for profile_id, segment_id, at in rows:  # `at` is to_iso's form: its string order is time order
                    found[profile_id][segment_id] = datetime.fromisoformat(at)
            return found

        return await self._reads.read(scan)  # a scan: on a reader thread

    async def members_of_segments(
        self,
        segment_ids: Collection[str],
        *,
        after: str | None,
        limit: int,
        before: str | None = None,
        from_end: bool = False,
    ) -> dict[str, list[Profile]]:
        # One page per segment, each walking that segment's members in id order and stopping at `limit`
        # (a window over all members would read every member of a large segment), joined in one statement.
        bounds = [(bound, value) for bound, value in ((">", after), ("<", before)) if value is not None]
        bound_clause = "".join(f" AND sm.profile_id {bound} ?" for bound, _ in bounds)
        page = (
            "SELECT * FROM (SELECT sm.segment_id, p.id, p.doc FROM segment_members sm JOIN profiles p "
            f"ON p.id = sm.profile_id WHERE sm.segment_id = ? AND p.merged_into IS NULL{bound_clause} "
            f"ORDER BY sm.profile_id {'DESC' if from_end else ''} LIMIT ?)"
        )

        def scan(db: sqlite3.Connection) -> dict[str, list[Profile]]:
            found: dict[str, list[Profile]] = {segment_id: [] for segment_id in segment_ids}
            for chunk in id_chunks(segment_ids, size=_PAGES_PER_QUERY):
                params = [v for s in chunk for v in (s, *(value for _, value in bounds), limit)]
                for segment_id, profile_id, doc in db.execute(" UNION ALL ".join([page] * len(chunk)), params):
                    found[segment_id].append(self.decoded.decode(profile_id, doc))
            if from_end:
                found = {segment_id: members[::-1] for segment_id, members in found.items()}
            return found

        return await self._reads.read(scan)  # many documents to decode: on a reader thread

    async def interactions_of_profiles(
        self,
        profile_ids: Collection[str],
        *,
        before: InteractionPosition | None,
        where: InteractionFilter,
        limit: int,
        after: InteractionPosition | None = None,
        from_end: bool = False,
    ) -> dict[str, list[Interaction]]:
        # `list_interactions` for each profile, each an index range cut at `limit`, joined in one statement.
        one, shared = _history_page("profile_id, doc", before=before, after=after, where=where, from_end=from_end)
        page = f"SELECT * FROM ({one})"

        def scan(db: sqlite3.Connection) -> dict[str, list[Interaction]]:
            found: dict[str, list[Interaction]] = {profile_id: [] for profile_id in profile_ids}
            for chunk in id_chunks(profile_ids, size=_PAGES_PER_QUERY):
                params = [v for p in chunk for v in (p, *shared, limit)]
                for profile_id, doc in db.execute(" UNION ALL ".join([page] * len(chunk)), params):
                    found[profile_id].append(Interaction.model_validate(loads(doc)))
            if from_end:
                found = {profile_id: history[::-1] for profile_id, history in found.items()}
            return found

        return await self._reads.read(scan)  # a scan: on a reader thread


def _history_page(
    columns: str,
    *,
    before: InteractionPosition | None,
    after: InteractionPosition | None,
    where: InteractionFilter,
    from_end: bool,
) -> tuple[str, list[Any]]:
    """The statement of one page of a profile's history, selecting `columns`, and the parameters of its
    filters: it takes the profile id first, those, then the page's limit. Newest first; with `from_end`
    oldest first (the oldest of the range: the caller turns them round)."""
    sql, params = [f"SELECT {columns} FROM history WHERE profile_id = ?"], list[Any]()
    for bound, position in (("<", before), (">", after)):
        if position is not None:
            sql.append(f"AND (ts, message_id) {bound} (?, ?)")
            params += [to_iso(position.timestamp), position.message_id]
    filters, shared = _history_filters(where)
    sql.append(filters)
    sql.append("ORDER BY ts, message_id LIMIT ?" if from_end else "ORDER BY ts DESC, message_id DESC LIMIT ?")
    return " ".join(sql), params + shared


def _history_filters(where: InteractionFilter) -> tuple[str, list[Any]]:
    """`AND` clauses of an interaction filter, and their parameters."""
    sql, params = list[str](), list[Any]()
    for column, values in (("type", where.types), ("channel", where.channels)):
        if values:
            sql.append(f"AND {column} IN ({','.join('?' * len(values))})")
            params += sorted(values)
    return " ".join(sql), params


def _usable_keys(keys: Sequence[str], max_block: int) -> tuple[str, list[Any]]:
    """A WITH clause naming `usable`: those of `keys` held by at most `max_block` profiles (a larger
    block is passed over), with its parameters. A key is usable when its block has no entry past the
    `max_block`th: each key's look stops there, as the MongoDB store's counts do. Counting whole
    blocks read every entry of the widest: ten keys, two of them held by 200-369 of 100,000
    profiles, took 139 us to sort out, 40 us so."""
    rows = ",".join(["(?)"] * len(keys))
    clause = (
        f"WITH asked(key) AS (VALUES {rows}), usable AS (SELECT key FROM asked WHERE NOT EXISTS "
        "(SELECT 1 FROM blocking_keys AS held WHERE held.key = asked.key LIMIT 1 OFFSET ?)) "
    )
    return clause, [*keys, max_block]
