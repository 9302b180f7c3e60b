"""Whether any connection has committed since a moment: what lets a read of kept profiles answer
without asking for their revisions (decoded_profiles.py, `confirmed_since`).

SQLite's `PRAGMA data_version` changes on a connection whenever another connection has committed,
in this process or any other; this connection only reads. The watch draws a ticket (the kept
profiles' clock) each time it sees the value change: while the value stays the same, nothing was
committed since that ticket was drawn."""

from __future__ import annotations

import sqlite3
from collections.abc import Callable


class CommitWatch:
    def __init__(self, connection: sqlite3.Connection, ticket: Callable[[], int]) -> None:
        self._connection = connection  # used from one thread only: the event loop's
        self._ticket = ticket
        self._version: int | None = None
        self._quiet_from = 0

    def quiet_from(self) -> int:
        """A ticket drawn after every commit so far, by any connection: a revision a read found
        stored after it (its ticket drawn later) is still the stored one."""
        (version,) = self._connection.execute("PRAGMA data_version").fetchone()
        if version != self._version:
            self._version, self._quiet_from = version, self._ticket()
        return self._quiet_from
