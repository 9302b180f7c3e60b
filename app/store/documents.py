"""Encoding documents for stores that keep JSON text (the embedded store).

Datetimes become fixed-width ISO-8601 UTC strings with milliseconds, whose string order is time
order, so SQLite can compare and sort them; pydantic turns them back into datetimes on read.
"""

from __future__ import annotations

from datetime import date, datetime
from typing import Any

import orjson

from app.domain.clock import to_iso


def _default(value: Any) -> Any:
    if isinstance(value, datetime):
        return to_iso(value)
    if isinstance(value, date):
        return value.isoformat()
    raise TypeError(f"cannot store {type(value).__name__}")


def _encoded(document: Any) -> bytes:
    return orjson.dumps(document, default=_default, option=orjson.OPT_PASSTHROUGH_DATETIME)


def dumps(document: Any) -> str:
    return _encoded(document).decode()


def loads(text: str | bytes) -> Any:
    return orjson.loads(text)


def jsonable(value: Any) -> Any:
    """The value as it reads back from JSON text (datetimes as ISO strings)."""
    return orjson.loads(_encoded(value))
