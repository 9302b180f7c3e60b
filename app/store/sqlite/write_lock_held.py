"""Whether this process's writer holds SQLite's write lock: the work that gives way to it.

A large batch's first run is computed on a snapshot by a worker thread (snapshots.py) while the
writer thread of the same process may be writing another batch under the lock. Each statement the
writer steps gives up the GIL for a row and takes it back after it; a planning thread computing
meanwhile held it on each of those returns, and the writer held the lock that much longer, while
the other worker processes waited for it. Two workers ingesting 1,000-event batches held the lock
~83% of the time, ~84 ms a transaction. A plan now waits, before each of its steps, until its own
process's writer holds no write transaction: it computes while another process writes, or while
this one waits for the lock (bench serving's 2b by hand, four runs each, alternating: 4,387 ->
4,823 events/s, the medians of their rounds). A batch's bulk work on the worker threads (its
validation, its coercion) waits the same way before it starts (app/thread_priority.py).
"""

from __future__ import annotations

import threading

# How long one step of a plan waits at most: a safety net, not a schedule (a write transaction
# ends with its batch, in far less than this unless the batch is huge).
GIVE_WAY_AT_MOST_SECONDS = 1.0


class WriteLockHeld:
    def __init__(self) -> None:
        self._free = threading.Condition()
        self._held = False
        self.waiting = 0  # threads waiting in `wait_free` now

    def take(self) -> None:
        """The writer holds the lock (its BEGIN IMMEDIATE returned)."""
        with self._free:
            self._held = True

    def release(self) -> None:
        """The writer's transaction ended (committed or rolled back)."""
        with self._free:
            self._held = False
            self._free.notify_all()

    def wait_free(self, timeout: float = GIVE_WAY_AT_MOST_SECONDS) -> None:
        """Return once the writer holds no write transaction, or after `timeout` seconds."""
        with self._free:
            if not self._held:
                return
            self.waiting += 1
            try:
                self._free.wait_for(lambda: not self._held, timeout)
            finally:
                self.waiting -= 1
