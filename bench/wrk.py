"""Load from outside the server: Debian's `wrk`, one process per request class, each with
bench/lua/load.lua, pinned to the load core; and what each reports (one JSON line per process).

Each run is bounded by its duration (`-d`) plus a kill after a grace period; requests slower than
`--timeout` would be left out of wrk's latencies, so the timeout is far above any target and timeouts
are reported beside the latencies.
"""

from __future__ import annotations

import json
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

from bench.common import PROJECT_ROOT

SCRIPT = PROJECT_ROOT / "bench" / "lua" / "load.lua"
REQUEST_TIMEOUT_S = 30
EXIT_GRACE_S = REQUEST_TIMEOUT_S + 15
INSTALL = "apt-get update -qq && apt-get install -y -qq wrk"


def missing() -> str | None:
    """Why wrk cannot run here (with how to install it), or None."""
    if shutil.which("wrk") is None:
        return f"wrk is not installed; install Debian's package with `{INSTALL}` (as root)"
    return None


def version() -> str:
    found = subprocess.run(["wrk", "--version"], capture_output=True, text=True, check=False)
    return (
        (found.stdout or found.stderr).splitlines()[0].split(" Copyright")[0] if found.stdout or found.stderr else "?"
    )


def write_bodies(path: Path, bodies: list[bytes]) -> Path:
    """One compact JSON document per line, as load.lua reads them."""
    if any(b"\n" in body for body in bodies):
        raise ValueError("a request body holds a newline: load.lua reads one body per line")
    path.write_bytes(b"\n".join(bodies) + b"\n")
    return path


@dataclass(frozen=True, slots=True)
class WrkResult:
    name: str
    requests: int
    seconds: float
    p50_ms: float
    p90_ms: float
    p99_ms: float
    max_ms: float
    mean_ms: float
    socket_errors: int  # connect, read, write
    unanswered: int  # sent but not answered when the run ended (left out of the latencies)
    timeouts: int
    non200: int
    gql_errors: int
    missing: int
    accepted: int
    duplicates: int
    rejected: int

    @property
    def per_s(self) -> float:
        return self.requests / self.seconds if self.seconds else 0.0

    @property
    def events_per_busy_s(self) -> float:
        """Events per second of request time: for one connection sending one request after the other,
        the server's rate, whole batches only (the batch cut off by the end of the run is left out)."""
        busy = self.requests * self.mean_ms / 1000
        return self.events / busy if busy else 0.0

    @property
    def events(self) -> int:
        return self.accepted + self.duplicates + self.rejected

    @property
    def failures(self) -> int:
        return self.socket_errors + self.timeouts + self.non200 + self.gql_errors + self.missing

    def problems(self) -> str:
        """What went wrong, in words ("" when every answer was good)."""
        parts = [
            f"{count:,} {what}"
            for count, what in (
                (self.unanswered, "unanswered when the run ended"),
                (self.socket_errors, "socket errors"),
                (self.timeouts, f"timeouts (> {REQUEST_TIMEOUT_S} s)"),
                (self.non200, "non-200 answers"),
                (self.gql_errors, "answers with GraphQL errors"),
                (self.missing, "answers without the expected data"),
                (self.rejected, "events rejected"),
            )
            if count
        ]
        return ", ".join(parts)


class Wrk:
    """One running wrk process: `Wrk(...)` starts it, `result()` waits for its report."""

    def __init__(
        self,
        name: str,
        url: str,
        *,
        connections: int,
        seconds: float,
        log_dir: Path,
        bodies: Path | None = None,
        tag: str = "x",
        expect: str | None = None,
        delay_ms: int = 0,
        prefix: list[str] | None = None,
    ) -> None:
        self.name = name
        self._log = log_dir / f"wrk-{name}.log"
        command = [
            *(prefix or []),
            "wrk",
            "-t1",
            f"-c{connections}",
            f"-d{max(1, round(seconds))}s",
            f"--timeout={REQUEST_TIMEOUT_S}s",
            "-s",
            str(SCRIPT),
            url,
            "--",
            str(bodies) if bodies else "-",
            tag,
            expect or "-",
            str(delay_ms),
        ]
        self._seconds = seconds
        with open(self._log, "wb") as log:
            self._process = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, cwd=PROJECT_ROOT)

    def result(self) -> WrkResult:
        try:
            self._process.wait(timeout=self._seconds + EXIT_GRACE_S)
        finally:
            self.stop()
        text = self._log.read_text(errors="replace")
        line = next((ln for ln in text.splitlines() if ln.startswith("WRKJSON ")), None)
        if self._process.returncode != 0 or line is None:
            raise RuntimeError(f"wrk ({self.name}) failed with exit code {self._process.returncode}:\n{text[-2000:]}")
        raw = json.loads(line.removeprefix("WRKJSON "))
        return WrkResult(
            name=self.name,
            requests=raw["requests"],
            seconds=raw["duration_us"] / 1e6,
            p50_ms=raw["p50_us"] / 1000,
            p90_ms=raw["p90_us"] / 1000,
            p99_ms=raw["p99_us"] / 1000,
            max_ms=raw["max_us"] / 1000,
            mean_ms=raw["mean_us"] / 1000,
            socket_errors=raw["connect_errors"] + raw["read_errors"] + raw["write_errors"],
            unanswered=raw["sent"] - raw["answered"],
            timeouts=raw["timeouts"],
            non200=raw["non200"],
            gql_errors=raw["gql_errors"],
            missing=raw["missing"],
            accepted=raw["accepted"],
            duplicates=raw["duplicates"],
            rejected=raw["rejected"],
        )

    def stop(self) -> None:
        if self._process.poll() is None:
            self._process.kill()
            self._process.wait(timeout=10)
