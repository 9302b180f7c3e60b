"""The bulk process (app/bulk_process.py) with the real `python -m app serve`: a big batch is answered
by it once it has started (the first in the serving process meanwhile), its events are read through
the serving process and its segment changes heard there; a bulk process killed is started again and
its requests answered meanwhile; one killed holding a request answers 503 with what to do; and it
stops with its server, however that one stops.

Which process answered is read from the JSON access log's `pid`, and which processes are the
server's from /proc: the server needs nothing added for tests to tell."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import threading
import time
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.integration.test_workers import CREATE, _children, _post, _stop, _subscribe
from tests.interleaving import until
from tests.server_process import free_port, start_server

pytestmark = pytest.mark.skipif(not Path("/proc").exists(), reason="reads the server's processes from Linux's /proc")

BULK_BYTES = 2048
INGEST = """mutation($events: [EventInput!]!) { ingestEvents(events: $events) {
  accepted duplicates rejected results { messageId status reason } } }"""
PROFILE = """query($email: String!) { profileByIdentifier(type: "email", value: $email) { id stats { orders } } }"""


def _orders(prefix: str, count: int, *, bad: int | None = None, pad: int = 0) -> list[dict[str, Any]]:
    """`count` orders, each of its own customer; the one at `bad` with a timestamp that is no date;
    each `pad` characters longer (a note in its properties)."""
    return [
        {
            "messageId": f"{prefix}-{n}",
            "type": "order_completed",
            "channel": "web",
            "timestamp": "yesterday" if n == bad else "2026-11-01T10:00:00Z",
            "identifiers": [{"type": "email", "value": f"{prefix}-{n}@example.com"}],
            "properties": {"orderId": f"{prefix}-{n}", "total": 10 + n, "note": "x" * pad},
        }
        for n in range(count)
    ]


def _ingest(port: int, events: list[dict[str, Any]], *, key: str | None = None) -> httpx.Response:
    headers = {"authorization": f"Bearer {key}"} if key else {}
    return httpx.post(
        f"http://127.0.0.1:{port}/graphql",
        json={"query": INGEST, "variables": {"events": events}},
        headers=headers,
        timeout=60,
    )


def _body_bytes(events: list[dict[str, Any]]) -> int:
    return len(json.dumps({"query": INGEST, "variables": {"events": events}}))


class _Log:
    """The server's JSON log lines, as written so far."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def lines(self) -> list[dict[str, Any]]:
        found = []
        for text in self.path.read_text().splitlines():
            try:
                found.append(json.loads(text))
            except ValueError:
                continue  # the command's own first line is for a terminal
        return found

    def bulk_ready(self, after: int = 0) -> int:
        """The pid of a bulk process that said it is ready, waited for; one other than `after`."""
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            for line in self.lines():
                words = line["message"].split()
                if line["message"].startswith("bulk process ") and words[-1] == "ready" and int(words[2]) != after:
                    return int(words[2])
            time.sleep(0.1)
        raise AssertionError("no bulk process became ready")

    def answered_by(self, count: int) -> list[int]:
        """The pids of the processes that wrote the access lines of the first `count` POSTs."""
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            access = [line for line in self.lines() if line["logger"] == "cdp.access"]
            posts = [line["pid"] for line in access if line["method"] == "POST"]
            if len(posts) >= count:
                return posts[:count]
            time.sleep(0.05)
        raise AssertionError(f"fewer than {count} POSTs logged")


@pytest.fixture(params=["off"])
def server(tmp_path: Path, request: pytest.FixtureRequest) -> Any:
    env = {
        "CDP_DATABASE_URL": f"sqlite:///{tmp_path}/cdp.sqlite3",
        "CDP_SEED_FIXTURES": "false",
        "CDP_AUTH": request.param,
        "CDP_BULK_BYTES": str(BULK_BYTES),
        "CDP_LOG_FORMAT": "json",
    }
    port = free_port()
    process = start_server(env, port, output=(tmp_path / "server.log").open("w"), timeout=90)
    try:
        yield process, port, _Log(tmp_path / "server.log")
    finally:
        bulk = _children(process.pid)
        _stop(process)
        for pid in bulk:  # a bulk process of a server killed stops by itself (the kernel's SIGTERM)
            _gone(pid)


