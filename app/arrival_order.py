"""HTTP requests start in the order they arrived, a turn of the event loop's worth at a time.

uvicorn reads every socket that is readable when the loop polls, then runs the requests it read one
after the other before it polls again. Under load, a request that arrives while such a batch is being
run waits for the whole batch, then for its place in the next one, whichever order the sockets are
read in: with 8 clients each waiting for its answer before asking again, a request could wait for up
to 15 others, and the personalisation query's p99 was 2.3 times its p50 (bench/execution.py).

Here a request that arrives while others wait, or once the current turn of the loop has spent
TURN_SECONDS on the requests it started, takes a place in a queue, first come first served. Each
later turn starts the requests at the head of the queue that the turn's time allows, by what a
request took in the turns before (one at least). The loop then polls between two turns, so a
request is read soon after it arrives and waits for those that came before it and at most a turn's
time more: a tail close to the median (p99 11.4-15.5 ms -> 7.5-9.4 ms there). One request a turn, as
this began, cost the personalisation query a tenth of its requests a second when saturated: a poll
of the sockets (a system call) and a turn of the loop for each request, where a turn now starts
three. Under a mixed load every request gets its turn: a list or an ingest takes a turn's time by
itself, and profile queries start several a turn (README, bench serving). A request on an idle
server starts at once. Only the start is ordered: a request that awaits the store or a worker thread
lets the next one start meanwhile. Health checks start at once too (they do no work, and whoever asks
whether the process is alive should not wait behind customers' reads); WebSockets and lifespan pass
untouched.
"""

from __future__ import annotations

import asyncio
import time
from collections import deque

from starlette.types import ASGIApp, Receive, Scope, Send

# What a turn of the loop spends starting requests before the next ones wait for a later turn: a few
# profile queries (~0.3 ms each, saturated), or one request that takes longer.
TURN_SECONDS = 0.001


class ArrivalQueue:
    """The requests of one process waiting for their turn, first come first served."""

    turn_seconds = TURN_SECONDS  # 0: one request a turn

    def __init__(self, turn_seconds: float | None = None) -> None:
        if turn_seconds is not None:
            self.turn_seconds = turn_seconds
        self._loop: asyncio.AbstractEventLoop | None = None
        self._waiting: deque[asyncio.Future[None]] = deque()
        self._started_this_turn = False
        self._turn_began = 0.0
        self._started = 0  # requests started in this turn
        self._per_request = self.turn_seconds  # what a request took of its turn, in the turn before

    def waiting(self) -> int:
        """Requests waiting now (`cdp_http_requests_waiting`): more than a few, and the process is saturated."""
        return sum(not place.done() for place in self._waiting)

    async def turn(self) -> None:
        """Return when the caller may start: at once if no one waits and this turn of the loop has time left."""
        loop = asyncio.get_running_loop()
        if loop is not self._loop:  # another event loop (a restarted server's, a test's): the old queue is gone
            self._loop, self._waiting, self._started_this_turn = loop, deque(), False
        if not self._started_this_turn:
            self._started_this_turn, self._turn_began, self._started = True, time.perf_counter(), 1
            loop.call_soon(self._next)  # at the next turn, the requests at the head of the queue may start
            return
        if not self._waiting and time.perf_counter() - self._turn_began < self.turn_seconds:
            self._started += 1
            return
        place = loop.create_future()
        self._waiting.append(place)
        await place  # cancelled meanwhile: it leaves its place, and the queue goes on at the next turn

    def _next(self) -> None:
        now = time.perf_counter()
        if self._started:
            self._per_request = (now - self._turn_began) / self._started
        self._turn_began, self._started = now, 0
        room = self.turn_seconds
        while self._waiting and (not self._started or room > 0):
            place = self._waiting.popleft()
            if not place.done():  # a request cancelled while it waited has left
                place.set_result(None)
                self._started += 1
                room -= self._per_request
        if self._started:
            place.get_loop().call_soon(self._next)
            return
        self._started_this_turn = False


class ArrivalOrder:
    """ASGI middleware; mounted inside the request observation, so a request's time in the queue is
    part of its measured duration."""

    def __init__(
        self, app: ASGIApp, *, queue: ArrivalQueue | None = None, at_once: tuple[str, ...] = ("/healthz",)
    ) -> None:
        self.app = app
        self.queue = queue or ArrivalQueue()
        self._at_once = at_once

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and scope["path"] not in self._at_once:
            await self.queue.turn()
        await self.app(scope, receive, send)
