"""The command line as this process was started, for the hints in errors and in the log.

`make run` starts `.venv/bin/python -m app serve`: a hint saying `python -m app keys create`, pasted
in a new shell, ran another interpreter, without the server's packages (`No module named ...`), where
the README says `.venv/bin/python -m app keys create`. In the Docker image, or with the virtual
environment activated, `python` is the right one and the hint says so.
"""

from __future__ import annotations

import functools
import os
import shutil
import sys
from pathlib import Path


def app_command(arguments: str) -> str:
    """`<this interpreter> -m app <arguments>`, as a reader here can run it."""
    return f"{_interpreter()} -m app {arguments}"


@functools.cache
def _interpreter() -> str:
    """`python` when a shell here finds this very interpreter under that name (the image, an activated
    environment: compared as paths, not where their links lead, since a virtual environment's python
    links to a base interpreter without the server's packages); else its path from this folder
    (`.venv/bin/python`); else `python`, as before: the hint is shown to remote clients too, and an
    absolute path would only tell them about the server's disk."""
    executable = os.path.abspath(sys.executable)
    found = shutil.which("python")
    if found is not None and os.path.abspath(found) == executable:
        return "python"
    try:
        relative = Path(executable).relative_to(Path.cwd())
    except (ValueError, OSError):  # elsewhere, or the working folder is gone
        return "python"
    return str(relative) if relative.parent != Path() else f"./{relative}"
