"""New connections spread over the worker processes by how many each already holds.

The workers share one listening socket, and the event loop (uvloop's, like asyncio's) accepts every
connection waiting on it at once: a client opening its few keep-alive connections together had them
all taken by whichever worker woke first, and the other cores served none of them. Profile queries
from wrk over 4 connections to two workers: one run in three had every connection on one worker,
3,918 requests/s against 6,498-7,115 when they were shared.

Here each worker accepts one connection at a time and publishes how many it holds in a table the
supervisor shares with every worker. A worker holding more than another live worker leaves a waiting
connection to it, looking again every RECHECK_SECONDS, and takes it itself after WAIT_LIMIT_SECONDS
if nobody has (the other's loop is busy), with whatever comes for as long again; one whose
application still loads leaves it for as long as another is heard from. The counts are
uvicorn's open connections (WebSockets included) plus those accepted and not yet set up, published at
each accept and every PUBLISH_SECONDS, with LOADING more while the worker's application loads; a
worker not heard from for STALE_SECONDS (its loop blocked) is not waited for, and one that stops
listening (shutting down) leaves the table.

A single process (CDP_WORKERS=1) does not use this: there is nobody to leave a connection to.
"""

from __future__ import annotations

import asyncio
import errno
import logging
import multiprocessing
import os
import select
import socket
import time
from collections.abc import Callable
from typing import Any

from app.graceful_shutdown import GracefulServer
from app.processes import is_alive

log = logging.getLogger("cdp.workers")
RECHECK_SECONDS = 0.001
WAIT_LIMIT_SECONDS = 0.05
PUBLISH_SECONDS = 0.1
STALE_SECONDS = 0.5  # a worker not heard from for this long is not waited for
# Added to what a worker holds while its application loads: the others, serving, get the connections.
LOADING = 1 << 20
RETRY_SECONDS = 1.0  # after running out of file descriptors, as asyncio's own accept waits
# Errors of accept that are the process's, not the connection's (as asyncio's own accept tells them).
OUT_OF_RESOURCES = frozenset({errno.EMFILE, errno.ENFILE, errno.ENOBUFS, errno.ENOMEM})
TAKEN_AT_ONCE = 64  # connections accepted in one turn of the loop at most (a burst of clients)


