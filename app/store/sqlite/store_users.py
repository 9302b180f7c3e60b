"""Which processes have the embedded store open, so that a restore never swaps the file under one.

Every `SQLiteStore` holds a shared `flock` on a file beside the database while it is open (each server
worker, `python -m app load`, `keys`, `traits`, …); a restore takes it exclusively, without waiting:
while anyone has the store open it is refused, and a store opened while a restore runs waits for it,
then opens the restored file. The operating system releases a lock however its holder exits, so a
killed server never leaves the store looking open."""

from __future__ import annotations

import fcntl
import logging
import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from app.command_line import app_command
from app.domain.errors import Conflict
from app.process_lock import taken_if_free

log = logging.getLogger("cdp.store")


def lock_path(database: Path) -> Path:
    return database.with_name(f".{database.name}.open.lock")


def hold_shared(database: Path) -> int:
    """Take this store's shared lock (waiting for a restore to finish); the descriptor releases it."""
    descriptor = os.open(lock_path(database), os.O_RDWR | os.O_CREAT, 0o600)
    try:
        try:
            fcntl.flock(descriptor, fcntl.LOCK_SH | fcntl.LOCK_NB)
        except BlockingIOError:
            log.warning("the store %s is being restored: waiting for the restore to finish", database)
            fcntl.flock(descriptor, fcntl.LOCK_SH)
    except BaseException:
        os.close(descriptor)
        raise
    return descriptor


@contextmanager
def held_alone(database: Path) -> Iterator[None]:
    """The store's lock, exclusively, or Conflict at once when another process has the store open."""
    with taken_if_free(lock_path(database)) as taken:
        if not taken:
            raise Conflict(
                f"the store {database} is open in another process (a running server, or a command such as "
                f"`{app_command('load')}`): stop it, then restore",
                field="backup",
            )
        yield
