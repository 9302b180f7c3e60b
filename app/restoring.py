"""Restoring the embedded store from a backup (`python -m app restore`): the file steps of
app/store/sqlite/backups.py around the services' carrying of erasures (app/services/backups.py).

The backup is checked, then copied beside the store and made ready there: the people erased from
the current store since the backup are erased from the copy, and the API keys it revoked since are
revoked in it, as are the consents it withdrew. Only then does the copy take the
store's place, in one rename, the current store kept beside it. All of it holds the store alone: a
running server or command refuses the restore, and a server starting meanwhile waits for it."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from app.services.backups import CarriedErasures, carry_erasures, carry_revocations, carry_withdrawals
from app.store.sqlite import backups, store_users
from app.store.sqlite.backups import Progress, StoreFile
from app.store.sqlite.store import SQLiteStore

ACTOR = "restore"  # the erasure receipts of people erased again name it


@dataclass(frozen=True, slots=True)
class Restored:
    backup: StoreFile
    carried: CarriedErasures
    kept: Path | None  # the store the backup replaced
    revoked: int = 0  # API keys revoked here since the backup, revoked in it again
    withdrawn: int = 0  # consents withdrawn here since the backup, withdrawn in it again


async def restore_backup(backup: Path, database: Path, progress: Progress = backups.silent) -> Restored:
    held = backups.check_backup(backup, progress)
    with store_users.held_alone(database):
        staged = backups.stage(backup, database, progress)
        try:
            carried, revoked, withdrawn = await _carried(database, staged)
            kept = backups.swap_in(staged, database)
        except BaseException:
            backups.discard(staged)
            raise
    return Restored(held, carried, kept, revoked, withdrawn)


async def _carried(database: Path, staged: Path) -> tuple[CarriedErasures, int, int]:
    """The current store's erasures, key revocations and consent withdrawals, made true in the staged
    backup."""
    if not database.exists():
        return CarriedErasures(0, 0, 0), 0, 0
    current = SQLiteStore(database, held_alone=True)
    try:
        restored = SQLiteStore(staged, held_alone=True)
        try:
            carried = await carry_erasures(current, restored, actor=ACTOR)
            revoked = await carry_revocations(current, restored)
            return carried, revoked, await carry_withdrawals(current, restored)
        finally:
            await restored.close()
    finally:
        await current.close()
