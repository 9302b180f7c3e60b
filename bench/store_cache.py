"""The built store, cached across runs: N customers written once through the real ingestion service
(bench/dataset.py, minutes for 100,000), kept under a cache directory and copied for each run, so a
repeated benchmark starts in seconds.

The cache key is the profile count and the text of the files that decide what the store holds (the
dataset builder, the embedded store's schema and the profile model): a change to any of them builds
anew; `--rebuild` forces it.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import shutil
import sqlite3
import tempfile
import time
from contextlib import closing
from pathlib import Path

from app.domain import clock
from app.services import traits
from bench import dataset
from bench.common import PROJECT_ROOT, fmt_s, run_async, say

KEY_FILES = (
    "bench/dataset.py",
    "app/services/traits.py",  # the job run on the built store
    "app/store/sqlite/schema.py",
    "app/store/sqlite/profile_facets.py",
    "app/store/sqlite/profile_revisions.py",
    "app/store/sqlite/profile_rows.py",  # how a profile's row is padded
    "app/store/sqlite/history_rows.py",  # which interactions have a row of the table
    "app/domain/profile.py",
    # The blocking keys and their version: a store keyed by an older definition is re-keyed at the
    # server's start, in the background of whatever the benchmark measures.
    "app/domain/matching/index.py",
    "app/domain/matching/blocking.py",
)
BUILD_BATCH = 1000
SIDECARS = ("-wal", "-shm")


def default_cache_dir() -> Path:
    return Path(tempfile.gettempdir()) / "cdp-bench-cache"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The options of a benchmark that runs on a cached store in a temporary directory."""
    parser.add_argument("--cache-dir", type=Path, default=default_cache_dir(), help="built stores")
    parser.add_argument("--rebuild", action="store_true", help="build the store anew even if cached")
    parser.add_argument("--tmp-dir", help="parent of the temporary directory (default: the system temp dir)")


def cache_key(profiles: int) -> str:
    digest = hashlib.sha256()
    for name in KEY_FILES:
        digest.update((PROJECT_ROOT / name).read_bytes())
    return f"profiles-{profiles}-{digest.hexdigest()[:12]}"


def cached_store(cache_dir: Path, profiles: int, *, rebuild: bool) -> Path:
    """The path of the cached store of `profiles` customers, built first when missing (or asked)."""
    cache_dir.mkdir(parents=True, exist_ok=True)
    path = cache_dir / f"{cache_key(profiles)}.sqlite3"
    if path.exists() and not rebuild:
        say(f"  store: {profiles:,} customers from the cache, {path} ({_size_mb(path):,.0f} MB)")
        return path
    partial = cache_dir / f"{path.stem}.building-{os.getpid()}.sqlite3"
    say(f"  store: building {profiles:,} customers through ingest_events (one identify event each) into {partial}")
    step = max(profiles // 5, 1)
    reported = [0]

    def progress(done: int, seconds: float) -> None:
        if done - reported[0] >= step or done == profiles:
            reported[0] = done
            say(f"    {done:>9,} / {profiles:,}  {seconds:6.1f} s")

    started = time.perf_counter()
    try:
        run_async(
            dataset.build_store(partial, profiles, batch_size=BUILD_BATCH, run_id=dataset.run_id(), progress=progress)
        )
        _checkpoint(partial)
        partial.replace(path)  # atomic: a concurrent or interrupted build never leaves a half file
    finally:
        for leftover in (partial, *(Path(f"{partial}{s}") for s in SIDECARS)):
            leftover.unlink(missing_ok=True)
    for stale in cache_dir.glob(f"profiles-{profiles}-*.sqlite3"):
        if stale != path:
            stale.unlink()
    say(f"  store: built in {fmt_s(time.perf_counter() - started)}, cached as {path} ({_size_mb(path):,.0f} MB)")
    return path


def copy_store(source: Path, target: Path) -> Path:
    """A private copy of the cached store for one server or floor to write to, its computed-traits job
    dated now: the server's hourly job then falls after the benchmark, as it falls outside most hours'
    serving (the job's own cost is the traits job's, not the serving path's). The build leaves no
    segment check due (bench/dataset.py, `settle_as_served`): before it did, each server started on a
    copy first caught up with 100,000 profiles, a core busy for ~14 s while the first rounds ran."""
    for sidecar in SIDECARS:  # a log left by a server on an earlier copy would be replayed into this one
        Path(f"{target}{sidecar}").unlink(missing_ok=True)
    shutil.copyfile(source, target)
    with closing(sqlite3.connect(target)) as db, db:
        row = db.execute("SELECT value FROM meta WHERE key = ?", (traits.META_KEY,)).fetchone()
        if row is not None:
            job = json.loads(row[0]) | {"finishedAt": clock.to_iso(clock.now())}
            db.execute("UPDATE meta SET value = ? WHERE key = ?", (json.dumps(job), traits.META_KEY))
    return target


def _checkpoint(path: Path) -> None:
    """Fold the write-ahead log into the main file, so that the one file is the whole store."""
    with closing(sqlite3.connect(path)) as db:
        db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    left = [s for s in SIDECARS if Path(f"{path}{s}").exists() and Path(f"{path}{s}").stat().st_size]
    if "-wal" in left:
        raise RuntimeError(f"the built store {path} still has a write-ahead log: not caching it")


def _size_mb(path: Path) -> float:
    return path.stat().st_size / 1e6
