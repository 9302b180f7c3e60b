"""The bounds on event data, and the read-side cut of data stored before them (pure, no store)."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from app.domain import event_limits
from app.domain.errors import InvalidInput
from app.domain.event_limits import (
    MAX_STORED_DEPTH,
    TOO_DEEP_MARKER,
    EventLimits,
    check_properties,
    is_valid_unicode,
    readable,
    shown,
)
from app.domain.identifiers import normalise

LIMITS = EventLimits()


def _nested(levels: int, leaf: Any = 1) -> Any:
    """`levels` objects, each holding the next under "a"; the innermost holds `leaf`."""
    value: Any = {"a": leaf}
    for _ in range(levels - 1):
        value = {"a": value}
    return value


def _depth(value: Any) -> int:
    depth = 0
    while isinstance(value, dict):
        depth, value = depth + 1, value["a"]
    return depth


@pytest.mark.parametrize(
    ("properties", "field", "message"),
    [
        pytest.param({"s": "x" * 8193}, "properties.s", "at most 8,192 characters", id="long-string"),
        pytest.param({"l": [0, [1, "x" * 8193]]}, "properties.l[1][1]", "at most 8,192 characters", id="path-in-lists"),
        pytest.param({"k" * 8193: 1}, "properties", "a key of more than 8,192 characters", id="long-key"),
        pytest.param(_nested(17), "properties" + ".a" * 16, "nested deeper than 16 levels", id="17-objects"),
        pytest.param({"l": [[[[[[[[[[[[[[[[1]]]]]]]]]]]]]]]]}, "properties.l" + "[0]" * 15, "16 levels", id="lists"),
        pytest.param(_nested(10_000), "properties" + ".a" * 16, "16 levels", id="10000-levels-no-recursion"),
        pytest.param({"l": list(range(1001))}, "properties.l", "at most 1,000 items", id="long-array"),
        pytest.param({"n": float("inf")}, "properties.n", "finite", id="infinity"),
        pytest.param({"n": [float("-inf")]}, "properties.n[0]", "finite", id="minus-infinity"),
        pytest.param({"n": float("nan")}, "properties.n", "finite", id="nan"),
        pytest.param({"n": 2**63}, "properties.n", "64 bits", id="int-past-64-bits"),
        pytest.param({"n": -(2**63) - 1}, "properties.n", "64 bits", id="int-below-64-bits"),
        pytest.param({"s": "\ud800"}, "properties.s", "not valid Unicode", id="lone-surrogate"),
        pytest.param({"\udc00": 1}, "properties", "key that is not valid Unicode", id="surrogate-key"),
        pytest.param({"m": {"a\x00": 1}}, "properties.m", "NUL", id="nul-key"),
        pytest.param({"o": object()}, "properties.o", "not JSON", id="not-json"),
        pytest.param({1: "x"}, "properties", "not a string", id="int-key"),
        pytest.param({"l": ["x" * 8000] * 9}, "properties", "at most 65,536 bytes", id="too-large"),
    ],
)
def test_a_value_past_a_bound_is_refused_naming_its_path(properties: Any, field: str, message: str) -> None:
    with pytest.raises(InvalidInput) as refused:
        check_properties(properties, LIMITS)
    assert refused.value.field == field
    assert message in refused.value.message


def test_a_path_through_a_long_or_broken_key_is_shown_short_and_valid() -> None:
    with pytest.raises(InvalidInput) as refused:
        check_properties({"k" * 500 + "\ud800": {"n": float("nan")}}, LIMITS)
    assert refused.value.field is not None and is_valid_unicode(refused.value.field)
    assert len(refused.value.field) < 60


def test_the_first_problem_in_document_order_is_the_one_reported() -> None:
    with pytest.raises(InvalidInput) as refused:
        check_properties({"a": [1, {"b": float("nan")}], "c": "x" * 9000}, LIMITS)
    assert refused.value.field == "properties.a[1].b"


def test_data_at_every_bound_is_accepted() -> None:
    check_properties(
        {
            "s": "x" * 8192,
            "k" * 8192: 1,
            "deep": _nested(15),
            "l": list(range(1000)),
            "n": [2**63 - 1, -(2**63), 1e308, -0.0, True, None],
            "at": datetime(2026, 1, 1, tzinfo=UTC),
        },
        LIMITS,
    )


def test_the_size_bound_counts_utf8_bytes_of_compact_json() -> None:
    tight = EventLimits(max_properties_bytes=100)
    check_properties({"url": "é" * 45}, tight)  # {"url":"…"}: 10 bytes, and 2 for each é
    with pytest.raises(InvalidInput, match="at most 100 bytes") as refused:
        check_properties({"url": "é" * 46}, tight)
    assert refused.value.field == "properties"


def test_lone_surrogates_are_not_valid_unicode_and_are_never_shown() -> None:
    assert is_valid_unicode("Zoë 🎉") and not is_valid_unicode("a\ud800") and not is_valid_unicode("\udfff")
    assert shown("m-\ud800") == "m-\ufffd"
    assert shown("x" * 200) == "x" * 128 + "…"


def test_an_identifier_value_with_a_lone_surrogate_is_refused() -> None:
    with pytest.raises(InvalidInput, match="not valid Unicode") as refused:
        normalise("customerId", "c-\ud800", field="identifiers[0]")
    assert refused.value.field == "identifiers[0].value"


def test_stored_data_within_the_bounds_reads_as_it_is() -> None:
    value = {"a": [1, {"b": "c"}], "deep": _nested(MAX_STORED_DEPTH - 1)}
    assert readable(value) is value


def test_stored_data_nested_too_deep_reads_cut_at_the_stored_depth_with_a_marker() -> None:
    stored = {"url": "/", "x": _nested(300), "l": [[_nested(100)]]}
    read = readable(stored)
    assert read["url"] == "/"
    assert _depth(read["x"]) == MAX_STORED_DEPTH - 1  # the properties object is the first level
    inner = read["x"]
    while isinstance(inner, dict):
        inner = inner["a"]
    assert inner == TOO_DEEP_MARKER
    assert _depth(read["l"][0][0]) == MAX_STORED_DEPTH - 3
    assert _depth(stored["x"]) == 300  # the stored value itself is left alone


# -- the one-pass check agrees with the careful walk ---------------------------------------------
SMALL = EventLimits(max_properties_bytes=400, max_string_length=12, max_depth=4, max_array_items=5)
json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**64), max_value=2**64)
    | st.floats(allow_nan=True, allow_infinity=True)
    | st.text(alphabet=st.characters(codec=None), max_size=16)
    | st.dates(),
    lambda inner: (
        st.lists(inner, max_size=7)
        | st.dictionaries(st.text(alphabet=st.characters(codec=None), max_size=14) | st.integers(), inner, max_size=5)
    ),
    max_leaves=30,
)


def _outcome(check: Any, value: Any, limits: EventLimits) -> tuple[str, str | None] | None:
    try:
        check(value, limits, field="properties")
    except InvalidInput as exc:
        return exc.message, exc.field
    return None


@settings(max_examples=600)
@given(json_values, st.sampled_from([SMALL, LIMITS]))
def test_the_one_pass_check_decides_as_the_careful_walk(value: Any, limits: EventLimits) -> None:
    careful = _outcome(lambda v, lim, field: event_limits._walk(v, lim, field), value, limits)
    assert _outcome(check_properties, value, limits) == careful
