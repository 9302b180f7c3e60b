"""The DateTime scalar as Strawberry's, read faster: an event's timestamp is read with the standard
library's `datetime.fromisoformat` (under a microsecond), and only a text it refuses goes to
dateutil's `isoparse`, which Strawberry uses for every value (~45 µs: 45 ms of a 1,000-event batch).
Since Python 3.11 `fromisoformat` reads the ISO 8601 forms clients send (`Z`, offsets, fractions,
week dates, a space for the `T`) to the same instant; what only `isoparse` reads (`24:00`) or
neither does is answered as before, with Strawberry's own message.

Written as Strawberry writes it (`isoformat`), from a cache for UTC times: a response lists the same
customers' times again and again (a segment's members and their last interactions: 3,000 of them),
and formatting an aware time (2.5-3.5 µs, the most with pydantic's UTC, which stored times are read
with) is ~10 times a lookup."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, date, datetime
from typing import Any

from graphql import GraphQLError, ValueNode, value_from_ast_untyped
from pydantic_core import TzInfo
from strawberry.schema.types.base_scalars import DateDefinition, DateTimeDefinition, wrap_parser
from strawberry.types.scalar import ScalarDefinition

from app.domain.clock import TIME_TEXTS_KEPT, parse_time


def _read(text: str) -> datetime | str:
    """The time a text says; a text that says none is kept as it is. The schema's one DateTime input
    is an event's timestamp, and ingestion judges each event alone (app/domain/events.py): refused
    here, one month 13 failed the whole batch's variables, and the valid events beside it were lost.
    A value that is not text at all is still refused here (wrap_parser)."""
    try:
        return parse_time(text)
    except (ValueError, OverflowError):
        return text


# UTC as the standard library and as pydantic give it: equal times in either are written the same,
# but kept apart (see app/domain/clock.py, time_texts: a lookup that meets an equal time of the other
# kind costs as much as formatting). Inline, not time_texts itself: a response writes thousands.
_PYDANTIC_UTC = TzInfo(0)
_WRITTEN: tuple[dict[datetime, str], dict[datetime, str]] = ({}, {})


def _write(value: Any) -> Any:
    tz = getattr(value, "tzinfo", None)
    if value.__class__ is not datetime or (tz is not UTC and tz is not _PYDANTIC_UTC):
        return value.isoformat()  # what Strawberry's serialize does with anything else
    kept = _WRITTEN[tz is UTC]
    text = kept.get(value)
    if text is None:
        if len(kept) >= TIME_TEXTS_KEPT:
            kept.clear()
        text = kept[value] = value.isoformat()
    return text


# (class, tzinfo, texts): a compiled plan looks a stored time's text up in place, and calls _write only
# for a time not written yet or of another kind (graphql_schema/compiled_queries.py): 3,000 timestamps
# of a list of members' interactions are 3,000 calls fewer. The stores' times carry pydantic's UTC.
_write.kept_texts = (datetime, _PYDANTIC_UTC, _WRITTEN[0])  # type: ignore[attr-defined]


def _located(parse_value: Callable[[Any], Any]) -> Callable[..., Any]:
    """A literal's parsing that says where the literal is: graphql-core reports the error a scalar
    raises as it is, and Strawberry's has no place (an inline `birthDate: "1987-02-30"` was refused
    with neither a location nor a path, where a wrong `channel: 7` beside it had its location)."""

    def parse_literal(node: ValueNode, variables: dict[str, Any] | None = None) -> Any:
        try:
            return parse_value(value_from_ast_untyped(node, variables))
        except GraphQLError as exc:
            raise GraphQLError(exc.message, node) from None

    return parse_literal


_read_time = wrap_parser(_read, "DateTime")
DATETIME = ScalarDefinition(
    name=DateTimeDefinition.name,
    description=DateTimeDefinition.description,
    specified_by_url=DateTimeDefinition.specified_by_url,
    serialize=_write,
    parse_value=_read_time,
    parse_literal=_located(_read_time),
    origin=datetime,
)
_read_date = wrap_parser(date.fromisoformat, "Date")  # Strawberry's Date: its parser, its message
DATE = ScalarDefinition(
    name=DateDefinition.name,
    description=DateDefinition.description,
    specified_by_url=DateDefinition.specified_by_url,
    serialize=DateDefinition.serialize,
    parse_value=_read_date,
    parse_literal=_located(_read_date),
    origin=date,
)
