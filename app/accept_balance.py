"""New connections spread over the worker processes by how many each already holds.

The workers share one listening socket, and the event loop (uvloop's, like asyncio's) accepts every
connection waiting on it at once: a client opening its few keep-alive connections together had them
all taken by whichever worker woke first, and the other cores served none of them. Profile queries
from wrk over 4 connections to two workers: one run in three had every connection on one worker,
3,918 requests/s against 6,498-7,115 when they were shared.

Here each worker accepts one connection at a time and publishes how many it holds in a table the
supervisor shares with every worker. A worker holding more than another live worker leaves a waiting
connection to it, looking again every RECHECK_SECONDS, and takes it itself after WAIT_LIMIT_SECONDS
if nobody has (the other's loop is busy), with whatever comes for as long again. The counts are
uvicorn's open connections (WebSockets included) plus those accepted and not yet set up, published at
each accept and every PUBLISH_SECONDS; a worker that stops listening (shutting down) leaves the table.

A single process (CDP_WORKERS=1) does not use this: there is nobody to leave a connection to.
"""

from __future__ import annotations

import asyncio
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
RETRY_SECONDS = 1.0  # after running out of file descriptors, as asyncio's own accept waits
TAKEN_AT_ONCE = 64  # connections accepted in one turn of the loop at most (a burst of clients)


class ConnectionTable:
    """One slot per worker process: its pid and how many connections it holds. Made by the supervisor
    and handed to each worker it spawns (a process-shared array); slots of dead workers are taken over."""

    def __init__(self, slots: int) -> None:
        self._shared = multiprocessing.get_context("spawn").Array("q", 2 * slots)

    def _values(self) -> Any:
        """The slots' ctypes array: reads and writes of one value need no lock."""
        return self._shared.get_obj()

    def claim(self, pid: int) -> int | None:
        """The slot of `pid` from now on; None when every slot belongs to a live worker."""
        with self._shared.get_lock():
            values = self._values()
            for slot in range(len(values) // 2):
                owner = values[2 * slot]
                if owner in (0, pid) or not is_alive(owner):
                    values[2 * slot], values[2 * slot + 1] = pid, 0
                    return slot
        return None

    def release(self, slot: int, pid: int) -> None:
        """The slot free again, unless another worker took it over meanwhile."""
        with self._shared.get_lock():
            values = self._values()
            if values[2 * slot] == pid:
                values[2 * slot], values[2 * slot + 1] = 0, 0

    def publish(self, slot: int, held: int) -> None:
        self._values()[2 * slot + 1] = held  # one writer per slot: no lock

    def holds_fewer(self, slot: int, held: int) -> bool:
        """Whether a live worker other than `slot`'s holds clearly fewer than `held` connections (by
        one, or by a sixteenth of them when there are many: thousands of clients need not alternate)."""
        below = held - max(1, held // 16)
        values = self._values()
        for other in range(len(values) // 2):
            owner = values[2 * other]
            if other != slot and owner != 0 and values[2 * other + 1] <= below and is_alive(owner):
                return True
        return False


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
        return None if slot is None else cls(table, slot)

    def publish(self, held: int) -> None:
        self._table.publish(self._slot, held)

    def leaves_it(self, held: int) -> bool:
        """Whether the connection waiting now is left to a worker holding fewer: for at most
        WAIT_LIMIT_SECONDS; when nobody took it by then, this worker takes what comes for as long."""
        self.publish(held)
        now = time.monotonic()
        if now < self._taking_until or not self._table.holds_fewer(self._slot, held):
            self._leaving_since = None
            return False
        if self._leaving_since is None:
            self._leaving_since = now
        if now - self._leaving_since < WAIT_LIMIT_SECONDS:
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
    ) -> None:
        self._loop = loop
        self._protocol_factory = protocol_factory
        self._sock = sock
        self._balance = balance
        self._connections = connections  # open ones, as uvicorn counts them
        self._setting_up = 0  # accepted, the protocol not yet made
        self._serving = True
        self._later: asyncio.TimerHandle | None = None
        sock.setblocking(False)
        loop.add_reader(sock.fileno(), self._ready)
        self._publish()

    @property
    def sockets(self) -> tuple[socket.socket, ...]:
        return (self._sock,)

    def is_serving(self) -> bool:
        return self._serving

    def close(self) -> None:
        """No more connections: the table no longer counts this worker as one to leave them to."""
        if not self._serving:
            return
        self._serving = False
        if self._later is not None:
            self._later.cancel()
        self._loop.remove_reader(self._sock.fileno())
        self._balance.leave()

    async def wait_closed(self) -> None:
        return None  # uvicorn waits for its connections itself

    def _held(self) -> int:
        return self._connections() + self._setting_up

    def _publish(self) -> None:
        if self._serving:
            self._balance.publish(self._held())
            self._later = self._loop.call_later(PUBLISH_SECONDS, self._publish)

    def _ready(self) -> None:
        """Connections taken one by one, while none is left to another worker (up to TAKEN_AT_ONCE
        in one turn of the loop)."""
        for _ in range(TAKEN_AT_ONCE):
            if self._balance.leaves_it(self._held()):
                self._loop.remove_reader(self._sock.fileno())
                self._loop.call_later(RECHECK_SECONDS, self._look_again)
                return
            if not self._accept_one():
                return

    def _look_again(self) -> None:
        if not self._serving:
            return
        if not select.select([self._sock], [], [], 0)[0]:
            self._balance.nothing_waits()
        self._loop.add_reader(self._sock.fileno(), self._ready)

    def _accept_one(self) -> bool:
        """Whether a connection was accepted (and another may be waiting)."""
        try:
            connection, _ = self._sock.accept()
        except (BlockingIOError, InterruptedError, ConnectionAbortedError):
            return False
        except OSError as exc:  # out of file descriptors or memory: try again later, as asyncio does
            log.error("could not accept a connection (%s): trying again in %.0f s", exc, RETRY_SECONDS)
            self._loop.remove_reader(self._sock.fileno())
            self._loop.call_later(RETRY_SECONDS, self._look_again)
            return False
        connection.setblocking(False)
        self._setting_up += 1
        self._balance.publish(self._held())
        setting_up = asyncio.ensure_future(
            self._loop.connect_accepted_socket(self._protocol_factory, connection), loop=self._loop
        )
        setting_up.add_done_callback(self._set_up)
        return True

    def _set_up(self, setting_up: asyncio.Future[Any]) -> None:
        self._setting_up -= 1
        if not setting_up.cancelled() and (failed := setting_up.exception()) is not None:
            log.debug("a connection closed while it was set up: %s", failed)


class BalancedServer(GracefulServer):
    """A worker's server: its listening socket served by a BalancedListener. uvicorn makes the
    server for each socket it is given with the loop's create_server, which this answers for the
    time of the startup; what uvicorn builds each connection with is its own, unchanged."""

    def __init__(self, *args: Any, balance: Balance | None = None, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.balance = balance

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
            return BalancedListener(loop, protocol_factory, sock, balance, lambda: len(self.server_state.connections))

        loop.create_server = create_server  # type: ignore[method-assign,assignment]
        try:
            await super().startup(sockets)
        finally:
            del loop.create_server
