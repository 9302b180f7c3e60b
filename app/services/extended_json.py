"""Read MongoDB Extended JSON lines (the fixtures' format, the one `mongoimport` reads) without a
driver: only the wrappers our files use (`$date`, `$numberLong`, `$numberDecimal`, `$oid`)."""

from __future__ import annotations

from collections.abc import Iterator, Set
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import orjson

EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
# What decoding a line raises when it holds a wrapper that cannot be read (`{"$date": "soon"}`, a date
# out of range), besides orjson's JSONDecodeError (a ValueError too).
UNREADABLE = (ValueError, TypeError, KeyError, OverflowError, OSError)


def decode(value: Any) -> Any:
    """`value` with its wrappers read, changed in place: only containers are visited, where building a
    new dict and list for every object of every line took most of a demo load's reading (0.27 of
    0.34 s for its 27,642 events)."""
    if isinstance(value, dict):
        if len(value) == 1:
            ((key, inner),) = value.items()
            if key == "$date":
                text = inner["$numberLong"] if isinstance(inner, dict) else inner
                if isinstance(text, str) and not text.lstrip("-").isdigit():
                    moment = datetime.fromisoformat(text.replace("Z", "+00:00"))
                    # Without a zone, UTC, as milliseconds are: compared with the others, it stopped a
                    # shifted load with a TypeError (naive and aware datetimes).
                    return moment if moment.tzinfo is not None else moment.replace(tzinfo=UTC)
                # Milliseconds since the epoch, in UTC whatever the machine's zone (read in its zone, a
                # birth date before 1970 from mongoexport became the day before, at 23:00, in Paris).
                return EPOCH + timedelta(milliseconds=_whole(text, "$date"))
            if key == "$numberLong":
                return _whole(inner, "$numberLong")
            if key == "$numberDecimal":
                return float(inner)
            if key == "$oid":
                return str(inner)
        for key, inner in value.items():  # values replaced, never keys: the dict keeps its size
            if isinstance(inner, dict | list):
                value[key] = decode(inner)
    elif isinstance(value, list):
        for index, inner in enumerate(value):
            if isinstance(inner, dict | list):
                value[index] = decode(inner)
    return value


def _whole(value: Any, wrapper: str) -> int:
    """An integer written as Extended JSON writes one (digits in a string, or a JSON number); `true`
    was read as 1 (an event of 1970)."""
    if isinstance(value, bool) or not isinstance(value, str | int):
        raise ValueError(f"{wrapper} holds {type(value).__name__}, not an integer")
    return int(value)


@dataclass(frozen=True, slots=True)
class Line:
    """A line of a file that is not blank: its number in the file (blank lines counted), and the
    object it holds, or why it holds none."""

    number: int
    document: dict[str, Any] | None
    problem: str | None = None


def read_lines(path: Path, numbers: Set[int] | None = None) -> Iterator[Line]:
    """Each line judged alone: one that is not a JSON object, or holds a wrapper that cannot be read
    (`{"$date": "soon"}`), is a Line with its problem, and the lines after it are read as usual.
    `numbers`: only those lines (a worker's part of the demo events), the others not even parsed; a
    set, asked of every line."""
    with path.open("rb") as handle:
        for number, text in enumerate(handle, start=1):
            if (numbers is not None and number not in numbers) or not text.strip():
                continue
            try:
                value = decode(orjson.loads(text))
            except orjson.JSONDecodeError as exc:  # a ValueError too: first
                yield Line(number, None, f"not valid JSON ({exc})")
                continue
            except UNREADABLE as exc:
                yield Line(number, None, f"not valid Extended JSON ({type(exc).__name__}: {exc})")
                continue
            yield Line(number, value) if isinstance(value, dict) else Line(number, None, "not a JSON object")


NOT_READ = object()  # numbered_field_values: the line holds no JSON object with the field, or it cannot be read


def field_values(path: Path, name: str) -> Iterator[Any]:
    """The value of the top-level field `name` of each line that holds a JSON object with it, its
    wrappers read; the lines that cannot be read are passed over (read_lines says why). Nothing else
    of the lines is decoded: the newest event of the demo data is found in a fifth of the time."""
    return (value for _, value in numbered_field_values(path, name) if value is not NOT_READ)


def numbered_field_values(path: Path, name: str) -> Iterator[tuple[int, Any]]:
    """Each line that is not blank, by its number as read_lines counts them, with the value of its
    top-level field `name` as field_values reads it, or NOT_READ."""
    with path.open("rb") as handle:
        for number, text in enumerate(handle, start=1):
            if not text.strip():
                continue
            try:
                document = orjson.loads(text)
                value = decode(document[name]) if isinstance(document, dict) and name in document else NOT_READ
            except UNREADABLE:
                value = NOT_READ
            yield number, value
