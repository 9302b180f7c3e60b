"""Encoding documents for stores that keep JSON text (the embedded store).

Datetimes become fixed-width ISO-8601 UTC strings with milliseconds, whose string order is time
order, so SQLite can compare and sort them; pydantic turns them back into datetimes on read.
"""

from __future__ import annotations

import math
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


def dumps(document: Any) -> str:
    return orjson.dumps(document, default=_default, option=orjson.OPT_PASSTHROUGH_DATETIME).decode()


def loads(text: str | bytes) -> Any:
    return orjson.loads(text)


def jsonable(value: Any) -> Any:
    """The value as it reads back from JSON text (datetimes as ISO strings). What a change holds
    (strings, numbers, times, plain dicts and lists) is converted directly, ~10 times cheaper than
    encoding and decoding it; anything else (a tuple, an enum, a NaN, a non-string key, nesting
    past orjson's depth) goes through the encoder, which decides as it does for a stored document."""
    converted = _direct(value, 0)
    return orjson.loads(dumps(value)) if converted is _UNSURE else converted


_UNSURE = object()
_ORJSON_DEPTH = 254  # orjson refuses deeper nesting: such a value goes to the encoder, which raises


def _direct(value: Any, depth: int) -> Any:
    kind = type(value)
    if kind is str or kind is int or kind is bool or value is None:
        return value
    if kind is float:
        return value if math.isfinite(value) else _UNSURE
    if kind is datetime:
        return to_iso(value)
    if depth >= _ORJSON_DEPTH:
        return _UNSURE
    if kind is dict:
        converted = {}
        for key, item in value.items():
            if type(key) is not str or (done := _direct(item, depth + 1)) is _UNSURE:
                return _UNSURE
            converted[key] = done
        return converted
    if kind is list:
        items = []
        for item in value:
            if (done := _direct(item, depth + 1)) is _UNSURE:
                return _UNSURE
            items.append(done)
        return items
    return _UNSURE
