"""Several server processes on one embedded store (CDP_WORKERS=2, the real `python -m app serve`): a
membership change made through any worker reaches subscribers on every worker, once each; SIGTERM
stops every worker after it closed its subscriptions with 1001; the demo data is loaded by one
process and the development key made by one, whatever number start together.

Which worker holds a connection is read from the operating system (the process holding the server
end of the TCP connection, /proc), so the server needs nothing added for tests to tell."""

from __future__ import annotations

import asyncio
import json
import multiprocessing
import os
import signal
import socket
import sqlite3
import subprocess
import time
from collections import Counter
from pathlib import Path
from typing import Any

import httpx
import pytest
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed
from websockets.typing import Subprotocol

from app.bootstrap import development_key
from app.store.sqlite.store import SQLiteStore
from tests.builders import demo_fixtures
from tests.server_process import free_port, start_server, wait_for_every_worker

pytestmark = pytest.mark.skipif(not Path("/proc/net/tcp").exists(), reason="reads connections from Linux's /proc")

CREATE = """mutation { createSegment(input: {name: "Buyers",
  condition: {compare: {path: "stats.orders", op: "gte", value: 1}}}) { segment { id } } }"""
SUBSCRIBE = "subscription($segment: ID) { segmentMembershipChanged(segmentId: $segment) { change profile { id } } }"
ORDER = """mutation($email: String!) { ingestEvents(events: [{messageId: $email, type: "order_completed",
  channel: "web", timestamp: "2026-11-01T10:00:00Z", identifiers: [{type: "email", value: $email}],
  properties: {orderId: $email, total: 10}}]) { accepted } }"""
WORKERS = 2
MAX_SUBSCRIBERS = 40  # the kernel hands connections to whichever worker accepts first: open until both have one


def _children(parent: int) -> set[int]:
    children = set()
    for entry in Path("/proc").iterdir():
        try:
            # The command name (in parentheses) may hold spaces: fields are counted after it.
            fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
        except (OSError, IndexError):
            continue
        if entry.name.isdigit() and int(fields[1]) == parent:
            children.add(int(entry.name))
    return children


def _server_end_inode(server_port: int, client_port: int) -> str | None:
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        for line in Path(table).read_text().splitlines()[1:]:
            fields = line.split()
            local, remote, inode = fields[1], fields[2], fields[9]
            if int(local.rsplit(":", 1)[1], 16) == server_port and int(remote.rsplit(":", 1)[1], 16) == client_port:
                return inode
    return None


def _worker_holding(parent: int, server_port: int, client_port: int) -> int:
    """The worker process holding the server end of the connection from `client_port`."""
    for _ in range(50):  # the worker accepted it before the handshake answered; /proc may lag a little
        inode = _server_end_inode(server_port, client_port)
        for pid in _children(parent) if inode else ():
            try:
                descriptors = list(Path(f"/proc/{pid}/fd").iterdir())
            except OSError:
                continue
            for descriptor in descriptors:
                try:
                    if os.readlink(descriptor) == f"socket:[{inode}]":
                        return pid
                except OSError:
                    continue
        time.sleep(0.02)
    raise AssertionError(f"no worker of {parent} holds the connection from port {client_port}")


def _post(port: int, query: str, variables: dict[str, Any] | None = None, token: str | None = None) -> dict[str, Any]:
    headers = {"authorization": f"Bearer {token}"} if token else {}
    response = httpx.post(
        f"http://127.0.0.1:{port}/graphql", json={"query": query, "variables": variables or {}}, headers=headers
    )
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


async def _subscribe(port: int, segment_id: str) -> ClientConnection:
    ws = await connect(f"ws://127.0.0.1:{port}/graphql", subprotocols=[Subprotocol("graphql-transport-ws")])
    await ws.send(json.dumps({"type": "connection_init", "payload": {}}))
    assert json.loads(await ws.recv())["type"] == "connection_ack"
    payload = {"query": SUBSCRIBE, "variables": {"segment": segment_id}}
    await ws.send(json.dumps({"id": "1", "type": "subscribe", "payload": payload}))
    return ws


