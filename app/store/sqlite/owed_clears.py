"""The checks of every segment whose upkeep ran, cleared by this process's next write transaction.

An upkeep that has nothing to write but the clearing of the checks its writes left (a batch's change
that can move no segment, or no segment defined) paid a transaction of its own for it: one more
BEGIN IMMEDIATE, COMMIT and fsync per batch, and the file's write lock taken once more while another
process's batches wait for it. Two workers ingesting the bench's batches did ~17% more events a
second with the clearing carried by the next transaction (bench serving's 2b by hand, two runs of
three rounds alternating with the code before: medians 4,355 -> 5,084 events/s).

Until that transaction commits, this process's reads of the checks see them cleared
(`SQLiteStore.pending_writes`, `due_checks`, `next_check_at`). A process stopped
before leaves them due, UPKEEP_GRACE after their writes, and they are caught up as any missed
upkeep: the clearing is late, never lost.

A clear removes a check only if it stands for no more writes than were counted, as
`SQLiteTransaction.clear_upkeep` does: one that a later write added to stays, for that write's
upkeep. Left to the next transaction, a clear waits a little longer for it (at most
CLEAR_OWED_AFTER_SECONDS) than an upkeep's own transaction did, a window in which another process
could clear the check and make it again, counting afresh, then stop before that write's upkeep.
"""

from __future__ import annotations

import sqlite3
import threading
import time
from collections.abc import Mapping

from app.domain.segments.upkeep import EVERY_SEGMENT

_CLEAR = "DELETE FROM segment_checks WHERE profile_id = ? AND segment_id = ? AND writes <= ?"


class OwedClears:
    """profile id → writes counted: what this process's upkeeps cleared and its next write
    transaction writes. Added to on the server's loop, taken on the writer thread: a lock guards it."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._owed: dict[str, int] = {}
        self.since = 0.0  # time.monotonic() when the oldest clear now owed was added

    def __bool__(self) -> bool:
        return bool(self._owed)

    def add(self, counted: Mapping[str, int]) -> None:
        """The latest count of a profile replaces an earlier one: the check it counted is either the
        one the earlier count saw, with as many writes or more, or a new one (the earlier was cleared)."""
        with self._lock:
            if not self._owed:
                self.since = time.monotonic()
            self._owed.update(counted)

    def restore(self, taken: Mapping[str, int]) -> None:
        """Clears taken by a transaction that rolled back, unless a later count replaced them meanwhile."""
        with self._lock:
            if taken and not self._owed:
                self.since = time.monotonic()
            for profile_id, owed in taken.items():
                self._owed.setdefault(profile_id, owed)

    def write(self, db: sqlite3.Connection) -> dict[str, int]:
        """Delete the owed checks inside `db`'s open transaction; returns what was taken, for
        `restore` should the transaction not commit."""
        with self._lock:
            taken, self._owed = self._owed, {}
        try:
            db.executemany(_CLEAR, [(profile_id, EVERY_SEGMENT, writes) for profile_id, writes in taken.items()])
        except BaseException:
            self.restore(taken)
            raise
        return taken

    def covers(self, profile_id: str, writes: int) -> bool:
        """Whether a stored check (standing for `writes`) is one this process owes the clearing of."""
        return writes <= self._owed.get(profile_id, 0)
