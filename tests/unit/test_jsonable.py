"""`jsonable` (app/store/documents.py) converts a change's values directly instead of encoding and
decoding them: for any value it must give what the round trip through the store's JSON gives, and
raise where the round trip raises."""

from __future__ import annotations

import enum
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import orjson
from hypothesis import example, given, settings
from hypothesis import strategies as st

from app.store.documents import dumps, jsonable


class Colour(enum.Enum):
    RED = "red"


times = st.datetimes(timezones=st.sampled_from([UTC, timezone(timedelta(hours=2)), timezone(timedelta(hours=-5))]))
leaves = (
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**63), max_value=2**63 - 1)
    | st.floats(allow_nan=True, allow_infinity=True)
    | st.text(max_size=20)
    | times
    | st.dates()
    | st.just(Colour.RED)
)
values = st.recursive(
    leaves,
    lambda inner: (
        st.lists(inner, max_size=4)
        | st.tuples(inner, inner)
        | st.dictionaries(st.text(max_size=8), inner, max_size=4)
        | st.dictionaries(st.integers(), inner, min_size=1, max_size=2)
    ),
    max_leaves=20,
)


def _round_trip(value: Any) -> tuple[str, Any]:
    try:
        return "value", orjson.loads(dumps(value))
    except (TypeError, orjson.JSONEncodeError) as exc:
        return "raises", type(exc)


def _direct(value: Any) -> tuple[str, Any]:
    try:
        return "value", jsonable(value)
    except (TypeError, orjson.JSONEncodeError) as exc:
        return "raises", type(exc)


@settings(max_examples=400)
@given(values)
@example(float("nan"))
@example({"a": [float("-inf"), (1, Colour.RED)]})
@example({1: "x"})
def test_jsonable_is_the_round_trip_through_the_stores_json(value: Any) -> None:
    assert _direct(value) == _round_trip(value)


def test_nesting_past_the_encoders_depth_is_refused_as_the_encoder_refuses_it() -> None:
    deep: Any = 1
    for _ in range(300):
        deep = {"x": deep}
    assert _direct(deep) == _round_trip(deep) == ("raises", orjson.JSONEncodeError)
    assert jsonable({"at": datetime(2026, 1, 2, 3, 4, 5, 678901, tzinfo=UTC)}) == {"at": "2026-01-02T03:04:05.678Z"}
