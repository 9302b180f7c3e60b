"""Telling another process that its bulk batch holds the write lock this process waits for.

A bulk batch runs in Linux's background class (app/thread_priority.py) from BEGIN to COMMIT, so it
holds SQLite's write lock while it gets only the CPU that nobody else wants. A write of its own
process lifts it at once (WriterThread.run); a write of another process (several workers on one
file, `python -m app load`) only waits on the lock, up to busy_timeout, and nothing in SQLite tells
the holder. So a writer that finds the lock taken says so first, by touching a file beside the
database (`<database>-waiting`), and the holder's watcher, which looks at that file while its batch
is in the background, brings the batch back to the foreground.
"""

from __future__ import annotations

import contextlib
import os
from pathlib import Path


class LockWaits:
    """A writer that waits writes a new token into the file; a holder compares it with the token it
    saw when its batch went into the background (a file's times are too coarse for that: two
    writes within a few milliseconds can share one)."""

    def __init__(self, database: Path | None) -> None:
        """`database` None: an in-memory store, which no other process opens."""
        self._marker = None if database is None else Path(f"{database}-waiting")

    def announce(self) -> None:
        """This process waits for the write lock."""
        if self._marker is not None:
            with contextlib.suppress(OSError):  # a read-only directory: the batch finishes in its own time
                self._marker.write_text(os.urandom(8).hex(), encoding="ascii")

    def token(self) -> str | None:
        """What the file says now (None: nothing yet, or not readable)."""
        if self._marker is None:
            return None
        try:
            return self._marker.read_text(encoding="ascii")
        except (OSError, ValueError):
            return None

    def announced_since(self, token: str | None) -> bool:
        """Whether a writer said it waits since the file said `token`."""
        return self._marker is not None and self.token() != token
