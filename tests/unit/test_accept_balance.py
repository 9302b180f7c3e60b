"""The table the workers share their connection counts through, and when a worker leaves a waiting
connection to another (app/accept_balance.py); tests/integration/test_workers.py shows two real
workers sharing a burst of connections."""

from __future__ import annotations

import asyncio
import os
import socket
import subprocess
import time
from collections.abc import Callable, Iterator

import pytest

from app import accept_balance
from app.accept_balance import Balance, BalancedListener, ConnectionTable


def _dead_pid() -> int:
    finished = subprocess.Popen(["true"])
    finished.wait()
    return finished.pid


def test_each_worker_claims_its_own_slot_and_takes_over_those_of_dead_workers() -> None:
    table = ConnectionTable(slots=2)
    dead = _dead_pid()
    assert table.claim(dead) == 0
    assert table.claim(os.getpid()) == 0  # the dead worker's
    assert table.claim(os.getpid()) == 0  # a worker's own slot stays its own
    assert table.claim(os.getppid()) == 1
    assert table.claim(12345678) is None  # every slot held by a live worker


def test_a_slot_is_released_only_by_its_owner() -> None:
    table = ConnectionTable(slots=1)
    slot = table.claim(os.getppid())
    assert slot is not None
    table.release(slot, os.getpid())  # a worker that left it before, taken over since
    assert table.claim(os.getpid()) is None
    table.release(slot, os.getppid())
    assert table.claim(os.getpid()) == slot


def test_fewer_means_by_one_or_by_a_sixteenth_of_many() -> None:
    table = ConnectionTable(slots=2)
    mine, other = table.claim(os.getpid()), table.claim(os.getppid())
    assert mine is not None and other is not None
    table.publish(other, 1)
    assert not table.holds_fewer(mine, 1)
    assert table.holds_fewer(mine, 2)
    table.publish(other, 950)
    assert not table.holds_fewer(mine, 1000)  # within a sixteenth: thousands of clients need not alternate
    table.publish(other, 930)
    assert table.holds_fewer(mine, 1000)


def test_a_worker_not_heard_from_lately_is_not_waited_for(monkeypatch: pytest.MonkeyPatch) -> None:
    """Its loop blocked or stopped, killed and not yet replaced, its pid reused: its count is old."""
    monkeypatch.setattr(accept_balance, "STALE_SECONDS", 0.1)
    table = ConnectionTable(slots=3)
    mine, quiet, never = table.claim(os.getpid()), table.claim(os.getppid()), table.claim(1)
    assert mine is not None and quiet is not None and never is not None
    table.publish(quiet, 0)
    assert table.holds_fewer(mine, 5)
    time.sleep(0.15)
    assert not table.holds_fewer(mine, 5)  # and `never` (claimed, never listening) is not waited for either


def test_a_connection_is_left_to_a_worker_holding_fewer_until_the_wait_runs_out(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(accept_balance, "WAIT_LIMIT_SECONDS", 0.2)
    table = ConnectionTable(slots=2)
    other = table.claim(os.getppid())
    balance = Balance.joined(table)
    assert balance is not None and other is not None
    table.publish(other, 0)
    assert not balance.leaves_it(0)  # as many as the other: take it
    assert balance.leaves_it(1)
    assert balance.leaves_it(1)
    time.sleep(0.25)
    table.publish(other, 0)  # still listening
    assert not balance.leaves_it(1)  # nobody took it: this worker does
    assert not balance.leaves_it(2)  # and what comes for as long again (a busy worker's burst)
    time.sleep(0.25)
    table.publish(other, 0)
    assert balance.leaves_it(2)
    table.publish(other, 2)
    assert not balance.leaves_it(2)


class _Accepted:
    """A listening socket on loopback, the clients connected to it, and when each connection a
    listener accepted was given its protocol."""

    def __init__(self) -> None:
        self.made: list[float] = []
        self.clients: list[socket.socket] = []
        self.socket = socket.socket()
        self.socket.bind(("127.0.0.1", 0))
        self.socket.listen(8)
        made = self.made

        class Counted(asyncio.Protocol):
            def connection_made(self, transport: asyncio.BaseTransport) -> None:
                made.append(time.monotonic())

        self.protocol = Counted

    def connect(self) -> None:
        self.clients.append(socket.create_connection(self.socket.getsockname()))

    async def until(self, count: int, seconds: float, heard: Callable[[], None]) -> None:
        """Until `count` connections were made or `seconds` passed, `heard` called meanwhile (another
        worker publishing its count)."""
        asked = time.monotonic()
        while len(self.made) < count and time.monotonic() - asked < seconds:
            heard()
            await asyncio.sleep(0.01)

    def close(self) -> None:
        for client in self.clients:
            client.close()
        self.socket.close()


@pytest.fixture
def accepted() -> Iterator[_Accepted]:
    found = _Accepted()
    yield found
    found.close()


async def test_a_listener_left_waiting_takes_the_connection_once_the_wait_runs_out(
    monkeypatch: pytest.MonkeyPatch, accepted: _Accepted
) -> None:
    """Another worker says it holds none and never accepts: the connection waits WAIT_LIMIT, then
    this worker takes it; closed, the listener takes no more and gives its slot back."""
    monkeypatch.setattr(accept_balance, "WAIT_LIMIT_SECONDS", 0.2)
    table = ConnectionTable(slots=2)
    other = table.claim(os.getppid())
    balance = Balance.joined(table)
    assert balance is not None and other is not None
    held = 1  # this worker holds one already: more than the other's none
    listener = BalancedListener(asyncio.get_running_loop(), accepted.protocol, accepted.socket, balance, lambda: held)
    try:
        asked = time.monotonic()
        accepted.connect()
        await accepted.until(1, 5, lambda: table.publish(other, 0))  # heard from, holding none
        assert accepted.made and accepted.made[0] - asked >= 0.15  # left to the other worker for the wait
        listener.close()
        assert table.claim(12345678) is not None  # its slot is free again
        accepted.connect()
        await accepted.until(2, 0.5, lambda: table.publish(other, 0))
        assert len(accepted.made) == 1  # closed: nothing more accepted
    finally:
        listener.close()


async def test_a_worker_whose_application_loads_leaves_connections_to_one_that_serves(
    monkeypatch: pytest.MonkeyPatch, accepted: _Accepted
) -> None:
    """A worker started again (SIGHUP) holds none yet, and would take every new connection while its
    application loads; the others, serving, get them meanwhile however many they hold."""
    monkeypatch.setattr(accept_balance, "WAIT_LIMIT_SECONDS", 0.05)  # a serving worker busy past it
    table = ConnectionTable(slots=2)
    serving = table.claim(os.getppid())
    balance = Balance.joined(table)
    assert balance is not None and serving is not None
    loaded = [False]
    loop = asyncio.get_running_loop()
    listener = BalancedListener(loop, accepted.protocol, accepted.socket, balance, lambda: 0, lambda: loaded[0])
    try:
        accepted.connect()
        await accepted.until(1, 0.3, lambda: table.publish(serving, 50))  # heard from, holding many
        assert not accepted.made  # left to the worker that serves, past WAIT_LIMIT: it is heard from
        assert not table.holds_fewer(serving, 50)  # which leaves nothing to this one
        loaded[0] = True
        await accepted.until(1, 2, lambda: table.publish(serving, 50))
        assert accepted.made  # its application started: it holds fewer, and takes it
    finally:
        listener.close()
