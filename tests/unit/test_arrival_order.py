"""Requests start in the order they arrived, a turn of the event loop's worth at a time (app/arrival_order.py)."""

from __future__ import annotations

import asyncio
import time
from typing import Any

from app.arrival_order import ArrivalOrder, ArrivalQueue


def one_a_turn() -> ArrivalQueue:
    """A queue whose turns have no time to spare: each starts one request (how it began)."""
    return ArrivalQueue(turn_seconds=0)


class Recorder:
    """An application that notes when each request starts, and schedules a note for the loop's next
    turn: a start after that note means the loop turned (and polled) between the two."""

    def __init__(self) -> None:
        self.notes: list[str] = []

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        name = scope["name"]
        self.notes.append(f"start {name}")
        asyncio.get_running_loop().call_soon(self.notes.append, f"turned after {name}")
        await asyncio.sleep(0)


def http(name: str, path: str = "/graphql") -> dict[str, Any]:
    return {"type": "http", "path": path, "name": name}


async def requests_together(app: ArrivalOrder, scopes: list[dict[str, Any]]) -> None:
    await asyncio.gather(*(app(scope, None, None) for scope in scopes))


async def test_without_time_to_spare_requests_arriving_together_start_one_a_turn_in_their_order() -> None:
    recorder = Recorder()
    await requests_together(ArrivalOrder(recorder, queue=one_a_turn()), [http(str(n)) for n in range(5)])

    starts = [note for note in recorder.notes if note.startswith("start")]
    assert starts == [f"start {n}" for n in range(5)]
    for n in range(1, 5):  # the loop turned after each start before the next one
        assert recorder.notes.index(f"turned after {n - 1}") < recorder.notes.index(f"start {n}")


class Busy(Recorder):
    """A request that keeps the loop busy for `seconds` before it first awaits."""

    def __init__(self, seconds: float) -> None:
        super().__init__()
        self.seconds = seconds

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        self.notes.append(f"start {scope['name']}")
        asyncio.get_running_loop().call_soon(self.notes.append, f"turned after {scope['name']}")
        until = time.perf_counter() + self.seconds
        while time.perf_counter() < until:
            pass
        await asyncio.sleep(0)


def turns(notes: list[str]) -> list[list[str]]:
    """The starts grouped by turn of the loop: a start after the note its predecessor left for the next
    turn began a new one."""
    grouped: list[list[str]] = []
    for note in notes:
        if not note.startswith("start"):
            continue
        name = note.removeprefix("start ")
        if grouped and notes.index(f"turned after {grouped[-1][-1]}") > notes.index(note):
            grouped[-1].append(name)
        else:
            grouped.append([name])
    return grouped


async def test_quick_requests_arriving_together_start_in_one_turn_in_their_order() -> None:
    recorder = Recorder()
    await requests_together(
        ArrivalOrder(recorder, queue=ArrivalQueue(turn_seconds=1.0)), [http(str(n)) for n in range(5)]
    )

    assert turns(recorder.notes) == [[str(n) for n in range(5)]]


async def test_slow_requests_start_in_their_order_a_turns_time_at_a_time() -> None:
    busy = Busy(seconds=0.004)  # a turn of 0.01 s holds three at most: 0, 0.004 and 0.008 s in
    await requests_together(ArrivalOrder(busy, queue=ArrivalQueue(turn_seconds=0.01)), [http(str(n)) for n in range(9)])

    grouped = turns(busy.notes)
    assert [name for group in grouped for name in group] == [str(n) for n in range(9)]
    assert len(grouped) >= 3  # the loop turned (and polled) between them
    assert all(len(group) <= 3 for group in grouped), grouped


async def test_without_it_they_all_start_in_the_same_turn() -> None:
    """What the middleware changes: the same requests, straight to the application."""
    recorder = Recorder()
    await requests_together(recorder, [http(str(n)) for n in range(5)])  # type: ignore[arg-type]

    assert recorder.notes[:5] == [f"start {n}" for n in range(5)]


async def test_a_request_on_an_idle_server_starts_at_once() -> None:
    recorder = Recorder()
    app = ArrivalOrder(recorder)
    await requests_together(app, [http("a"), http("b")])  # a queue came and went
    await asyncio.sleep(0)
    recorder.notes.clear()

    asyncio.get_running_loop().call_soon(recorder.notes.append, "a turn of the loop")
    await app(http("alone"), None, None)

    assert recorder.notes[0] == "start alone"  # before the loop turned


async def test_a_request_cancelled_while_it_waits_leaves_the_queue() -> None:
    recorder = Recorder()
    app = ArrivalOrder(recorder, queue=one_a_turn())
    tasks = [asyncio.create_task(app(http(str(n)), None, None)) for n in range(4)]
    await asyncio.sleep(0)  # all have arrived: 0 started, 1 to 3 wait
    tasks[1].cancel()

    results = await asyncio.gather(*tasks, return_exceptions=True)

    assert isinstance(results[1], asyncio.CancelledError)
    assert [note for note in recorder.notes if note.startswith("start")] == ["start 0", "start 2", "start 3"]


async def test_health_checks_and_websockets_do_not_queue() -> None:
    recorder = Recorder()
    scopes = [http("0"), http("1"), http("health", "/healthz"), {"type": "websocket", "path": "/graphql", "name": "ws"}]
    await requests_together(ArrivalOrder(recorder, queue=one_a_turn()), scopes)

    assert recorder.notes[:3] == ["start 0", "start health", "start ws"]  # all in the first turn
    assert recorder.notes.index("turned after 0") < recorder.notes.index("start 1")


def test_a_new_event_loop_starts_with_an_empty_queue() -> None:
    """A loop stopped with a request just started (a server stopped under load), its next turn never
    run, leaves nothing that holds the next loop's requests back."""
    started: list[str] = []

    async def stops_its_loop(scope: dict[str, Any], receive: Any, send: Any) -> None:
        started.append(scope["name"])
        asyncio.get_running_loop().stop()

    app = ArrivalOrder(stops_its_loop)
    first = asyncio.new_event_loop()
    try:
        first.run_until_complete(app(http("first loop"), None, None))
    finally:
        first.close()

    async def next_loop() -> None:
        app.app = Recorder()  # this loop's requests run to their end
        await asyncio.wait_for(app(http("second loop"), None, None), timeout=5)

    asyncio.run(next_loop())

    assert started == ["first loop"]
    assert [note for note in app.app.notes if note.startswith("start")] == ["start second loop"]


async def test_the_queue_counts_the_requests_waiting_for_their_turn() -> None:
    queue = one_a_turn()
    seen: list[int] = []

    async def counts(scope: dict[str, Any], receive: Any, send: Any) -> None:
        seen.append(queue.waiting())

    app = ArrivalOrder(counts, queue=queue)
    tasks = [asyncio.create_task(app(http(str(n)), None, None)) for n in range(4)]
    await asyncio.sleep(0)  # all have arrived: the first started at once, three wait
    assert queue.waiting() == 3
    tasks[2].cancel()  # one leaves
    assert queue.waiting() == 2
    await asyncio.gather(*tasks, return_exceptions=True)

    assert seen == [0, 1, 0]  # at each start, those still waiting behind it
    assert queue.waiting() == 0
