"""WebSocket subscribers from outside the server: bench/node/subscribers.mjs (the reference `graphql-ws`
client on node), its dependencies installed from bench/node/package-lock.json when missing, and what
it heard, judged against the changes the server recorded."""

from __future__ import annotations

import json
import shutil
import subprocess
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bench.common import PROJECT_ROOT, percentile

NODE_DIR = PROJECT_ROOT / "bench" / "node"
SCRIPT = NODE_DIR / "subscribers.mjs"
READY_TIMEOUT_S = 120.0
STOP_TIMEOUT_S = 60.0


def missing() -> str | None:
    """Why the subscribers cannot run here, or None; installs the node packages when they are absent."""
    if shutil.which("node") is None or shutil.which("npm") is None:
        return "node and npm are not installed (Debian: `apt-get install -y nodejs npm`)"
    if not (NODE_DIR / "node_modules" / "graphql-ws").is_dir():
        done = subprocess.run(
            ["npm", "ci", "--prefix", str(NODE_DIR), "--no-audit", "--no-fund"],
            capture_output=True,
            text=True,
            check=False,
            timeout=600,
        )
        if done.returncode != 0:
            return f"`npm ci --prefix bench/node` failed: {done.stderr.strip()[-500:]}"
    return None


def versions() -> str:
    lock = json.loads((NODE_DIR / "package-lock.json").read_text())
    packages = lock.get("packages", {})
    node = subprocess.run(["node", "--version"], capture_output=True, text=True, check=False).stdout.strip()
    pinned = ", ".join(f"{n} {packages.get(f'node_modules/{n}', {}).get('version', '?')}" for n in ("graphql-ws", "ws"))
    return f"node {node}, {pinned}"


class Subscribers:
    """The node process: started by `start`, ended by `stop` (which returns what each client heard)."""

    def __init__(
        self,
        url: str,
        count: int,
        request: dict[str, Any],
        work: Path,
        *,
        prefix: list[str],
        wave: int = 50,
        name: str = "subscribers",
    ) -> None:
        """`request`: {query, variables}, or {query, variablesList} (client i subscribes with the i-th);
        `wave`: clients opened together, the next wave once they are all acknowledged or refused (0: all
        at once); `name`: of the files written under `work`."""
        self.count = count
        self._out = work / f"{name}.json"
        query = work / f"{name}-subscription.json"
        query.write_text(json.dumps(request))
        self._log = open(work / f"{name}.log", "wb")  # noqa: SIM115 - closed in stop()
        command = [*prefix, "node", str(SCRIPT), url, str(count), str(query), str(self._out), "3600", str(wave)]
        self._process = subprocess.Popen(
            command, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=self._log, cwd=NODE_DIR
        )
        self._ready = threading.Event()
        self._heard = threading.Event()
        self._delivered = 0
        self.acknowledged = 0
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        assert self._process.stdout is not None
        for raw in self._process.stdout:
            line = raw.decode(errors="replace").strip()
            if line.startswith("READY "):
                self.acknowledged = int(line.split()[1])
                self._ready.set()
            elif line.startswith("HEARD "):
                self._delivered = int(line.split()[1])
                self._heard.set()
        self._ready.set()  # the process ended
        self._heard.set()

    def wait_ready(self) -> int:
        if not self._ready.wait(READY_TIMEOUT_S):
            raise RuntimeError(f"the subscribers did not connect within {READY_TIMEOUT_S:.0f} s")
        return self.acknowledged

    def delivered(self, timeout_s: float = 10.0) -> int:
        """Deliveries the clients received so far (asked of the node process, which answers between
        deliveries); the last count known when it does not answer within `timeout_s`."""
        if self._process.poll() is not None or self._process.stdin is None:
            return self._delivered
        self._heard.clear()
        self._process.stdin.write(b"heard\n")
        self._process.stdin.flush()
        self._heard.wait(timeout_s)
        return self._delivered

    def kill(self) -> None:
        """End the node process without a summary (the benchmark failed meanwhile)."""
        if self._process.poll() is None:
            self._process.kill()
            self._process.wait(timeout=10)
        self._log.close()

    def stop(self) -> Heard:
        try:
            if self._process.poll() is None and self._process.stdin is not None:
                self._process.stdin.write(b"stop\n")
                self._process.stdin.flush()
            self._process.wait(timeout=STOP_TIMEOUT_S)
        except (OSError, subprocess.TimeoutExpired):
            pass
        finally:
            if self._process.poll() is None:
                self._process.kill()
                self._process.wait(timeout=10)
            self._log.close()
        if not self._out.exists():
            raise RuntimeError(f"the subscribers wrote no summary; see {self._log.name}")
        return Heard.from_summary(json.loads(self._out.read_text()))