def _socket_of(pid: int) -> str:
    """The path of the Unix socket process `pid` listens on (its descriptors, /proc/net/unix)."""
    inodes = set()
    for descriptor in Path(f"/proc/{pid}/fd").iterdir():
        with contextlib.suppress(OSError):
            if (target := os.readlink(descriptor)).startswith("socket:["):
                inodes.add(target[len("socket:[") : -1])
    for line in Path("/proc/net/unix").read_text().splitlines()[1:]:
        fields = line.split()
        if len(fields) == 8 and fields[6] in inodes and fields[7].endswith("bulk.sock"):
            return fields[7]
    raise AssertionError(f"process {pid} listens on no bulk.sock")


def _connected_to(path: str) -> None:
    """Until a connection to `path` exists beside its listening socket (accepted or not)."""

    def connected() -> bool:
        return sum(line.endswith(f" {path}") for line in Path("/proc/net/unix").read_text().splitlines()) >= 2

    until(connected, f"nothing connected to {path}", seconds=30, every=0.02)


def _gone(pid: int, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while Path(f"/proc/{pid}").exists() and _state(pid) != "Z":
        if time.monotonic() > deadline:
            os.kill(pid, signal.SIGKILL)
            raise AssertionError(f"process {pid} outlived its server")
        time.sleep(0.05)


def _state(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return "Z"


def test_a_big_batch_is_ingested_by_the_bulk_process_and_read_through_the_server(server: Any) -> None:
    process, port, log = server
    first, second = _orders("first", 20), _orders("second", 20, bad=3)
    assert _body_bytes(first) >= BULK_BYTES and _body_bytes(_orders("small", 1)) < BULK_BYTES

    answer = _ingest(port, first).json()["data"]["ingestEvents"]  # answered here: the bulk process starts
    assert (answer["accepted"], answer["rejected"]) == (20, 0)
    bulk = log.bulk_ready()
    assert bulk in _children(process.pid)

    answer = _ingest(port, second).json()["data"]["ingestEvents"]
    assert (answer["accepted"], answer["rejected"]) == (19, 1)
    [refused] = [result for result in answer["results"] if result["status"] == "REJECTED"]
    assert refused["messageId"] == "second-3" and "timestamp" in refused["reason"]
    assert _ingest(port, _orders("small", 1)).json()["data"]["ingestEvents"]["accepted"] == 1
    assert log.answered_by(3) == [process.pid, bulk, process.pid]

    def orders_of(email: str) -> Any:
        profile = _post(port, PROFILE, {"email": email})["data"]["profileByIdentifier"]
        return profile and profile["stats"]["orders"]

    assert orders_of("second-5@example.com") == 1  # written by the bulk process, read by the server
    assert orders_of("second-3@example.com") is None  # the refused event wrote nothing

    # /metrics (the server's) counts the events of both processes
    exposition = httpx.get(f"http://127.0.0.1:{port}/metrics").text
    counted = [line.split()[-1] for line in exposition.splitlines() if line.startswith("cdp_events_ingested_total{")]
    assert sum(float(value) for value in counted) == 20 + 20 + 1
    kinds = [line for line in exposition.splitlines() if line.startswith("# TYPE ")]
    assert len(kinds) == len(set(kinds))  # each metric once, the two processes' values summed


def test_the_bulk_process_collects_as_batches_want_and_the_server_as_its_loop_wants(server: Any) -> None:
    process, port, log = server
    _ingest(port, _orders("first", 20))
    bulk = log.bulk_ready()
    said = {line["pid"]: line["message"] for line in log.lines() if line["message"].startswith("collector: ")}
    assert said[process.pid].endswith("every 0.01 s and past 10,000 net allocations")  # app/collector.py
    assert said[bulk].endswith("every 30 s and past 1,000,000 net allocations")


async def test_a_subscriber_of_the_server_hears_a_change_the_bulk_process_made(server: Any) -> None:
    process, port, log = server
    segment_id = _post(port, CREATE)["data"]["createSegment"]["segment"]["id"]
    _ingest(port, _orders("warm", 20))
    log.bulk_ready()
    ws = await _subscribe(port, segment_id)
    try:
        await asyncio.sleep(0.3)  # the subscription is registered before the change is made
        answer = await asyncio.to_thread(_ingest, port, _orders("buyer", 20))
        assert answer.json()["data"]["ingestEvents"]["accepted"] == 20
        heard = set()
        while len(heard) < 20:
            message = json.loads(await asyncio.wait_for(ws.recv(), 10))
            assert message["type"] == "next", message
            assert message["payload"]["data"]["segmentMembershipChanged"]["change"] == "ENTERED"
            heard.add(message["payload"]["data"]["segmentMembershipChanged"]["profile"]["id"])
    finally:
        await ws.close()
    assert log.answered_by(3)[2] != process.pid  # the buyers' batch was the bulk process's


def test_a_bulk_process_killed_is_started_again_and_its_batches_answered_meanwhile(server: Any) -> None:
    process, port, log = server
    _ingest(port, _orders("first", 20))
    killed = log.bulk_ready()
    os.kill(killed, signal.SIGKILL)
    _gone(killed)

    answer = _ingest(port, _orders("meanwhile", 20)).json()["data"]["ingestEvents"]
    assert answer["accepted"] == 20
    again = log.bulk_ready(after=killed)
    assert again in _children(process.pid)
    assert _ingest(port, _orders("after", 20)).json()["data"]["ingestEvents"]["accepted"] == 20
    assert log.answered_by(3) == [process.pid, process.pid, again]


def test_a_bulk_process_killed_holding_a_batch_answers_503_with_what_to_do(server: Any) -> None:
    """Stopped (SIGSTOP) once it holds the request, then killed: what it stored is unknown, and the
    client is told to send the batch again, which answers DUPLICATE for what was stored."""
    _, port, log = server
    _ingest(port, _orders("first", 20))
    bulk = log.bulk_ready()
    os.kill(bulk, signal.SIGSTOP)
    answers: list[httpx.Response] = []
    listening = _socket_of(bulk)
    sending = threading.Thread(target=lambda: answers.append(_ingest(port, _orders("held", 20))))
    sending.start()
    _connected_to(listening)  # the request reached the stopped process's socket (not yet accepted)
    os.kill(bulk, signal.SIGKILL)
    sending.join(30)
    [answer] = answers
    assert answer.status_code == 503
    [error] = answer.json()["errors"]
    assert error["extensions"]["code"] == "SERVICE_UNAVAILABLE" and "send the batch again" in error["message"]
    assert answer.headers["retry-after"] == "1"
    again = _ingest(port, _orders("held", 20)).json()["data"]["ingestEvents"]  # here, or by a new bulk process
    assert again["accepted"] + again["duplicates"] == 20 and again["rejected"] == 0


@pytest.mark.parametrize("stop", [signal.SIGTERM, signal.SIGKILL], ids=["SIGTERM", "SIGKILL"])
def test_a_bulk_process_stops_with_its_server(server: Any, stop: signal.Signals) -> None:
    process, port, log = server
    _ingest(port, _orders("first", 20))
    bulk = log.bulk_ready()
    folder = Path(_socket_of(bulk)).parent
    process.send_signal(stop)
    process.wait(30)
    _gone(bulk)
    assert not Path(f"/proc/{bulk}").exists() or _state(bulk) == "Z"
    assert not folder.exists()  # its socket's folder is removed, by the server or, killed, by the bulk process


def test_a_small_body_never_starts_a_bulk_process(server: Any) -> None:
    process, port, log = server
    for n in range(3):
        assert _ingest(port, _orders(f"small{n}", 1)).json()["data"]["ingestEvents"]["accepted"] == 1
    assert _children(process.pid) == set() and log.answered_by(3) == [process.pid] * 3


@pytest.mark.parametrize("server", ["on"], indirect=True)
@pytest.mark.parametrize("key", [None, "cdp_000000000000_not-a-key"], ids=["no key", "unknown key"])
def test_a_big_batch_refused_by_the_bulk_process_gets_its_reason_and_writes_nothing(
    server: Any, key: str | None, tmp_path: Path
) -> None:
    """Refused before its body is read: the bulk process still reads it, so that its answer reaches
    the serving process (a connection closed with a body unread is reset, and the answer lost)."""
    process, port, log = server
    development = (tmp_path / "dev-api-key").read_text().strip()
    assert _ingest(port, _orders("first", 20), key=development).status_code == 200
    bulk = log.bulk_ready()

    refused_batch = _orders("refused", 1000, pad=400)  # more than a socket's buffer (~208 KiB) takes unread
    assert _body_bytes(refused_batch) > 512 * 1024
    refused = _ingest(port, refused_batch, key=key)
    assert refused.status_code == 401, refused.text
    [error] = refused.json()["errors"]
    assert error["extensions"]["code"] == "UNAUTHENTICATED"
    assert ("Bearer" if key is None else "unknown API key") in error["message"]
    assert log.answered_by(2) == [process.pid, bulk]
    found = _post(port, PROFILE, {"email": "refused-0@example.com"}, token=development)
    assert found["data"]["profileByIdentifier"] is None
