"""Whether a process still runs, by its pid: what the server's processes leave for one another (a
seed's progress, metric files, a supervisor's folder) outlives a process that was killed; and a child
process that stops with its parent."""

from __future__ import annotations

import ctypes
import os
import signal

PR_SET_PDEATHSIG = 1  # prctl(2)


def is_alive(pid: int) -> bool:
    """True also for a process of another user (it runs; it is not ours to judge)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def stop_with_parent(parent: int) -> None:
    """No child process outlives the one that started it (`parent`), even one killed with SIGKILL
    (which can run no clean-up): on Linux the kernel sends this process SIGTERM when its parent dies,
    and it stops gracefully as on any SIGTERM. Elsewhere this does nothing."""
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(PR_SET_PDEATHSIG, signal.SIGTERM)
    except (OSError, AttributeError):
        return
    if os.getppid() != parent:  # it died before the request above took effect
        os.kill(os.getpid(), signal.SIGTERM)
