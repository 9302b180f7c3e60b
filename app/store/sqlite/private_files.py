"""Store files readable by their owner only, whatever the process's umask.

`python -m app` sets umask 077 (app/__main__.py), but a server started another way (uvicorn with the
application factory, a test harness, a container's entry point) kept the usual 022: the store and
every backup, everyone's customer data, were readable by any account of the machine. SQLite creates
a database's write-ahead log and shared-memory files with the database file's permissions, so the
database file made here first, empty and 0600, keeps all three private.
"""

from __future__ import annotations

import os
from pathlib import Path

OWNER_ONLY = 0o600


def create_private(path: Path) -> None:
    """An empty file at `path` that only its owner may read, unless a file is there already (its
    permissions are its owner's choice). SQLite takes an empty file for a new database."""
    try:
        descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, OWNER_ONLY)
    except FileExistsError:
        return
    os.close(descriptor)
