"""Backups the server takes by itself (CDP_BACKUP_DIR): one every CDP_BACKUP_EVERY_HOURS, the newest
CDP_BACKUP_KEEP kept.

Every worker process runs the schedule and the folder decides: a backup is due when the newest one
there is older than the period, so that restarts neither skip nor repeat one, and one process at a
time takes it (a lock in the folder), looking again once it holds the lock. A store with no backup
yet gets its first a few minutes after the server starts, once the demo data's first load is in.
Each backup is the command's (app/store/sqlite/backups.py): consistent while the server writes,
checked, whole or absent. Only backups this schedule took of this store are ever deleted.
"""

from __future__ import annotations

import asyncio
import logging
import re
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

from app.domain import clock
from app.domain.errors import DomainError
from app.process_lock import taken_if_free
from app.store.sqlite.backups import STAMP, StoreFile, back_up, store_id

log = logging.getLogger("cdp.backups")

FIRST_AFTER = timedelta(minutes=5)  # a store without backups: its first, after the start's own work
RETRY_AFTER = timedelta(minutes=10)  # a backup that failed (a full disk) is tried again, not in a loop
LOOK_AGAIN_AFTER = timedelta(minutes=1)  # another process was taking the one due


@dataclass(frozen=True, slots=True)
class BackupSchedule:
    database: Path
    folder: Path
    every: timedelta
    keep: int

    def backups(self) -> list[tuple[datetime, Path]]:
        """The backups this schedule took of this store, oldest first (named `<store>-<UTC time>.sqlite3`).
        Those of another store named alike (a store lost, whose backups a new one shares the folder
        with) are not counted, and so never deleted: they are what a restore would need."""
        named = re.compile(rf"^{re.escape(self.database.stem)}-(\d{{8}}T\d{{6}}Z)\.sqlite3$")
        ours = store_id(self.database)
        found = []
        for path in self.folder.iterdir() if self.folder.is_dir() else ():
            if (match := named.match(path.name)) is not None and store_id(path) == ours:
                found.append((datetime.strptime(match[1], STAMP).replace(tzinfo=UTC), path))
        return sorted(found)

    def due_in(self, now: datetime) -> timedelta | None:
        """How long until the next backup is due (zero: now); None when this schedule took none yet."""
        taken = self.backups()
        if not taken:
            return None
        return max(taken[-1][0] + self.every - now, timedelta(0))


def take_due_backup(schedule: BackupSchedule, now: datetime | None = None) -> StoreFile | None:
    """The backup, when one is due and no other process is taking it; older ones past `keep` deleted."""
    with taken_if_free(schedule.folder / ".backup.lock") as taken:
        moment = now or clock.now()
        if not taken or schedule.due_in(moment):  # another process is at it, or has just done it
            return None
        # A scheduled backup's unfinished copy, left by a process killed while taking one: stale, since
        # only the holder of this lock takes one. It holds people's data: it goes.
        for stale in schedule.folder.glob(f".{schedule.database.stem}-*.sqlite3.*.partial"):
            stale.unlink(missing_ok=True)
        made = back_up(
            schedule.database, schedule.folder / f"{schedule.database.stem}-{moment.strftime(STAMP)}.sqlite3"
        )
        for _, old in schedule.backups()[: -schedule.keep]:
            old.unlink(missing_ok=True)
        return made


async def keep_backing_up(
    schedule: BackupSchedule, *, sleep: Callable[[float], Awaitable[None]] = asyncio.sleep
) -> None:
    """The server's schedule: forever, wait until a backup is due, then take it (on a thread: the
    copy is long and SQLite's; the loop keeps serving). Failures are logged and tried again later."""
    try:
        schedule.folder.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        log.error("no scheduled backups: the folder %s cannot be made (%s)", schedule.folder, exc)
        return
    wait = schedule.due_in(clock.now())
    wait = FIRST_AFTER if wait is None else wait
    while True:
        await sleep(wait.total_seconds())
        try:
            made = await asyncio.to_thread(take_due_backup, schedule)
        except DomainError as exc:
            log.error("scheduled backup failed: %s; trying again in %s", exc.message, RETRY_AFTER)
            wait = RETRY_AFTER
            continue
        except Exception:
            log.exception("scheduled backup failed; trying again in %s", RETRY_AFTER)
            wait = RETRY_AFTER
            continue
        if made is not None:
            log.info("backed up the store to %s: %d profiles, %.1f MB", made.path, made.profiles, made.bytes / 1e6)
        wait = max(schedule.due_in(clock.now()) or timedelta(0), LOOK_AGAIN_AFTER)
