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
    executable = Path(sys.executable)
    found = shutil.which("python")
    if found is not None and os.path.realpath(found) == os.path.realpath(executable):
        return "python"  # the one a shell here finds first
    try:
        return str(executable.relative_to(Path.cwd()))  # .venv/bin/python, from the project's folder
    except ValueError:
        return str(executable)
