"""Where the embedded store's work runs, so that none of it holds the server's event loop.

- `WriterThread`: one thread, with an event loop of its own, owns the write connection. A unit of
  work (a whole ingested batch: its reads, its in-memory apply, its bulk writes) and the commit's
  fsync run there; the server's loop only awaits the result. SQLite serialises writers anyway, so
  one writer thread per process costs no concurrency.
- `ReaderPool`: a few threads, each with its own read-only connection. In WAL mode a reader sees the
  last commit and never waits for the writer, so these run while a batch is being written. The store
  has two: one for bounded reads of many rows (profiles by id, a history page), one at a lower CPU
  priority for whole-store scans (filtered lists, counts, segment evaluation, match candidates,
  exports), so that a slow scan never queues a short read behind it nor takes the core from the loop.

Python's GIL is shared by these threads and the loop; the interpreter hands it over every few
milliseconds (sys.getswitchinterval) and sqlite3 releases it while SQLite works, so the loop keeps
answering while a batch is processed.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import sqlite3
import threading
from collections.abc import Callable, Coroutine, Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any, TypeVar

from app.store.sqlite.lock_waits import LockWaits
from app.thread_priority import BULK_WORK, lower_priority, start_thread

T = TypeVar("T")
log = logging.getLogger("cdp.store")
READER_THREADS = 2
WATCH_SECONDS = 0.2  # how often a bulk batch in the background looks for another process's write (a wake-up each)


class WriterThread:
    """`nice` lowers the thread's CPU priority: a batch's CPU then yields the core to the event loop
    whenever the loop has work (a read, a health check), and takes all of it when the loop is idle.
    A bulk batch (`app.thread_priority.bulk_work`) runs in the background class (`background`); work
    sent here from outside bulk work brings the thread back to the foreground at once, so that it
    does not wait behind a batch that only gets the CPU no one else wants."""

    def __init__(self, name: str, *, nice: int = 0, waits: LockWaits | None = None) -> None:
        self._loop = asyncio.new_event_loop()
        self._waits = waits or LockWaits(None)
        self._thread, self.scheduling = start_thread(lambda _: self._loop.run_forever(), name=name, nice=nice)

    @contextlib.contextmanager
    def background(self, wanted: bool) -> Iterator[None]:
        """On the writer thread: the block in the background class when `wanted`. A write of this
        process lifts it at once (`run`); one of another process says it waits (`waits`), which a
        watcher thread looks for every WATCH_SECONDS while the block runs."""
        if not wanted or not self.scheduling.available:
            yield
            return
        since, done = self._waits.token(), threading.Event()
        # Started first: a thread starts in the class of the thread that starts it.
        watcher = threading.Thread(target=self._watch, args=(since, done), name="lock-waits", daemon=True)
        watcher.start()
        try:
            with self.scheduling.background():
                yield
        finally:
            done.set()

    def _watch(self, since: str | None, done: threading.Event) -> None:
        while not done.wait(WATCH_SECONDS):
            if self._waits.announced_since(since):
                log.debug("another process waits for the write lock: the bulk batch goes on in the foreground")
                self.scheduling.foreground()
                return

    async def run(self, coroutine: Coroutine[Any, Any, T]) -> T:
        """Run `coroutine` on the writer's loop; cancelling the caller cancels it there."""
        if self._loop.is_closed():
            coroutine.close()
            raise _closed()
        self._lift()
        return await asyncio.wrap_future(asyncio.run_coroutine_threadsafe(coroutine, self._loop))

    def _lift(self) -> None:
        if not BULK_WORK.get():
            self.scheduling.foreground()

    async def call(self, function: Callable[[], T]) -> T:
        async def call() -> T:
            return function()

        return await self.run(call())

    def submit(self, coroutine: Coroutine[Any, Any, object]) -> None:
        """Run `coroutine` on the writer's loop without waiting for it."""
        if self._loop.is_closed():
            coroutine.close()
            return
        self._lift()
        asyncio.run_coroutine_threadsafe(coroutine, self._loop)

    async def settle(self) -> None:
        """On the writer's loop, before its connection closes: work still pending here (a group of
        batches whose callers were cancelled, as by Ctrl-C during `load`) is cancelled and runs to its
        end, its transaction rolled back. Left pending, it was destroyed with the loop, and finished
        at garbage collection on a closed connection, printing two tracebacks."""
        pending = [task for task in asyncio.all_tasks() if task is not asyncio.current_task()]
        for task in pending:
            task.cancel()
        await asyncio.gather(*pending, return_exceptions=True)

    @property
    def here(self) -> bool:
        """Whether the caller runs on the writer thread itself."""
        return threading.current_thread() is self._thread

    @property
    def closed(self) -> bool:
        return self._loop.is_closed()

    def close(self) -> None:
        if self._loop.is_closed():
            return
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join()
        self._loop.close()


class ReaderPool:
    """Reader threads with their own connections. `nice` lowers their CPU priority (Linux: a thread
    is a task with its own nice value): a pool of whole-store scans, which can take seconds of CPU,
    then leaves the core to the event loop and to the short reads whenever they want it."""

    def __init__(self, connect: Callable[[], sqlite3.Connection], *, name: str, nice: int = 0) -> None:
        self._connect = connect
        self._local = threading.local()
        self._connections: list[sqlite3.Connection] = []
        self._lock = threading.Lock()
        self._trace: Callable[[str], None] | None = None
        self._pool = ThreadPoolExecutor(
            max_workers=READER_THREADS, thread_name_prefix=name, initializer=lower_priority, initargs=(nice,)
        )
        self._closed = False

    async def read(self, query: Callable[[sqlite3.Connection], T]) -> T:
        if self._closed:
            raise _closed()
        return await asyncio.get_running_loop().run_in_executor(self._pool, self._run, query)

    def _run(self, query: Callable[[sqlite3.Connection], T]) -> T:
        connection: sqlite3.Connection | None = getattr(self._local, "connection", None)
        if connection is None:
            connection = self._local.connection = self._connect()
            connection.set_trace_callback(self._trace)
            with self._lock:
                self._connections.append(connection)
        return query(connection)

    def trace(self, callback: Callable[[str], None] | None) -> None:
        self._trace = callback
        with self._lock:
            for connection in self._connections:
                connection.set_trace_callback(callback)

    def close(self) -> None:
        self._closed = True
        self._pool.shutdown(wait=True)
        with self._lock:
            for connection in self._connections:
                connection.close()
            self._connections.clear()


def _closed() -> sqlite3.ProgrammingError:
    """What sqlite3 itself raises on a closed connection (the store reports it as unavailable)."""
    return sqlite3.ProgrammingError("Cannot operate on a closed database.")
