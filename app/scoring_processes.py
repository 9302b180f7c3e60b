"""A whole store's candidate pairs scored by processes of their own, beside the serving process.

Scoring is pure Python: however many threads run it, one process scores on one core, and its threads
hold the GIL the event loop waits for. At 100,000 profiles a review list scores 2.3 million pairs: a
learned model took 70-100 s of one core, its comparisons three quarters of that. So a large store's
list hands each chunk's pairs to `ScoringProcesses`: processes spawned for the list (nothing of the
server's threads or connections is inherited), each holding the match fields it was sent, scoring
its share of the pairs while the serving process reads and pairs the next chunk. Each scores at a
lower priority (nice 5): a request served meanwhile gets the core first.

Profiles travel as numbers (their place in `ids`), and each one's match fields once to each process.
A process that stops (killed, out of memory) takes nothing with it: its share, and every later one,
is scored in the serving process, on a worker thread, as a small store's list is.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import logging
import multiprocessing
import os
import pickle
from array import array
from collections.abc import Sequence
from multiprocessing.connection import Connection

from app.domain.matching import MatchFields, PairScorer
from app.domain.matching.candidates import pairs_reaching
from app.processes import stop_with_parent

log = logging.getLogger("cdp.matching")

# Below this many profiles a list is scored in the serving process: spawning the processes (about a
# second, each importing the matcher) costs more than they save.
MIN_PROFILES = 20_000
MAX_PROCESSES = 4
# A share takes a process seconds (a chunk's pairs, split): one not answered by then is taken as lost.
SHARE_TIMEOUT_S = 300.0
NICENESS = 5

# One chunk's pairs found at or above the list's minScore: (score, a, b), a and b numbers in `ids`.
Found = list[tuple[float, int, int]]


def process_count() -> int:
    """The processes a large store's list is scored by: one a core this process may run on."""
    from app.settings import usable_cpus  # here: the settings import the review list, which imports this

    return min(MAX_PROCESSES, usable_cpus())