@dataclass(frozen=True, slots=True)
class Heard:
    subscribers: int
    acknowledged: int
    per_subscriber: list[int]
    latencies_ms: list[float]
    per_event: dict[str, tuple[int, int, float]]  # event id -> heard by, heard within 1 s by, max ms
    closes: dict[str, int]
    errors: dict[str, int]
    strays: int = 0  # deliveries of another profile's change than the one the client subscribed to

    @classmethod
    def from_summary(cls, raw: dict[str, Any]) -> Heard:
        return cls(
            subscribers=raw["subscribers"],
            acknowledged=raw["acknowledged"],
            per_subscriber=raw["heardBy"],
            latencies_ms=raw["latencies"],
            per_event={k: (v[0], v[1], v[2]) for k, v in raw["perEvent"].items()},
            closes=raw["closes"],
            errors=raw["errors"],
            strays=raw.get("strays", 0),
        )


@dataclass(frozen=True, slots=True)
class Delivery:
    """Changes recorded by the server during the load, against what the subscribers heard."""

    changes: int  # segment events recorded during the load
    expected: int  # changes x subscribers (or x the audience of each change)
    heard: int  # of those deliveries, received at all (before the subscribers were stopped)
    within_1s: int  # received within 1 s of the change's time
    extra: int  # deliveries of changes not recorded during the load (before or after it)
    p50_ms: float
    p99_ms: float
    max_ms: float
    heard_min: int  # the least any subscriber heard of the load's changes
    heard_max: int

    @property
    def missed(self) -> int:
        return self.expected - self.heard


def judge(heard: Heard, recorded: list[str], *, audience: int | None = None) -> Delivery:
    """`recorded`: the ids of the segment events the server recorded during the load; `audience`: how
    many subscribers should hear each (default: every one)."""
    during = set(recorded)
    each = heard.subscribers if audience is None else audience
    got = [heard.per_event.get(event_id, (0, 0, 0.0)) for event_id in recorded]
    extra = sum(v[0] for k, v in heard.per_event.items() if k not in during)
    maxima = [g[2] for g in got if g[0]]
    lat = heard.latencies_ms  # every delivery heard
    per_subscriber_of_load = _per_subscriber_share(heard, len(recorded))
    return Delivery(
        changes=len(recorded),
        expected=len(recorded) * each,
        heard=sum(min(g[0], each) for g in got),  # more than `each`: strays, counted by the client
        within_1s=sum(min(g[1], each) for g in got),
        extra=extra,
        p50_ms=percentile(lat, 50),
        p99_ms=percentile(lat, 99),
        max_ms=max(maxima, default=0.0),
        heard_min=per_subscriber_of_load[0],
        heard_max=per_subscriber_of_load[1],
    )


def _per_subscriber_share(heard: Heard, changes: int) -> tuple[int, int]:
    """The fewest and most changes any subscriber heard (all it heard, capped at the load's changes)."""
    counts = heard.per_subscriber or [0]
    return min(min(counts), changes), min(max(counts), changes)
