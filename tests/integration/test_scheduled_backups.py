"""Backups the server takes by itself (CDP_BACKUP_DIR): due when the newest is older than the
period, taken by one process at a time, the newest CDP_BACKUP_KEEP kept and nothing else deleted,
and a failure tried again later rather than in a loop."""

from __future__ import annotations

import asyncio
from datetime import timedelta
from pathlib import Path

import pytest
from pydantic import ValidationError

from app.domain import clock
from app.process_lock import taken_if_free
from app.scheduled_backups import (
    FIRST_AFTER,
    RETRY_AFTER,
    BackupSchedule,
    keep_backing_up,
    take_due_backup,
)
from app.services.ingestion import ingest_events
from app.settings import Settings
from app.store.sqlite.store import SQLiteStore
from tests.builders import event

DAY = timedelta(days=1)


async def _schedule(tmp_path: Path, keep: int = 2, *, store_in: str = "") -> BackupSchedule:
    store = SQLiteStore(tmp_path / store_in / "cdp.sqlite3")
    await ingest_events(store, [event("page_view", email="emma@example.com")])
    await store.close()
    return BackupSchedule(store.path, tmp_path / "backups", DAY, keep)


async def test_a_backup_is_taken_when_due_and_the_newest_are_kept(tmp_path: Path) -> None:
    schedule = await _schedule(tmp_path, keep=2)
    schedule.folder.mkdir()
    theirs = [schedule.folder / "cdp-manual.sqlite3", schedule.folder / "notes.txt"]
    for path in theirs:
        path.write_text("the operator's")
    stale = schedule.folder / ".cdp-20260101T000000Z.sqlite3.4242-1.partial"  # a worker killed mid-backup
    stale.write_text("half a copy")
    start = clock.now().replace(microsecond=0)  # backups are named to the second
    first = take_due_backup(schedule, start)
    assert first is not None and first.profiles == 1
    assert take_due_backup(schedule, start + DAY / 2) is None  # the newest is not a period old
    assert schedule.due_in(start + DAY / 2) == DAY / 2
    second = take_due_backup(schedule, start + DAY)
    third = take_due_backup(schedule, start + 2 * DAY)
    assert second is not None and third is not None
    assert [path for _, path in schedule.backups()] == [second.path, third.path]  # the first, past `keep`, deleted
    assert all(path.read_text() == "the operator's" for path in theirs)  # not named by the schedule: left alone
    assert not stale.exists()


async def test_backups_of_another_store_in_the_folder_are_neither_counted_nor_deleted(tmp_path: Path) -> None:
    start = clock.now().replace(microsecond=0)
    lost = await _schedule(tmp_path, keep=1, store_in="lost")  # a store whose disk was lost: its backups stay
    theirs = take_due_backup(lost, start - 3 * DAY)
    assert theirs is not None
    schedule = await _schedule(tmp_path, keep=1, store_in="new")  # a new store, same name, same folder
    assert schedule.due_in(start) is None  # none of its own yet: the first comes after the start's own work
    assert take_due_backup(schedule, start) is not None
    assert take_due_backup(schedule, start + DAY) is not None
    assert len(schedule.backups()) == 1 and theirs.path.exists()
    assert [path for _, path in lost.backups()] == [theirs.path]


async def test_a_backup_another_process_is_taking_is_not_taken_twice(tmp_path: Path) -> None:
    schedule = await _schedule(tmp_path)
    with taken_if_free(schedule.folder / ".backup.lock") as taken:  # another worker, mid-backup
        assert taken
        assert take_due_backup(schedule) is None
    assert schedule.backups() == []
    assert take_due_backup(schedule) is not None


async def test_the_schedule_waits_for_what_is_due_and_retries_a_failure_later(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    schedule = await _schedule(tmp_path)
    moment = [clock.now().replace(microsecond=0)]
    monkeypatch.setattr(clock, "now", lambda: moment[0])
    waits: list[float] = []

    async def sleep(seconds: float) -> None:  # the time it waits goes by
        waits.append(seconds)
        moment[0] += timedelta(seconds=seconds)
        if len(waits) == 2:
            schedule.database.rename(schedule.database.with_name("gone.sqlite3"))  # the next backup fails
        if len(waits) == 4:
            raise asyncio.CancelledError

    with pytest.raises(asyncio.CancelledError):
        await keep_backing_up(schedule, sleep=sleep)
    assert len(list(schedule.folder.glob("cdp-*.sqlite3"))) == 1  # the first; the store is gone since
    # The first after the start's own work, the next a period later, then each failure tried again later.
    assert waits == [s.total_seconds() for s in (FIRST_AFTER, DAY, RETRY_AFTER, RETRY_AFTER)]


def test_scheduled_backups_are_refused_for_a_mongodb_store() -> None:
    with pytest.raises(ValidationError, match="scheduled backups are for the embedded store"):
        Settings(database_url="mongodb://localhost/cdp", backup_dir=Path("backups"))