class ConnectionTable:
    """One slot per worker process: its pid, how many connections it holds, and when it last said so.
    Made by the supervisor and handed to each worker it spawns (a process-shared array). A worker that
    has not said so for STALE_SECONDS (its loop blocked or stopped, killed and not yet replaced, a pid
    reused) is not one to leave connections to; slots of dead workers are taken over."""

    FIELDS = 3  # pid, connections held, CLOCK_MONOTONIC (system-wide) in ms when last published

    def __init__(self, slots: int) -> None:
        self._shared = multiprocessing.get_context("spawn").Array("q", self.FIELDS * slots)

    def _values(self) -> Any:
        """The slots' ctypes array: reads and writes of one value need no lock."""
        return self._shared.get_obj()

    def claim(self, pid: int) -> int | None:
        """The slot of `pid` from now on; None when every slot belongs to a live process."""
        with self._shared.get_lock():
            values = self._values()
            for slot in range(0, len(values), self.FIELDS):
                owner = values[slot]
                if owner in (0, pid) or not is_alive(owner):
                    values[slot : slot + self.FIELDS] = [pid, 0, 0]
                    return slot // self.FIELDS
        return None

    def release(self, slot: int, pid: int) -> None:
        """The slot free again, unless another worker took it over meanwhile."""
        at = slot * self.FIELDS
        with self._shared.get_lock():
            values = self._values()
            if values[at] == pid:
                values[at : at + self.FIELDS] = [0, 0, 0]

    def publish(self, slot: int, held: int) -> None:
        at = slot * self.FIELDS
        values = self._values()  # one writer per slot: no lock
        values[at + 1] = held
        values[at + 2] = _now_ms()

    def holds_fewer(self, slot: int, held: int) -> bool:
        """Whether a worker other than `slot`'s, heard from within STALE_SECONDS, holds clearly fewer
        than `held` connections (by one, or by a sixteenth of them when there are many: thousands of
        clients need not alternate)."""
        below = held - max(1, held % LOADING // 16)  # the tolerance from the connections held
        heard_since = _now_ms() - int(STALE_SECONDS * 1000)
        values = self._values()[:]  # one copy, then plain reads
        for at in range(0, len(values), self.FIELDS):
            owner, count, heard = values[at : at + self.FIELDS]
            if at != slot * self.FIELDS and owner != 0 and count <= below and heard >= heard_since:
                return True
        return False


def _now_ms() -> int:
    return time.monotonic_ns() // 1_000_000


class Balance:
    """This worker's side of the table: when to leave a waiting connection to another worker."""

    def __init__(self, table: ConnectionTable, slot: int) -> None:
        self._table = table
        self._slot = slot
        self._leaving_since: float | None = None
        self._taking_until = 0.0

    @classmethod
    def joined(cls, table: ConnectionTable) -> Balance | None:
        slot = table.claim(os.getpid())
        if slot is None:
            log.warning("no room left in the workers' connection table: this worker accepts without sharing out")
            return None
        return cls(table, slot)

    def publish(self, held: int) -> None:
        self._table.publish(self._slot, held)

    def leaves_it(self, held: int) -> bool:
        """Whether the connection waiting now is left to a worker holding fewer: for at most
        WAIT_LIMIT_SECONDS; when nobody took it by then, this worker takes what comes for as long.
        A worker whose application loads (`held` from LOADING on) leaves it for as long as another is
        heard from: what it took would wait for its application (a second or more)."""
        self.publish(held)
        now = time.monotonic()
        if now < self._taking_until or not self._table.holds_fewer(self._slot, held):
            self._leaving_since = None
            return False
        if self._leaving_since is None:
            self._leaving_since = now
        if now - self._leaving_since < WAIT_LIMIT_SECONDS or held >= LOADING:
            return True
        self._leaving_since = None
        self._taking_until = now + WAIT_LIMIT_SECONDS
        return False

    def nothing_waits(self) -> None:
        """What was left was taken by another worker: the next connection starts a wait of its own."""
        self._leaving_since = None

    def leave(self) -> None:
        self._table.release(self._slot, os.getpid())


class BalancedListener:
    """Accepts on `sock` for `protocol_factory` as the loop's own server would, one connection at a
    time and only when `balance` does not leave it to another worker. What uvicorn asks of the
    server it made: close() and wait_closed()."""

    def __init__(
        self,
        loop: asyncio.AbstractEventLoop,
        protocol_factory: Callable[[], asyncio.Protocol],
        sock: socket.socket,
        balance: Balance,
        connections: Callable[[], int],
        loaded: Callable[[], bool] = lambda: True,
    ) -> None:
        self._loop = loop
        self._protocol_factory = protocol_factory
        self._sock = sock
        self._balance = balance
        self._connections = connections  # open ones, as uvicorn counts them
        self._loaded = loaded  # whether the application has started (it answers, not a stand-in)
        self._setting_up = 0  # accepted, their protocol not yet counting itself
        self._serving = True
        self._publishing: asyncio.TimerHandle | None = None
        self._waiting: asyncio.TimerHandle | None = None  # the next look after leaving one, or an error
        sock.setblocking(False)
        loop.add_reader(sock.fileno(), self._ready)
        self._publish()

    def close(self) -> None:
        """No more connections: the table no longer counts this worker as one to leave them to."""
        if not self._serving:
            return
        self._serving = False
        for timer in (self._publishing, self._waiting):
            if timer is not None:
                timer.cancel()
        self._loop.remove_reader(self._sock.fileno())
        self._balance.leave()

    async def wait_closed(self) -> None:
        return None  # uvicorn waits for its connections itself

    def _held(self) -> int:
        """What this worker holds, as the table compares it: LOADING more until its application has
        started (a worker started again, SIGHUP, would hold its connections for the second or two
        its application takes to load; the others serve them at once)."""
        return self._connections() + self._setting_up + (0 if self._loaded() else LOADING)

    def _publish(self) -> None:
        """What this worker holds, said every PUBLISH_SECONDS: connections closed since the last
        accept, and that it still listens."""
        self._balance.publish(self._held())
        self._publishing = self._loop.call_later(PUBLISH_SECONDS, self._publish)

    def _ready(self) -> None:
        """Connections taken one by one, while none is left to another worker (up to TAKEN_AT_ONCE
        in one turn of the loop)."""
        for _ in range(TAKEN_AT_ONCE):
            if self._balance.leaves_it(self._held()):
                self._listen_again_in(RECHECK_SECONDS)
                return
            if not self._accept_one():
                return

    def _listen_again_in(self, seconds: float) -> None:
        self._loop.remove_reader(self._sock.fileno())
        self._waiting = self._loop.call_later(seconds, self._look_again)

    def _look_again(self) -> None:
        self._waiting = None
        waiting = select.poll()
        waiting.register(self._sock, select.POLLIN)
        if not waiting.poll(0):
            self._balance.nothing_waits()
        self._loop.add_reader(self._sock.fileno(), self._ready)

    def _accept_one(self) -> bool:
        """Whether a connection was accepted (and another may be waiting)."""
        try:
            connection, _ = self._sock.accept()
        except (BlockingIOError, InterruptedError, ConnectionAbortedError):
            return False
        except OSError as exc:
            if exc.errno not in OUT_OF_RESOURCES:  # that connection's own trouble (Linux: retry)
                log.debug("a connection failed as it was accepted: %s", exc)
                return False
            log.error("could not accept a connection (%s): trying again in %.0f s", exc, RETRY_SECONDS)
            self._listen_again_in(RETRY_SECONDS)
            return False
        connection.setblocking(False)
        self._setting_up += 1
        self._balance.publish(self._held())
        settled = self._counted_until_made()
        setting_up = asyncio.ensure_future(
            self._loop.connect_accepted_socket(lambda: self._protocol(settled), connection), loop=self._loop
        )
        setting_up.add_done_callback(lambda done: self._set_up(done, settled))
        return True

    def _counted_until_made(self) -> Callable[[], None]:
        """What ends a connection's count as one being set up, once: its protocol counts it from
        connection_made on (uvicorn's `connections`), or its setup failed."""
        counted = [True]

        def settled() -> None:
            if counted[0]:
                counted[0] = False
                self._setting_up -= 1

        return settled

    def _protocol(self, settled: Callable[[], None]) -> asyncio.Protocol:
        """uvicorn's protocol for the connection, which stops counting as being set up when it counts
        itself (its connection_made, wrapped on the instance: the protocol stays uvicorn's own)."""
        protocol = self._protocol_factory()
        made = protocol.connection_made

        def connection_made(transport: asyncio.BaseTransport) -> None:
            settled()
            made(transport)

        protocol.connection_made = connection_made  # type: ignore[method-assign]
        return protocol

    def _set_up(self, setting_up: asyncio.Future[Any], settled: Callable[[], None]) -> None:
        settled()
        if setting_up.cancelled() or (failed := setting_up.exception()) is None:
            return
        if isinstance(failed, OSError):  # the client went away meanwhile
            log.debug("a connection closed while it was set up: %s", failed)
        else:
            log.error("a connection could not be set up", exc_info=failed)


class BalancedServer(GracefulServer):
    """A worker's server: its listening socket served by a BalancedListener. uvicorn makes the
    server for each socket it is given with the loop's create_server, which this answers for the
    time of the startup; what uvicorn builds each connection with is its own, unchanged."""

    def __init__(
        self, *args: Any, balance: Balance | None = None, loaded: Callable[[], bool] = lambda: True, **kwargs: Any
    ) -> None:
        super().__init__(*args, **kwargs)
        self.balance = balance
        self.loaded = loaded

    async def startup(self, sockets: list[socket.socket] | None = None) -> None:
        balance = self.balance
        if balance is None or not sockets:
            await super().startup(sockets)
            return
        loop = asyncio.get_running_loop()
        loops_own = loop.create_server

        async def create_server(protocol_factory: Any, *, sock: socket.socket, ssl: Any = None, **options: Any) -> Any:
            if ssl is not None:
                return await loops_own(protocol_factory, sock=sock, ssl=ssl, **options)
            sock.listen(options.get("backlog", 100))  # as the loop's own server starts listening
            return BalancedListener(
                loop, protocol_factory, sock, balance, lambda: len(self.server_state.connections), self.loaded
            )

        loop.create_server = create_server  # type: ignore[method-assign,assignment]
        try:
            await super().startup(sockets)
        finally:
            del loop.create_server
