"""What the system refused, in one line: the reason and the file it names, never a traceback."""

from __future__ import annotations


def in_one_line(exc: OSError) -> str:
    """The reason and the file, as "Permission denied: data/cdp.sqlite3" (its own text without a reason)."""
    where = f": {exc.filename}" if exc.filename else ""
    return f"{exc.strerror or str(exc) or type(exc).__name__}{where}"
