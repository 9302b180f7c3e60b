"""Work the worker process loading the demo data offers the waiting ones (app/demo_events.py,
app/demo_segments.py): said in the store's meta under its own key ("offered <pid>"), taken by one
waiting worker under a lock file beside the database, then answered under the same key."""

from __future__ import annotations

import os
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

from app.process_lock import taken_if_free
from app.processes import is_alive
from app.services.ports import ProfileStore


async def offer(store: ProfileStore, key: str) -> None:
    """This process offers the work `key` names."""
    await store.write_meta(key, f"offered {os.getpid()}")


@asynccontextmanager
async def taken_offer(store: ProfileStore, key: str, lock: Path) -> AsyncIterator[bool]:
    """True, holding `lock`, when the work `key` names is offered by a process still running and no
    other worker took it; False at once when none is offered (or it was taken, done, or offered by a
    loader that died: its next load offers again)."""
    offered = await store.read_meta(key)
    if offered is None or not offered.startswith("offered ") or not is_alive(int(offered.split()[1])):
        yield False
        return
    with taken_if_free(lock) as taken:
        yield taken and await store.read_meta(key) == offered