async def _one_on_each_worker(
    process: subprocess.Popen[Any], port: int, segment_id: str
) -> dict[int, ClientConnection]:
    """Subscribers, opened until every worker holds one; the others are closed."""
    chosen: dict[int, ClientConnection] = {}
    spare: list[ClientConnection] = []
    for _ in range(MAX_SUBSCRIBERS):
        ws = await _subscribe(port, segment_id)
        worker = _worker_holding(process.pid, port, ws.local_address[1])
        if worker in chosen:
            spare.append(ws)  # kept open meanwhile, so the next connection is not handed straight back
        else:
            chosen[worker] = ws
        if len(chosen) == WORKERS:
            break
    for ws in spare:
        await ws.close()
    assert len(chosen) == WORKERS, f"{MAX_SUBSCRIBERS} connections all went to workers {sorted(chosen)}"
    return chosen


def _stop(process: subprocess.Popen[Any]) -> None:
    if process.poll() is None:
        process.kill()
        process.wait()


@pytest.fixture
def two_workers(tmp_path: Path) -> tuple[subprocess.Popen[Any], int]:
    env = {
        "CDP_DATABASE_URL": f"sqlite:///{tmp_path}/cdp.sqlite3",
        "CDP_SEED_FIXTURES": "false",
        "CDP_AUTH": "off",
        "CDP_WORKERS": str(WORKERS),
    }
    port = free_port()
    process = start_server(env, port, output=(tmp_path / "server.log").open("w"), timeout=90)
    _wait_for_every_worker(process, port)
    return process, port


def _wait_for_every_worker(process: subprocess.Popen[Any], port: int) -> None:
    try:
        wait_for_every_worker(port, WORKERS)
    except AssertionError:
        _stop(process)
        raise


async def test_a_change_made_through_one_worker_reaches_subscribers_on_every_worker_once(
    two_workers: tuple[subprocess.Popen[Any], int],
) -> None:
    process, port = two_workers
    try:
        segment_id = _post(port, CREATE)["data"]["createSegment"]["segment"]["id"]
        subscribers = await _one_on_each_worker(process, port, segment_id)
        await asyncio.sleep(0.3)  # each subscription is registered before the change is made

        # Each order is one change made by whichever worker takes the request: over both orders, at
        # least one subscriber is on a worker that did not make the change it hears.
        for customer in ("ada@example.com", "bo@example.com"):
            assert _post(port, ORDER, {"email": customer})["data"]["ingestEvents"]["accepted"] == 1
            for worker, ws in subscribers.items():
                message = json.loads(await asyncio.wait_for(ws.recv(), 5))
                assert message["type"] == "next", (worker, message)
                assert message["payload"]["data"]["segmentMembershipChanged"]["change"] == "ENTERED"
        for worker, ws in subscribers.items():  # once: the worker that made a change does not repeat it
            with pytest.raises(TimeoutError):
                heard = await asyncio.wait_for(ws.recv(), 0.5)
                raise AssertionError(f"worker {worker} delivered again: {heard!r}")
            await ws.close()
    finally:
        _stop(process)


def test_connections_opened_together_are_shared_by_the_workers(
    two_workers: tuple[subprocess.Popen[Any], int],
) -> None:
    """A client opening its keep-alive connections together (a connector's 4) gets both workers: they
    all went to whichever worker woke first (app/accept_balance.py)."""
    process, port = two_workers
    try:
        for _ in range(3):  # a burst after connections closed counts them closed
            clients = [socket.create_connection(("127.0.0.1", port)) for _ in range(2 * WORKERS)]
            try:
                holders = Counter(_worker_holding(process.pid, port, client.getsockname()[1]) for client in clients)
            finally:
                for client in clients:
                    client.close()
            assert sorted(holders.values()) == [2] * WORKERS, holders
            time.sleep(0.5)  # each worker has seen its connections close and said so
    finally:
        _stop(process)


