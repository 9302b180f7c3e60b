"""Shared pieces: the machine header, latency summaries, plain-text tables, event loops, and the
server subprocesses (always stopped, bounded start-up wait, 127.0.0.1 only)."""

from __future__ import annotations

import asyncio
import math
import os
import platform
import socket
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Coroutine, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path
from typing import Any, TypeVar

import httpx

T = TypeVar("T")
PROJECT_ROOT = Path(__file__).resolve().parent.parent
HOST = "127.0.0.1"
SERVER_START_TIMEOUT_S = 60.0
SERVER_STOP_TIMEOUT_S = 10.0
# The servers run with the same uvicorn settings; access logging off (log level "warning") so that
# neither pays for a log line per request.
SERVER_LOG_LEVEL = "warning"


# -- printing ------------------------------------------------------------------------------------
def say(text: str = "") -> None:
    print(text, flush=True)


def heading(text: str) -> None:
    say()
    say(text)
    say("-" * len(text))


def table(headers: Sequence[str], rows: Sequence[Sequence[Any]], *, align: str | None = None) -> None:
    """A plain-text table: first column left-aligned, the others right-aligned (or per `align`)."""
    cells = [[str(h) for h in headers]] + [[_cell(v) for v in row] for row in rows]
    widths = [max(len(r[i]) for r in cells) for i in range(len(headers))]
    align = align or "l" + "r" * (len(headers) - 1)

    def line(row: list[str]) -> str:
        parts = [c.ljust(w) if a == "l" else c.rjust(w) for c, w, a in zip(row, widths, align, strict=True)]
        return "  ".join(parts).rstrip()

    say(line(cells[0]))
    say("  ".join("-" * w for w in widths))
    for row in cells[1:]:
        say(line(row))


def _cell(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:,.2f}" if abs(value) < 100 else f"{value:,.0f}"
    if isinstance(value, int):
        return f"{value:,}"
    return str(value)


def ratio(a: float, b: float) -> str:
    return f"{a / b:.1f}x" if b > 0 else "-"


def fmt_s(seconds: float) -> str:
    return f"{seconds:.1f} s" if seconds < 120 else f"{seconds / 60:.1f} min"


# -- statistics ----------------------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class Latencies:
    """Per-request latencies in seconds, with the wall time they were measured over and the CPU time
    the serving process spent meanwhile (None when it could not be read)."""

    samples: list[float]
    wall_s: float
    cpu_s: float | None = None

    @property
    def cpu_ms_per_item(self) -> float | None:
        return self.cpu_s / len(self.samples) * 1000 if self.cpu_s is not None and self.samples else None

    @property
    def count(self) -> int:
        return len(self.samples)

    def pct_ms(self, p: float) -> float:
        return percentile(self.samples, p) * 1000

    @property
    def mean_ms(self) -> float:
        return sum(self.samples) / len(self.samples) * 1000 if self.samples else math.nan

    @property
    def per_s(self) -> float:
        return self.count / self.wall_s if self.wall_s > 0 else math.nan


@dataclass(frozen=True, slots=True)
class Rounds:
    """The same latencies measured in several rounds: each percentile is the median of the rounds'
    (rounds alternated with another path's, so that a slow minute weighs on both and on no figure
    alone), and `each_ms` shows how far the rounds spread."""

    rounds: Sequence[Latencies]

    def pct_ms(self, p: float) -> float:
        return statistics.median(r.pct_ms(p) for r in self.rounds)

    def each_ms(self, p: float) -> str:
        return " / ".join(f"{r.pct_ms(p):.2f}" for r in self.rounds)


def percentile(samples: Sequence[float], p: float) -> float:
    """Nearest-rank percentile (p in 0..100)."""
    if not samples:
        return math.nan
    ordered = sorted(samples)
    rank = max(1, math.ceil(p / 100 * len(ordered)))
    return ordered[rank - 1]


def process_cpu_s(pid: int | None = None) -> float | None:
    """CPU time (user + system) of process `pid` so far, or of this process when `pid` is None."""
    if pid is None:
        return time.process_time()
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except (OSError, IndexError):
        return None
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")  # utime + stime, in ticks


class CpuMeter:
    """Accumulates the CPU time a process spends inside `with meter:` blocks."""

    def __init__(self, pid: int | None = None) -> None:
        self.pid = pid
        self.total: float | None = 0.0
        self._start: float | None = None

    def __enter__(self) -> CpuMeter:
        self._start = process_cpu_s(self.pid)
        return self

    def __exit__(self, *exc: object) -> None:
        end = process_cpu_s(self.pid)
        if self.total is None or self._start is None or end is None:
            self.total = None
        else:
            self.total += end - self._start


# -- machine -------------------------------------------------------------------------------------
def say_machine(work_dir: Path | None = None) -> None:
    """The machine's lines (machine_lines), one `name value` a line, as every benchmark's header."""
    for name, value in machine_lines(work_dir):
        say(f"  {name:<9} {value}")


