"""A server as the tree of processes it is (one, or a supervisor and its workers): which core each
side runs on, the tree's resident memory and CPU time, read from /proc (Linux)."""

from __future__ import annotations

import os
import shutil
import time
from dataclasses import dataclass
from pathlib import Path

from bench.common import process_cpu_s


@dataclass(frozen=True, slots=True)
class Cores:
    """The server on one core, the load generators (and this process) on another; None: not pinned."""

    server: int | None
    load: int | None
    usable: frozenset[int]  # every core this process could use at the start

    @property
    def pinned(self) -> bool:
        return self.server is not None

    def prefix(self, core: int | None) -> list[str]:
        """`taskset -c N` before a command line, or nothing when not pinning."""
        return ["taskset", "-c", str(core)] if core is not None else []

    def describe(self) -> str:
        if not self.pinned:
            return "not pinned (fewer than 2 usable cores or no taskset): server and load share the cores"
        return f"server on core {self.server}, load generators and this process on core {self.load} (taskset)"


def plan_cores() -> Cores:
    usable = sorted(os.sched_getaffinity(0))
    if len(usable) < 2 or shutil.which("taskset") is None:
        return Cores(None, None, frozenset(usable))
    return Cores(usable[0], usable[1], frozenset(usable))


def descendants(pid: int) -> list[int]:
    """`pid` and every process below it."""
    found, todo = [], [pid]
    while todo:
        current = todo.pop()
        found.append(current)
        for task in _tasks(current):
            try:
                todo += [int(c) for c in (task / "children").read_text().split()]
            except OSError:
                continue
    return found


def workers(pid: int) -> list[int]:
    """The worker processes uvicorn's supervisor `pid` spawned: its own children, not multiprocessing's
    helpers, nor the bulk processes its workers start (app/bulk_process.py)."""
    found = []
    for task in _tasks(pid):
        try:
            children = [int(c) for c in (task / "children").read_text().split()]
        except OSError:
            continue
        for child in children:
            try:
                if b"spawn_main" in Path(f"/proc/{child}/cmdline").read_bytes():
                    found.append(child)
            except OSError:
                continue
    return found


def pin(pid: int, core: int | None) -> int:
    """Pin every thread of the tree under `pid` to `core` (threads and processes started later inherit
    it); returns how many threads were pinned."""
    if core is None:
        return 0
    pinned = 0
    for process in descendants(pid):
        for task in _tasks(process):
            try:
                os.sched_setaffinity(int(task.name), {core})
                pinned += 1
            except (OSError, ValueError):  # the thread ended meanwhile
                continue
    return pinned


def pin_self(core: int | None) -> None:
    if core is not None:
        pin(os.getpid(), core)


def release_self(cores: Cores) -> None:
    """Every usable core for this process again (what it starts from now on inherits them)."""
    for task in _tasks(os.getpid()):
        try:
            os.sched_setaffinity(int(task.name), cores.usable)
        except (OSError, ValueError):
            continue


def rss_bytes(pid: int) -> int:
    """Resident memory of the whole tree under `pid`."""
    total = 0
    for process in descendants(pid):
        try:
            for line in Path(f"/proc/{process}/status").read_text().splitlines():
                if line.startswith("VmRSS:"):
                    total += int(line.split()[1]) * 1024
        except OSError:
            continue
    return total


def cpu_s(pid: int) -> float:
    """CPU time (user + system) spent so far by the processes now in the tree under `pid`."""
    return sum(process_cpu_s(p) or 0.0 for p in descendants(pid))


def wait_idle(pid: int, *, limit_s: float = 60.0, share: float = 0.05) -> None:
    """Until the tree under `pid` uses under `share` of a core over 0.5 s (work a load generator left
    behind, such as a batch cut off by the end of a run, is finished): the next measurement starts on
    an idle server."""
    deadline = time.monotonic() + limit_s
    while time.monotonic() < deadline:
        before = cpu_s(pid)
        time.sleep(0.5)
        if cpu_s(pid) - before < share * 0.5:
            return


def count(pid: int) -> int:
    return len(descendants(pid))


def _tasks(pid: int) -> list[Path]:
    try:
        return list(Path(f"/proc/{pid}/task").iterdir())
    except OSError:
        return []
