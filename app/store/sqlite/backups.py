"""Backups of the embedded store as files: taking one while the server runs, checking one, and
putting one in the store's place.

A backup is `VACUUM INTO`: one read transaction, so a consistent snapshot of everything committed
when it began, taken beside writers (WAL) without stopping them; the copy is compact, with no free
pages, so nothing deleted before it (an erased person's old pages) is carried into it. It is written
under a temporary name, checked (`PRAGMA integrity_check`), flushed to disk and only then given its
name: a file with a backup's name is a whole one.

Restoring never happens under an open store (store_users.py) and never loses the store it replaces:
that one is kept beside it under a name saying when. What a restore must also do to the data
(erasures made since the backup) is the services' (app/services/backups.py); the command line puts
the two together.
"""

from __future__ import annotations

import itertools
import os
import re
import shutil
import socket
import sqlite3
import threading
from collections.abc import Callable
from contextlib import closing
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

from app.domain import clock
from app.domain.clock import to_iso
from app.domain.errors import InvalidInput, NotFound, StoreUnavailable
from app.store.sqlite.history_rows import HISTORY
from app.store.sqlite.private_files import create_private
from app.store.sqlite.schema import refuse_newer

BACKUP_TAKEN_AT = "backupTakenAt"  # meta key written into the copy: when its snapshot was taken
STORE_TABLES = {"meta", "profiles", "identities", "interactions", "suppressions", "erasures"}
WAL_FILES = ("-wal", "-shm")
PROGRESS_EVERY_SECONDS = 0.2
STAMP = "%Y%m%dT%H%M%SZ"  # UTC time in file names: kept stores, scheduled backups (they sort by it)
COPYING, MB = "MB copied", 1_000_000

# (stage, done, total): "MB copied" (of at most the source's size), "checking" 0 or 1 of 1.
Progress = Callable[[str, int, int], None]


def silent(stage: str, done: int, total: int) -> None:
    """No progress shown."""


@dataclass(frozen=True, slots=True)
class StoreFile:
    path: Path
    bytes: int
    profiles: int  # live ones: merged-away profiles are not people
    interactions: int
    taken_at: datetime | None  # when the backup's snapshot was taken (None: not a backup)


def back_up(database: Path, destination: Path, progress: Progress = silent) -> StoreFile:
    """Copy the store at `database` to `destination`, a file that must not exist yet."""
    if not database.is_file():
        raise NotFound(f"no store at {database}", field="database")
    if destination.exists():
        raise _taken(destination)
    if not destination.parent.is_dir():
        raise InvalidInput(f"no folder {destination.parent} to write {destination.name} in", field="destination")
    _refuse_foreign(database)
    _remove_left_by_the_dead(destination.parent)
    partial = destination.with_name(f".{destination.name}.{_HOST}-{os.getpid()}-{threading.get_ident()}.partial")
    taken_at = clock.now()
    try:
        _copy(database, partial, progress)
        with closing(sqlite3.connect(partial, isolation_level=None)) as copy:
            copy.execute("INSERT OR REPLACE INTO meta (key, value) VALUES (?, ?)", (BACKUP_TAKEN_AT, to_iso(taken_at)))
        made = _checked(partial, progress)
        _flush(partial)
        _name_new(partial, destination)
        _flush(destination.parent)
    finally:
        _remove(partial)
    return StoreFile(destination, made.bytes, made.profiles, made.interactions, made.taken_at)


# Named by host too: a folder shared by containers or machines holds copies of processes this one
# cannot see, which are never taken for dead ones.
_HOST = re.sub(r"[^A-Za-z0-9]", "_", socket.gethostname())[:64] or "host"
_PARTIAL = re.compile(r"\.(?P<name>.+)\.(?P<host>[A-Za-z0-9_]+)-(?P<pid>\d+)-\d+\.partial\Z")