def test_metrics_answered_by_any_worker_count_what_every_worker_did(
    two_workers: tuple[subprocess.Popen[Any], int],
) -> None:
    process, port = two_workers
    orders: dict[int, int] = {}  # worker pid → orders it took
    try:
        for n in range(MAX_SUBSCRIBERS):
            with httpx.Client(base_url=f"http://127.0.0.1:{port}") as connection:  # one connection, one worker
                worker = connection.get("/healthz").json()["pid"]
                if orders.get(worker, 0) >= 3:
                    continue
                taken = connection.post("/graphql", json={"query": ORDER, "variables": {"email": f"c{n}@example.com"}})
                assert taken.json()["data"]["ingestEvents"]["accepted"] == 1
                orders[worker] = orders.get(worker, 0) + 1
            if len(orders) == WORKERS and min(orders.values()) >= 3:
                break
        assert len(orders) == WORKERS, f"every connection went to workers {sorted(orders)}"
        accepted = 'cdp_events_ingested_total{result="ACCEPTED",type="order_completed"}'
        for _ in range(8):  # whichever worker answers
            scraped = httpx.get(f"http://127.0.0.1:{port}/metrics").text
            assert f"{accepted} {float(sum(orders.values()))}" in scraped, scraped
    finally:
        _stop(process)


async def test_sigterm_stops_every_worker_after_closing_its_subscriptions(
    two_workers: tuple[subprocess.Popen[Any], int],
) -> None:
    process, port = two_workers
    try:
        segment_id = _post(port, CREATE)["data"]["createSegment"]["segment"]["id"]
        subscribers = await _one_on_each_worker(process, port, segment_id)
        workers = _children(process.pid) & set(subscribers)
        assert len(workers) == WORKERS

        process.send_signal(signal.SIGTERM)
        for worker, ws in subscribers.items():
            with pytest.raises(ConnectionClosed) as closed:
                await asyncio.wait_for(ws.recv(), 15)
            assert closed.value.rcvd is not None and closed.value.rcvd.code == 1001, (worker, closed.value.rcvd)
        assert await asyncio.to_thread(process.wait, 30) == 0
        assert not any(Path(f"/proc/{worker}").exists() for worker in workers)  # no worker left behind
    finally:
        _stop(process)


def test_no_worker_outlives_a_killed_supervisor(two_workers: tuple[subprocess.Popen[Any], int]) -> None:
    """SIGKILL leaves the supervisor no chance to stop its workers: the kernel tells them (Linux)."""
    process, _ = two_workers
    workers = _children(process.pid)
    assert len(workers) >= WORKERS
    process.kill()
    process.wait()
    deadline = time.monotonic() + 30
    while any(Path(f"/proc/{worker}").exists() for worker in workers) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not [w for w in workers if Path(f"/proc/{w}").exists()], "workers still running after their supervisor"


WAITING = "waiting for the process loading the demo data"


async def test_one_worker_loads_the_demo_data_all_tell_its_progress_and_serve_the_same_development_key(
    tmp_path: Path,
) -> None:
    env = {
        "CDP_DATABASE_URL": f"sqlite:///{tmp_path}/cdp.sqlite3",
        "CDP_FIXTURES_DIR": str(demo_fixtures(tmp_path / "fixtures", 3000)),  # both workers start meanwhile
        "CDP_TRAITS_EVERY_MINUTES": "0",
        "CDP_WORKERS": str(WORKERS),
    }
    port = free_port()
    log = tmp_path / "server.log"
    process = start_server(env, port, output=log.open("w"), timeout=90)
    try:
        _wait_for_every_worker(process, port)
        deadline = time.monotonic() + 120
        ready, stages = 0, []
        while ready < 10:  # ten answers in a row, from whichever workers take them
            assert time.monotonic() < deadline, "not ready in time:\n" + log.read_text()
            answer = httpx.get(f"http://127.0.0.1:{port}/readyz")
            if answer.status_code == 503:
                stages.append(answer.json()["progress"]["stage"])
            ready = ready + 1 if answer.status_code == 200 else 0
            await asyncio.sleep(0.1)
        said = log.read_text()
        assert said.count("loading the demo data set") == 1, said
        # Once the loading worker has begun, the waiting one tells its progress too (shared_seed_progress.py).
        begun = next((i for i, stage in enumerate(stages) if stage != WAITING), len(stages))
        assert WAITING not in stages[begun:], stages

        token = (tmp_path / "dev-api-key").read_text().strip()
        logged = [line.split("): ", 1)[1].split()[0] for line in said.splitlines() if "development API key" in line]
        assert logged == [token], said  # one worker announced the one key in the file
        for _ in range(6):
            assert "errors" not in _post(port, "{ segments { id } }", token=token)
    finally:
        process.terminate()
        await asyncio.to_thread(process.wait, 30)
        _stop(process)
    store = SQLiteStore(tmp_path / "cdp.sqlite3")
    keys = [key for key in await store.list_api_keys() if key.name == "local-development"]
    await store.close()
    assert len(keys) == 1