class ScoringProcesses:
    """Processes scoring pairs of profiles with one scorer and minScore, for one review list. Made on
    a worker thread (starting one sends it the scorer, a learned model's 200 KB), then used as an
    async context manager: the processes stop when it closes."""

    def __init__(self, score_of: PairScorer, min_score: float, count: int) -> None:
        self._score_of, self._min_score = score_of, min_score
        self._fields: list[MatchFields] = []  # by number: the serving process's own copy, for a fallback
        self._number: dict[str, int] = {}
        self.ids: list[str] = []  # by number
        self._sent = 0  # the fields numbered below this were sent to every process
        self._pending: asyncio.Future[list[Found]] | None = None
        context = multiprocessing.get_context("spawn")
        self._processes: list[tuple[multiprocessing.process.BaseProcess, Connection]] = []
        for _ in range(count):
            ours, theirs = context.Pipe()
            process = context.Process(
                target=_score_pairs, args=(theirs, score_of, min_score, os.getpid()), name="cdp-scoring", daemon=True
            )
            try:
                process.start()
            except (OSError, AssertionError) as exc:  # no process left to start, or a daemon's (none may)
                log.warning("merge candidates: no scoring process (%s); the list is scored here", exc)
                ours.close()
                break
            finally:
                theirs.close()
            self._processes.append((process, ours))

    async def __aenter__(self) -> ScoringProcesses:
        return self

    async def __aexit__(self, *_: object) -> None:
        if self._pending is not None:  # a list given up (too long): the share being scored first
            with contextlib.suppress(Exception):
                await self._pending
        await asyncio.to_thread(self._stop)

    def numbered(
        self, pairs: Sequence[tuple[str, str]], fields: dict[str, MatchFields]
    ) -> tuple[array[int], array[int]]:
        """The pairs as numbers, each profile numbered (and its fields kept) the first time it comes."""
        first, second = array("l"), array("l")
        for a, b in pairs:
            first.append(self._number_of(a, fields))
            second.append(self._number_of(b, fields))
        return first, second

    def _number_of(self, profile_id: str, fields: dict[str, MatchFields]) -> int:
        number = self._number.get(profile_id)
        if number is None:
            number = self._number[profile_id] = len(self._fields)
            self._fields.append(fields[profile_id])
            self.ids.append(profile_id)
        return number

    async def score(self, first: array[int], second: array[int]) -> Found:
        """Hand these pairs out (`numbered`) and return what the previous call's pairs found: the
        processes score them while the caller reads and pairs the next chunk. `finish` returns the
        last call's."""
        previous = await self.finish()
        new = self._fields[self._sent :]
        self._sent = len(self._fields)
        self._pending = asyncio.ensure_future(asyncio.to_thread(self._exchange, new, first, second))
        return previous

    async def finish(self) -> Found:
        if self._pending is None:
            return []
        pending, self._pending = self._pending, None
        return [found for share in await pending for found in share]

    def _exchange(self, new: list[MatchFields], first: array[int], second: array[int]) -> list[Found]:
        """Each running process gets the new fields and its share of the pairs; a share whose process
        stopped (and every later one) is scored here."""
        for process, connection in list(self._processes):
            if not process.is_alive():
                self._lost(connection)
        live = list(self._processes)
        count = max(1, len(live))
        shares = [(first[i::count], second[i::count]) for i in range(count)]
        sent: list[tuple[int, Connection]] = []
        fields = pickle.dumps(new, protocol=pickle.HIGHEST_PROTOCOL)
        for index, (_, connection) in enumerate(live):
            try:
                connection.send_bytes(fields)
                connection.send(shares[index])
                sent.append((index, connection))
            except OSError:
                self._lost(connection)
        results: list[Found] = []
        done = set()
        for index, connection in sent:
            try:
                if not connection.poll(SHARE_TIMEOUT_S):
                    raise TimeoutError
                results.append(connection.recv())
                done.add(index)
            except (EOFError, OSError):  # TimeoutError is an OSError
                self._lost(connection)
        for index in range(count):
            if index not in done:
                results.append(self._here(*shares[index]))
        return results

    def _lost(self, connection: Connection) -> None:
        log.warning("merge candidates: a scoring process stopped; the rest of the list is scored here")
        for process, held in self._processes:
            if held is connection:
                process.kill()
        self._processes = [(p, c) for p, c in self._processes if c is not connection]
        connection.close()

    def _here(self, first: array[int], second: array[int]) -> Found:
        return _scored(self._fields, first, second, self._score_of, self._min_score)

    def _stop(self) -> None:
        for _, connection in self._processes:
            with contextlib.suppress(OSError):
                connection.send_bytes(b"")
            connection.close()
        for process, _ in self._processes:
            process.join(timeout=5)
            if process.is_alive():
                process.kill()
        self._processes = []


def _score_pairs(connection: Connection, score_of: PairScorer, min_score: float, parent: int) -> None:
    """A scoring process: the fields it is sent, kept by number, then its share of the pairs, whose
    found ones go back; an empty message stops it."""
    stop_with_parent(parent)
    with contextlib.suppress(OSError):
        os.nice(NICENESS)
    fields: list[MatchFields] = []
    while True:
        message = connection.recv_bytes()
        if not message:
            return
        fields.extend(pickle.loads(message))
        # The fields live as long as the list and hold no cycles: frozen, the collector no longer walks
        # them (100,000 profiles' fields, a million objects) each time the pairs' comparisons trigger it.
        gc.freeze()
        first, second = connection.recv()
        connection.send(_scored(fields, first, second, score_of, min_score))


def _scored(
    fields: Sequence[MatchFields], first: array[int], second: array[int], score_of: PairScorer, min_score: float
) -> Found:
    return pairs_reaching(score_of, fields.__getitem__, zip(first, second, strict=True), min_score)