def _remove_left_by_the_dead(folder: Path) -> None:
    """The unfinished copies a backup killed in this folder left (its `finally` never ran): a copy of
    everyone's data outside any retention, which later backups neither removed nor mentioned. Those of
    processes still running are theirs."""
    for path in folder.glob(".*.partial"):
        found = _PARTIAL.match(path.name)
        if found is not None and found["host"] == _HOST and not _running(int(found["pid"])):
            _remove(path)


def _running(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's process: running
        return True
    return True


def _refuse_foreign(database: Path) -> None:
    """InvalidInput for a file that is not one of this server's stores (another application's SQLite
    database): copied, its backup failed on a missing table with a traceback."""
    try:
        with closing(_read_only(database)) as db:
            tables = {name for (name,) in db.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
    except sqlite3.Error:
        return  # no database at all (a text file): the copy says so, as before
    if not tables >= STORE_TABLES:
        raise InvalidInput(
            f"{database} is not a store of this server: it holds no {', '.join(sorted(STORE_TABLES - tables))}",
            field="database",
        )


def _name_new(partial: Path, destination: Path) -> None:
    """Give the finished copy its name, unless a file took that name meanwhile (another backup)."""
    try:
        os.link(partial, destination)  # fails where the name exists, where a rename would replace it
    except FileExistsError:
        raise _taken(destination) from None
    except OSError:  # a file system without hard links
        if destination.exists():
            raise _taken(destination) from None
        partial.rename(destination)


def _taken(destination: Path) -> InvalidInput:
    return InvalidInput(f"{destination} exists: a backup never overwrites a file, name a new one", field="destination")


def store_id(path: Path) -> str | None:
    """The id of the store a file holds (a backup keeps its store's); None for a file without one."""
    try:
        with closing(_read_only(path)) as db:
            row = db.execute("SELECT value FROM meta WHERE key = 'storeId'").fetchone()
    except sqlite3.Error:
        return None
    return str(row[0]) if row else None


def check_backup(backup: Path, progress: Progress = silent) -> StoreFile:
    """What the backup holds, once SQLite found it whole and it is one of this server's stores."""
    if not backup.is_file():
        raise NotFound(f"no backup at {backup}", field="backup")
    return _checked(backup, progress)


def stage(backup: Path, database: Path, progress: Progress = silent) -> Path:
    """A copy of `backup` beside `database`, to be made ready (erasures) before it is swapped in."""
    staged = database.with_name(f"{database.name}.restoring")
    _remove(staged)  # left by a restore that was interrupted
    ours = store_id(database) if database.exists() else None
    try:
        _copy(backup, staged, progress)
        with closing(sqlite3.connect(staged, isolation_level=None)) as copy:  # a store again, not a backup
            copy.execute("DELETE FROM meta WHERE key = ?", (BACKUP_TAKEN_AT,))
            if ours is not None:
                # A backup without an id (a plain copy, or one made before stores had one) is of the
                # store it replaces: given a new id instead, the scheduled backups made before were
                # no longer its own, and none was ever deleted past CDP_BACKUP_KEEP.
                copy.execute("INSERT OR IGNORE INTO meta (key, value) VALUES ('storeId', ?)", (ours,))
    except BaseException:
        _remove(staged)
        raise
    return staged


def discard(staged: Path) -> None:
    _remove(staged)


def swap_in(staged: Path, database: Path) -> Path | None:
    """Put `staged` in the place of `database`, in one rename: the path holds the old store or the
    new one, whole, whenever the process stops. The store it replaces (if any) is kept beside it,
    under a name saying when, and returned. The caller holds the store alone (store_users.py)."""
    _self_contained(staged)
    kept = None
    if database.exists():
        _self_contained(database)
        kept = _keep(database)
    os.replace(staged, database)
    _flush(database.parent)
    return kept


def _keep(database: Path) -> Path:
    """A second name for the store about to be replaced, saying when, never one already taken: two
    restores in one second named the same one, and the second copied over the first's kept store (the
    link refused the name, and was taken for a file system without hard links)."""
    stamped = f"{database.name}.before-restore-{clock.now().strftime(STAMP)}"
    for number in itertools.count(1):
        kept = database.with_name(stamped if number == 1 else f"{stamped}-{number}")
        try:
            os.link(database, kept)
        except FileExistsError:
            continue
        except OSError:  # a file system without hard links
            if kept.exists():
                continue
            shutil.copy2(database, kept)
        return kept
    raise AssertionError("unreachable")  # itertools.count never ends


def _self_contained(path: Path) -> None:
    """The database in one file: its write-ahead log copied in and removed (WAL is set again on open)."""
    with closing(sqlite3.connect(path, isolation_level=None)) as db:
        db.execute("PRAGMA journal_mode=DELETE")


def _copy(source: Path, target: Path, progress: Progress) -> None:
    """`VACUUM INTO` (one read transaction: what was committed when it began), its progress told from
    the size the copy has reached (a compact copy is at most the source's size)."""
    total = sum(path.stat().st_size for path in (source, Path(f"{source}-wal")) if path.exists()) // MB
    done = threading.Event()

    def watch() -> None:
        while not done.wait(PROGRESS_EVERY_SECONDS):
            try:
                progress(COPYING, min(target.stat().st_size // MB, total), total)
            except FileNotFoundError:  # not created yet
                continue

    watcher = threading.Thread(target=watch, name="backup-progress", daemon=True)
    progress(COPYING, 0, total)
    create_private(target)  # VACUUM INTO fills an empty file
    watcher.start()
    try:
        with closing(sqlite3.connect(source)) as connection:
            connection.execute("PRAGMA busy_timeout=5000")
            connection.execute("VACUUM INTO ?", (str(target),))
    except sqlite3.Error as exc:  # not a database, a disk full, a lock held past the timeout
        raise StoreUnavailable(f"could not copy {source} to {target.name}: {exc}") from None
    finally:
        done.set()
        watcher.join()
    progress(COPYING, total, total)


def _checked(path: Path, progress: Progress = silent) -> StoreFile:
    progress("checking", 0, 1)
    try:
        with closing(_read_only(path)) as db:
            problems = [row[0] for row in db.execute("PRAGMA integrity_check")]
            if problems != ["ok"]:
                raise InvalidInput(f"{path} is damaged: {'; '.join(problems[:3])}", field="backup")
            tables = {row[0] for row in db.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
            if missing := STORE_TABLES - tables:
                raise InvalidInput(
                    f"{path} is not a store of this server (no {', '.join(sorted(missing))} table)", field="backup"
                )
            refuse_newer(db, path, field="backup")
            profiles = db.execute("SELECT count(*) FROM profiles WHERE merged_into IS NULL").fetchone()[0]
            interactions = db.execute(f"SELECT count(*) FROM ({HISTORY})").fetchone()[0]
            taken = db.execute("SELECT value FROM meta WHERE key = ?", (BACKUP_TAKEN_AT,)).fetchone()
    except sqlite3.DatabaseError as exc:
        raise InvalidInput(f"{path} is not a store of this server ({exc})", field="backup") from None
    progress("checking", 1, 1)
    return StoreFile(
        path, path.stat().st_size, profiles, interactions, datetime.fromisoformat(taken[0]) if taken else None
    )


def _read_only(path: Path) -> sqlite3.Connection:
    """A connection that can neither create the file nor change it."""
    return sqlite3.connect(f"{path.resolve().as_uri()}?mode=ro", uri=True)


def _remove(path: Path) -> None:
    for suffix in ("", *WAL_FILES, "-journal"):  # VACUUM INTO writes its copy with a rollback journal
        Path(f"{path}{suffix}").unlink(missing_ok=True)


def _flush(path: Path) -> None:
    """fsync a file, or a folder (so that a rename in it is on disk too)."""
    descriptor = os.open(path, os.O_RDONLY)
    try:
        os.fsync(descriptor)
    finally:
        os.close(descriptor)