def _live_profiles(database: Path) -> Counter[tuple[tuple[str, ...], tuple[tuple[str, object], ...]]]:
    """Each live profile by its identifiers, with its counters: what a load decided, whatever ids
    its profiles were given."""
    with sqlite3.connect(database) as db:
        documents = [json.loads(doc) for (doc,) in db.execute("SELECT doc FROM profiles WHERE merged_into IS NULL")]
    found: Counter[tuple[tuple[str, ...], tuple[tuple[str, object], ...]]] = Counter()
    for document in documents:
        identifiers = tuple(sorted(f"{i['type']}:{i['value']}" for i in document.get("identifiers", [])))
        stats = document.get("stats") or {}
        counters = tuple(
            sorted((k, v) for k, v in stats.items() if isinstance(v, int | float) and not isinstance(v, bool))
        )
        found[(identifiers, counters)] += 1
    return found


async def test_two_workers_load_the_demo_datas_events_side_by_side_as_one_worker_would(tmp_path: Path) -> None:
    """The loading worker offers half of the events (those of people the other half never names) to
    the other worker (app/demo_events.py): the store ends as one worker's load leaves it."""
    fixtures = demo_fixtures(tmp_path / "fixtures", 6000)  # past HELPED_FROM
    loaded, said = {}, {}
    for workers in (1, 2):
        folder = tmp_path / f"workers-{workers}"
        folder.mkdir()
        env = {
            "CDP_DATABASE_URL": f"sqlite:///{folder}/cdp.sqlite3",
            "CDP_FIXTURES_DIR": str(fixtures),
            "CDP_TRAITS_EVERY_MINUTES": "0",
            "CDP_WORKERS": str(workers),
        }
        port, log = free_port(), folder / "server.log"
        process = start_server(env, port, output=log.open("w"), timeout=90)
        try:
            deadline = time.monotonic() + 120
            while httpx.get(f"http://127.0.0.1:{port}/readyz").status_code != 200:
                assert time.monotonic() < deadline, "not ready in time:\n" + log.read_text()
                await asyncio.sleep(0.1)
        finally:
            process.terminate()
            await asyncio.to_thread(process.wait, 30)
            _stop(process)
        said[workers] = log.read_text()
        loaded[workers] = _live_profiles(folder / "cdp.sqlite3")
        with sqlite3.connect(folder / "cdp.sqlite3") as db:
            assert db.execute("SELECT count(*) FROM history").fetchone() == (6000,), said[workers]
        assert "6000 events" in said[workers], said[workers]
    assert "beside the worker process loading the rest" in said[2], said[2]
    assert "beside the worker process loading the rest" not in said[1]
    assert loaded[2] == loaded[1]


class _SlowKeys:
    """The real store, taking its time to store a key: the moment between finding no key file and
    writing one, which other processes starting together must not slip into, is made wide."""

    def __init__(self, inner: SQLiteStore) -> None:
        self._inner = inner

    async def insert_api_key(self, key: Any) -> None:
        await asyncio.sleep(0.3)
        await self._inner.insert_api_key(key)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._inner, name)


def _take_key(path: str, key_file: str, start: Any, tokens: Any) -> None:
    async def run() -> str:
        store = SQLiteStore(path)
        start.wait(10)
        token = await development_key(_SlowKeys(store), Path(key_file))
        await store.close()
        return token

    tokens.put(asyncio.run(run()))


async def test_processes_starting_together_make_one_development_key(tmp_path: Path) -> None:
    path, key_file = str(tmp_path / "cdp.sqlite3"), str(tmp_path / "dev-api-key")
    SQLiteStore(path)  # the schema, once
    context = multiprocessing.get_context("spawn")
    start, tokens = context.Event(), context.Queue()
    processes = [context.Process(target=_take_key, args=(path, key_file, start, tokens)) for _ in range(3)]
    for process in processes:
        process.start()
    start.set()
    taken = [tokens.get(timeout=60) for _ in processes]
    for process in processes:
        process.join(10)
    assert taken == [Path(key_file).read_text().strip()] * 3
    store = SQLiteStore(path)
    assert len(await store.list_api_keys()) == 1
    await store.close()
