"""The DateTime scalar reads what Strawberry's reads, to the same instant, and refuses what it refuses
with the same words (graphql_schema/datetime_scalar.py: the standard library first, dateutil after)."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta, timezone

import pytest
from hypothesis import given
from hypothesis import strategies as st
from pydantic_core import TzInfo
from strawberry.schema.types.base_scalars import DateTimeDefinition

from graphql_schema.datetime_scalar import DATETIME

ZONES = st.sampled_from([None, UTC, timezone(timedelta(hours=2)), timezone(timedelta(hours=-5, minutes=-30))])


def _answer(parse: object, value: object) -> object:
    try:
        return parse(value)  # type: ignore[operator]
    except Exception as exc:
        return (type(exc).__name__, str(exc))


@given(
    moment=st.datetimes(min_value=datetime(1900, 1, 1), max_value=datetime(2100, 1, 1), timezones=ZONES),
    form=st.sampled_from(["seconds", "milliseconds", "microseconds", "minutes", "auto"]),
    z=st.booleans(),
    space=st.booleans(),
)
def test_the_texts_clients_send_read_as_strawberry_reads_them(
    moment: datetime, form: str, z: bool, space: bool
) -> None:
    text = moment.isoformat(sep=" " if space else "T", timespec=form)
    if z and text.endswith("+00:00"):
        text = text[:-6] + "Z"
    assert DATETIME.parse_value(text) == DateTimeDefinition.parse_value(text)


@pytest.mark.parametrize(
    "value",
    ["2026-11-02T24:00:00Z", "20261102T100000Z", "2026-11-02T10:00:00,5Z", 5, None, ["2026-11-02"]],
)  # fmt: skip
def test_edge_cases_and_refusals_are_answered_alike(value: object) -> None:
    assert _answer(DATETIME.parse_value, value) == _answer(DateTimeDefinition.parse_value, value)


@pytest.mark.parametrize("text", ["nope", "2026-13-01T00:00:00Z", "", "2026-11-02T10:00:00+25:00"])
def test_a_text_that_says_no_time_is_kept_for_its_event_to_be_judged_alone(text: str) -> None:
    """Strawberry refuses it, which failed a whole batch; the event holding it is rejected alone."""
    assert isinstance(_answer(DateTimeDefinition.parse_value, text), tuple)  # refused by Strawberry's
    assert DATETIME.parse_value(text) == text


@pytest.mark.parametrize("text", ["2026-11-02", "2026-W45-1"])
def test_a_day_without_a_time_is_kept_for_its_event_to_be_judged_alone(text: str) -> None:
    """Strawberry reads it as that day's midnight; it is no date-time, and the event is rejected alone."""
    assert not isinstance(_answer(DateTimeDefinition.parse_value, text), tuple)
    assert DATETIME.parse_value(text) == text


WRITTEN_ZONES = st.sampled_from([None, UTC, TzInfo(0), TzInfo(3600), timezone(timedelta(hours=-5, minutes=-30))])


@given(
    moments=st.lists(
        st.datetimes(min_value=datetime(1, 1, 2), max_value=datetime(9999, 12, 30), timezones=WRITTEN_ZONES),
        max_size=5,
    )
)
def test_times_are_written_as_strawberry_writes_them_whatever_was_written_before(moments: list[datetime]) -> None:
    # the same instants in the other zones too, written after them: a cached text is never another zone's
    for moment in moments + [m.astimezone(timezone(timedelta(hours=2))) for m in moments if m.tzinfo] + moments:
        assert DATETIME.serialize(moment) == DateTimeDefinition.serialize(moment)


@pytest.mark.parametrize("value", [date(2026, 11, 2), "2026-11-02", 5, None])
def test_other_values_are_written_or_refused_alike(value: object) -> None:
    assert _answer(DATETIME.serialize, value) == _answer(DateTimeDefinition.serialize, value)


def test_the_one_datetime_input_is_an_event_s_timestamp() -> None:
    """The scalar keeps a text it cannot read (for ingestion to reject that event alone): any other
    DateTime input added to the schema would receive that text, so it must be handled first."""
    from graphql import GraphQLInputObjectType, get_named_type

    from graphql_schema.schema import schema

    found = set()
    for name, kind in schema._schema.type_map.items():
        if isinstance(kind, GraphQLInputObjectType):
            found |= {f"{name}.{f}" for f, v in kind.fields.items() if get_named_type(v.type).name == "DateTime"}
        for field_name, field in (getattr(kind, "fields", None) or {}).items():
            for argument, value in getattr(field, "args", {}).items():
                if get_named_type(value.type).name == "DateTime":
                    found.add(f"{name}.{field_name}({argument})")
    assert found == {"EventInput.timestamp"}
