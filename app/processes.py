"""Whether a process still runs, by its pid: what the server's processes leave for one another (a
seed's progress, metric files, a supervisor's folder) outlives a process that was killed."""

from __future__ import annotations

import os


def is_alive(pid: int) -> bool:
    """True also for a process of another user (it runs; it is not ours to judge)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True
