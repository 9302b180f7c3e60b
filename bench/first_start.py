"""First start: from spawning `python -m app serve` on a fresh, empty embedded store with the demo data
to load (what `make run` does on a new machine) to `/healthz` 200 and to `/readyz` 200, both polled
every 50 ms; beside two floors measured in alternating rounds: the interpreter with the application's
imports (`python -c "import app.main"`), and a bare uvicorn hello app (bench/bare_app.py) to its first
`/healthz` 200."""

from __future__ import annotations

import os
import sqlite3
import subprocess
import sys
import time
from collections.abc import Callable
from contextlib import closing
from dataclasses import dataclass
from pathlib import Path

import httpx

from bench.common import HOST, PROJECT_ROOT, SERVER_LOG_LEVEL, free_port, stop_process

POLL_S = 0.05
START_DEADLINE_S = 300.0


@dataclass(frozen=True, slots=True)
class Start:
    healthz_s: float | None  # None: never answered 200 before the deadline
    readyz_s: float | None
    profiles: int | None  # profiles in the store when /readyz first said 200


def app_start(work: Path, number: int) -> Start:
    """One first start of the server on a new empty store, seed fixtures on, default worker count."""
    database = work / f"first-start-{number}.sqlite3"
    env = {
        "CDP_DATABASE_URL": f"sqlite:///{database}",
        "CDP_SEED_FIXTURES": "true",
        "CDP_LOG_LEVEL": SERVER_LOG_LEVEL,
    }
    counted: list[int | None] = [None]

    def count() -> None:  # while the server runs: what "ready" meant
        counted[0] = _profiles(database)

    healthz, readyz = _spawn_and_poll(["-m", "app", "serve"], env, work / f"first-start-{number}.log", on_ready=count)
    return Start(healthz, readyz, counted[0])


def bare_start(work: Path, number: int) -> float | None:
    """A bare uvicorn app (bench/bare_app.py) from spawn to its first /healthz 200."""
    args = ["-m", "bench.bare_app", "--log-level", SERVER_LOG_LEVEL]
    (healthz,) = _spawn_and_poll(args, {}, work / f"bare-start-{number}.log", on_ready=None)
    return healthz


def import_time() -> float:
    """The interpreter's start and the application's imports: `python -c "import app.main"`."""
    started = time.perf_counter()
    subprocess.run([sys.executable, "-c", "import app.main"], cwd=PROJECT_ROOT, check=True, timeout=120)
    return time.perf_counter() - started


def _spawn_and_poll(
    args: list[str], env: dict[str, str], log_path: Path, *, on_ready: Callable[[], None] | None
) -> tuple[float | None, ...]:
    """Seconds from spawn to /healthz 200 (and to /readyz 200 when `on_ready` is given, called then)."""
    port = free_port()
    command = [sys.executable, *args, "--host", HOST, "--port", str(port)]
    found: dict[str, float] = {}
    paths = ["/healthz", "/readyz"] if on_ready else ["/healthz"]
    with open(log_path, "wb") as log, httpx.Client(base_url=f"http://{HOST}:{port}", timeout=1.0) as client:
        started = time.perf_counter()
        process = subprocess.Popen(
            command, cwd=PROJECT_ROOT, env={**os.environ, **env}, stdout=log, stderr=subprocess.STDOUT
        )
        try:
            while len(found) < len(paths) and time.perf_counter() - started < START_DEADLINE_S:
                if process.poll() is not None:
                    break
                tick = time.perf_counter()
                for path in paths:
                    if path not in found and _ok(client, path):
                        found[path] = time.perf_counter() - started
                        if path == "/readyz" and on_ready is not None:
                            on_ready()
                time.sleep(max(0.0, POLL_S - (time.perf_counter() - tick)))
        finally:
            stop_process(process)
    return tuple(found.get(path) for path in paths)


def _ok(client: httpx.Client, path: str) -> bool:
    try:
        return client.get(path).status_code == 200
    except httpx.HTTPError:
        return False


def _profiles(database: Path) -> int | None:
    try:
        with closing(sqlite3.connect(f"file:{database}?mode=ro", uri=True)) as db:
            return int(db.execute("SELECT count(*) FROM profiles").fetchone()[0])
    except sqlite3.Error:
        return None