def machine_lines(work_dir: Path | None = None) -> list[tuple[str, str]]:
    cores = os.cpu_count() or 0
    try:
        usable = len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        usable = cores
    lines = [
        ("cores", f"{cores} logical ({usable} usable by this process)"),
        ("cpu", _cpu_model()),
        ("memory", _memory()),
        ("python", f"{platform.python_implementation()} {platform.python_version()} ({sys.executable})"),
        ("os", platform.platform()),
        ("sqlite", sqlite3.sqlite_version),
        (
            "packages",
            ", ".join(
                f"{p} {_version(p)}"
                for p in ("strawberry-graphql", "starlette", "uvicorn", "uvloop", "httptools", "httpx", "pydantic")
            ),
        ),
    ]
    if work_dir is not None:
        lines.append(("temp dir", f"{work_dir} ({_filesystem(work_dir)})"))
    lines.append(("load avg", load_average()))
    return lines


def load_average() -> str:
    """1/5/15-minute load averages: other work on the machine skews absolute numbers, not the ratios."""
    try:
        return " / ".join(f"{v:.2f}" for v in os.getloadavg()) + " (1 / 5 / 15 min)"
    except OSError:
        return "unknown"


def _version(package: str) -> str:
    try:
        return metadata.version(package)
    except metadata.PackageNotFoundError:
        return "absent"


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def _memory() -> str:
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                return f"{int(line.split()[1]) / 1024 / 1024:.1f} GiB"
    except OSError:
        pass
    return "unknown"


def _filesystem(path: Path) -> str:
    """The file system type of the mount holding `path` (fsync cost depends on it)."""
    try:
        best, kind = "", "unknown"
        resolved = str(path.resolve())
        for line in Path("/proc/mounts").read_text().splitlines():
            fields = line.split()
            mount = fields[1]
            if (resolved == mount or resolved.startswith(mount.rstrip("/") + "/")) and len(mount) > len(best):
                best, kind = mount, fields[2]
        return f"{kind} mounted at {best}" if best else kind
    except OSError:
        return "unknown"


# -- event loops ---------------------------------------------------------------------------------
def loop_factory() -> Callable[[], asyncio.AbstractEventLoop]:
    """uvloop when installed: uvicorn's "auto" loop picks it too, so in-process floors run on the same loop."""
    try:
        import uvloop

        return uvloop.new_event_loop
    except ImportError:
        return asyncio.new_event_loop


def loop_name() -> str:
    return "uvloop" if loop_factory() is not asyncio.new_event_loop else "asyncio"


def run_async(coroutine: Coroutine[Any, Any, T]) -> T:
    with asyncio.Runner(loop_factory=loop_factory()) as runner:
        return runner.run(coroutine)


# -- temp dir and servers ------------------------------------------------------------------------
@contextmanager
def temp_dir(parent: str | None = None) -> Iterator[Path]:
    with tempfile.TemporaryDirectory(prefix="cdp-bench-", dir=parent) as name:
        yield Path(name)


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((HOST, 0))
        return int(sock.getsockname()[1])


@dataclass
class Server:
    name: str
    base_url: str
    process: subprocess.Popen[bytes]
    log_path: Path


@contextmanager
def server(name: str, args: list[str], *, env: dict[str, str], log_dir: Path) -> Iterator[Server]:
    """Start `python <args> --host 127.0.0.1 --port <free>` and wait for its application's /healthz;
    always stop it."""
    port = free_port()
    log_path = log_dir / f"{name}.log"
    command = [sys.executable, *args, "--host", HOST, "--port", str(port)]
    with open(log_path, "wb") as log:
        process = subprocess.Popen(
            command, cwd=PROJECT_ROOT, env={**os.environ, **env}, stdout=log, stderr=subprocess.STDOUT
        )
    running = Server(name, f"http://{HOST}:{port}", process, log_path)
    try:
        _wait_ready(running)
        yield running
    finally:
        stop_process(process)


def _wait_ready(running: Server) -> None:
    deadline = time.monotonic() + SERVER_START_TIMEOUT_S
    with httpx.Client(base_url=running.base_url, timeout=2.0) as client:
        while time.monotonic() < deadline:
            if running.process.poll() is not None:
                break
            try:
                answer = client.get("/healthz")
                # `"starting": true` is the stand-in answering while the application loads (app/starting.py)
                if answer.status_code == 200 and not answer.json().get("starting"):
                    return
            except (httpx.TransportError, ValueError):
                pass
            time.sleep(0.1)
    tail = running.log_path.read_text(errors="replace")[-3000:]
    raise RuntimeError(f"{running.name} server did not become ready at {running.base_url}; its log:\n{tail}")


def stop_process(process: subprocess.Popen[bytes]) -> None:
    """SIGTERM, then SIGKILL if it has not ended within SERVER_STOP_TIMEOUT_S."""
    if process.poll() is not None:
        return
    process.terminate()
    try:
        process.wait(timeout=SERVER_STOP_TIMEOUT_S)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait(timeout=SERVER_STOP_TIMEOUT_S)


def app_server_env(database: Path) -> dict[str, str]:
    return {
        "CDP_DATABASE_URL": f"sqlite:///{database}",
        "CDP_SEED_FIXTURES": "false",
        "CDP_LOG_LEVEL": SERVER_LOG_LEVEL,
        # Loopback only. Key checks cost one indexed read per request; the numbers are of the rest.
        "CDP_AUTH": "off",
    }
