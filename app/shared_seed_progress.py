"""How far the demo data's load got, told by the worker process loading it to the others (CDP_WORKERS).

One worker loads (it holds `.seed.lock`, app/process_lock.py) while the others wait for it, and each
answers the /readyz polls and playground pages that reach it: without this, every other answer said
"waiting for the process loading the demo data" with no figures, and a readiness probe or a newcomer
watching the start page saw the progress jump back and forth. The loader writes its stage to a small
JSON file beside the lock (replaced whole, so a reader never sees half of it); the waiting workers
read it for each answer. The file names the loader's process: one left by a loader that died, or by
an earlier server, is not shown, and the next load writes it anew.
"""

from __future__ import annotations

import logging
import os
import time
from pathlib import Path

import orjson

from app.processes import is_alive

log = logging.getLogger("cdp")

PROGRESS_FILE = ".seed.progress"
# At most this often, and at every change of stage: the demo data's load has ~80 steps in ~10-30 s.
WRITE_EVERY_SECONDS = 0.2


class SharedSeedProgress:
    def __init__(self, path: Path) -> None:
        self.path = path
        self._written_at = 0.0
        self._stage: str | None = None

    def write(self, stage: str, done: int, total: int) -> None:
        """Called by the loading process at each step; a step soon after the last one of its stage is
        not written (the next one is), the last of a stage always is."""
        now = time.monotonic()
        if stage == self._stage and done < total and now - self._written_at < WRITE_EVERY_SECONDS:
            return
        self._stage, self._written_at = stage, now
        text = orjson.dumps({"pid": os.getpid(), "stage": stage, "done": done, "total": total})
        temporary = self.path.with_name(f"{self.path.name}.{os.getpid()}")
        try:
            temporary.write_bytes(text)
            os.replace(temporary, self.path)
        except OSError as exc:  # the load goes on; the other workers say they wait, as before
            log.debug("could not tell the other workers how far the demo data got: %s", exc)

    def read(self) -> tuple[str, int, int] | None:
        """The stage the process loading the demo data last wrote, while that process lives; None when
        there is none."""
        try:
            told = orjson.loads(self.path.read_bytes())
            pid, stage, done, total = told["pid"], told["stage"], told["done"], told["total"]
        except (OSError, ValueError, KeyError, TypeError):
            return None
        if not (isinstance(pid, int) and isinstance(stage, str) and isinstance(done, int) and isinstance(total, int)):
            return None
        if not is_alive(pid):
            return None
        return stage, done, total
