"""Free-form keys (traits, preferences) become document paths: they may hold no dot, no `$`,
nothing a database would read as syntax."""

from __future__ import annotations

import re
from typing import Any

_KEY = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,63}\Z")


def check_keys(values: dict[str, Any] | None) -> dict[str, Any] | None:
    for key in values or {}:
        if not _KEY.match(key):
            raise ValueError(f"key {key!r} must be 1-64 letters, digits or underscores, not starting with a digit")
    return values
