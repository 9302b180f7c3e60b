"""One process at a time, among the server's worker processes on this machine (CDP_WORKERS), for
start-up work that must happen once: loading the demo data, creating the development key.

An exclusive `flock` on a file beside the data: the operating system releases it when its holder
exits, however it exits, so a worker killed halfway never leaves the others waiting on a stale lock
(as a lock file's mere existence would). Taken without blocking and retried after a short sleep, so
that a waiting task stays cancellable and no thread is left blocked in the kernel."""

from __future__ import annotations

import asyncio
import fcntl
import os
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from contextlib import asynccontextmanager, contextmanager
from pathlib import Path

RETRY_SECONDS = 0.1


@asynccontextmanager
async def exclusive(path: Path, meanwhile: Callable[[], Awaitable[None]] | None = None) -> AsyncIterator[None]:
    """Held by this process alone while the block runs; other processes asking wait their turn,
    running `meanwhile` (when given) between their attempts."""
    descriptor = _lock_file(path)
    try:
        while not _took(descriptor):
            if meanwhile is not None:
                await meanwhile()
            await asyncio.sleep(RETRY_SECONDS)
        yield
    finally:
        os.close(descriptor)  # releases the lock


@contextmanager
def taken_if_free(path: Path) -> Iterator[bool]:
    """The lock if no other process holds it (True), at once; False, without waiting, if one does."""
    descriptor = _lock_file(path)
    try:
        yield _took(descriptor)
    finally:
        os.close(descriptor)  # releases the lock


_HELD: list[int] = []  # the descriptors of `held_while_running`'s locks: never closed


def held_while_running(path: Path) -> bool:
    """The lock on `path` for as long as this process runs, if no other process holds it (True);
    False, at once, if one does. The system releases it when its holder exits, however it exits:
    the next server's first worker takes it again."""
    descriptor = _lock_file(path)
    if not _took(descriptor):
        os.close(descriptor)
        return False
    _HELD.append(descriptor)
    return True


def _lock_file(path: Path) -> int:
    path.parent.mkdir(parents=True, exist_ok=True)
    return os.open(path, os.O_RDWR | os.O_CREAT, 0o600)


def _took(descriptor: int) -> bool:
    """Whether the lock is this descriptor's now; False at once when another process holds it."""
    try:
        fcntl.flock(descriptor, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        return False
    return True
