"""Run the real server (`python -m app serve`) as a subprocess for end-to-end tests, or the application
in this process behind a real socket (`serving`)."""

from __future__ import annotations

import asyncio
import os
import socket
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Iterator, Sequence
from contextlib import asynccontextmanager, contextmanager
from pathlib import Path
from typing import IO, Any

import httpx
import uvicorn

from app.bootstrap import Services
from app.main import create_app

ROOT = Path(__file__).resolve().parents[1]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def start_server(
    env: dict[str, str],
    port: int,
    *,
    output: IO[Any] | int = subprocess.DEVNULL,
    cwd: Path = ROOT,
    timeout: float = 60,
    command: Sequence[str] | None = None,
) -> subprocess.Popen[Any]:
    """Start `python -m app serve` on loopback `port` (stdout and stderr to `output`) and return the
    process once the application answers /healthz (not the stand-in that answers while the application
    loads, app/starting.py); a server that exits or does not answer in time fails the test.
    `command` runs another server instead (e.g. uvicorn itself); it must answer on loopback `port`."""
    process = subprocess.Popen(
        command or [sys.executable, "-m", "app", "serve", "--host", "127.0.0.1", "--port", str(port)],
        cwd=cwd,
        # One worker process unless the test asks for more (tests/integration/test_workers.py): the others
        # test what one process does, and start faster with one.
        env={**os.environ, "PYTHONPATH": str(ROOT), "CDP_WORKERS": "1", **env},
        stdout=output,
        stderr=subprocess.STDOUT,
        text=True,
    )
    deadline = time.monotonic() + timeout
    while True:
        if process.poll() is not None:
            said = process.stdout.read() if process.stdout else _written(output)
            raise AssertionError(f"server exited with {process.returncode}:\n{said}")
        try:
            health = httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=1)
            if health.status_code == 200 and not health.json().get("starting"):
                return process
        except httpx.TransportError:
            pass
        if time.monotonic() > deadline:
            process.kill()
            process.wait()
            raise AssertionError("server did not answer /healthz in time")
        time.sleep(0.1)


def wait_for_every_worker(port: int, workers: int, *, timeout: float = 90) -> None:
    """Until each of the `workers` worker processes' application has answered /healthz on loopback
    `port` (the first to start answers alone for a while; a worker whose application still loads
    answers `"starting": true`, app/starting.py, and waits to answer anything else)."""
    answered: set[int] = set()
    deadline = time.monotonic() + timeout
    while len(answered) < workers:
        if time.monotonic() > deadline:
            raise AssertionError(f"only workers {sorted(answered)} answered")
        health = httpx.get(f"http://127.0.0.1:{port}/healthz", trust_env=False).json()  # never a proxy
        if not health.get("starting"):
            answered.add(health["pid"])
        time.sleep(0.05)


def _written(output: IO[Any] | int) -> str:
    name = getattr(output, "name", None)
    return Path(name).read_text() if isinstance(name, str) else "(output not kept)"


def ready(url: str, *, timeout: float = 30) -> dict[str, Any]:
    """/readyz's answer once it says 200: a first start loads the demo data after /healthz answers,
    and a busy machine may take a while (503 seeding meanwhile)."""
    deadline = time.monotonic() + timeout
    while (answer := httpx.get(f"{url}/readyz", timeout=10)).status_code != 200:
        assert answer.status_code == 503 and answer.json()["status"] == "seeding", answer.text
        assert time.monotonic() < deadline, f"not ready in {timeout} s: {answer.text}"
        time.sleep(0.1)
    found: dict[str, Any] = answer.json()
    return found


@contextmanager
def running_server(env: dict[str, str], *, cwd: Path = ROOT, timeout: float = 60) -> Iterator[str]:
    """Start the server, wait for /healthz, yield its base URL, and always stop it."""
    port = free_port()
    process = start_server(env, port, output=subprocess.PIPE, cwd=cwd, timeout=timeout)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
        if process.stdout:
            process.stdout.close()


@asynccontextmanager
async def serving(services: Services) -> AsyncIterator[str]:
    """The application over `services`, served by uvicorn on a free loopback port in this event loop
    (a real socket, unlike ASGITransport: what WebSocket clients and concurrent HTTP clients need);
    yields `host:port`."""
    port = free_port()
    server = uvicorn.Server(
        uvicorn.Config(create_app(services=services), host="127.0.0.1", port=port, log_level="error", lifespan="off")
    )
    task = asyncio.create_task(server.serve())
    while not server.started:
        await asyncio.sleep(0.05)
    try:
        yield f"127.0.0.1:{port}"
    finally:
        server.should_exit = True
        await task
