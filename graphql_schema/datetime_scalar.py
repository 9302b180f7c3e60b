"""The DateTime scalar as Strawberry's, read faster: an event's timestamp is read with the standard
library's `datetime.fromisoformat` (under a microsecond), and only a text it refuses goes to
dateutil's `isoparse`, which Strawberry uses for every value (~45 µs: 45 ms of a 1,000-event batch).
Since Python 3.11 `fromisoformat` reads the ISO 8601 forms clients send (`Z`, offsets, fractions,
week dates, a space for the `T`) to the same instant; what only `isoparse` reads (`24:00`) or
neither does is answered as before, with Strawberry's own message."""

from __future__ import annotations

from datetime import datetime

from dateutil.parser import isoparse
from strawberry.schema.types.base_scalars import DateTimeDefinition, wrap_parser
from strawberry.types.scalar import ScalarDefinition


def _read(text: str) -> datetime:
    try:
        return datetime.fromisoformat(text)
    except ValueError:
        read: datetime = isoparse(text)  # untyped library
        return read


DATETIME = ScalarDefinition(
    name=DateTimeDefinition.name,
    description=DateTimeDefinition.description,
    specified_by_url=DateTimeDefinition.specified_by_url,
    serialize=DateTimeDefinition.serialize,
    parse_value=wrap_parser(_read, "DateTime"),
    parse_literal=DateTimeDefinition.parse_literal,
    origin=datetime,
)
