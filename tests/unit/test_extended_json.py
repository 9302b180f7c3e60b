"""Reading the fixtures' MongoDB Extended JSON: wrappers anywhere in a line, each line judged alone."""

from __future__ import annotations

import time
from datetime import UTC, date, datetime
from pathlib import Path

import pytest

from app.services.extended_json import decode, field_values, read_lines


def test_wrappers_are_read_at_any_depth_and_other_values_kept() -> None:
    document = {
        "timestamp": {"$date": "2025-11-01T00:34:03.127Z"},
        "properties": {
            "items": [{"price": {"$numberDecimal": "19.90"}, "qty": {"$numberLong": "2"}}, [{"$oid": "abc"}]],
            "note": {"text": "a one-key object that is no wrapper"},
            "plain": [1, "two", None, True],
        },
    }
    assert decode(document) == {
        "timestamp": datetime(2025, 11, 1, 0, 34, 3, 127000, tzinfo=UTC),
        "properties": {
            "items": [{"price": 19.9, "qty": 2}, ["abc"]],
            "note": {"text": "a one-key object that is no wrapper"},
            "plain": [1, "two", None, True],
        },
    }


def test_a_top_level_field_is_read_from_the_lines_that_hold_it(tmp_path: Path) -> None:
    path = tmp_path / "events.jsonl"
    path.write_text(
        '{"timestamp": {"$date": "2025-01-02T00:00:00Z"}, "properties": {"$date": "never read"}}\n'
        "not json\n"
        '{"timestamp": {"$date": "soon"}}\n'
        "[1, 2]\n"
        '{"type": "page_view"}\n'
        '{"timestamp": {"$date": {"$numberLong": "0"}}}\n'
    )
    assert [t.astimezone(UTC) for t in field_values(path, "timestamp")] == [
        datetime(2025, 1, 2, tzinfo=UTC),
        datetime(1970, 1, 1, tzinfo=UTC),
    ]
    # read_lines judges whole lines: the first one's other wrapper cannot be read
    assert [line.problem is None for line in read_lines(path)] == [False, False, False, False, True, True]


@pytest.mark.parametrize("zone", ["UTC", "Europe/Paris", "Asia/Tokyo", "America/New_York"])
def test_milliseconds_are_read_in_utc_whatever_the_machines_zone(zone: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """mongoexport writes dates before 1970 as milliseconds: a birth date read in the machine's zone
    was the day before at 23:00 in Paris, and the profile was refused ("should have zero time")."""
    monkeypatch.setenv("TZ", zone)
    time.tzset()
    try:
        born = decode({"birthDate": {"$date": {"$numberLong": "-468547200000"}}})["birthDate"]
    finally:
        monkeypatch.undo()
        time.tzset()
    assert born == datetime(1955, 2, 26, tzinfo=UTC) and born.date() == date(1955, 2, 26)


@pytest.mark.parametrize("wrapped", [{"$date": True}, {"$date": 1.5}, {"$numberLong": False}, {"$date": [1]}])
def test_a_wrapper_holding_no_integer_is_refused(wrapped: dict[str, object]) -> None:
    with pytest.raises(ValueError, match="not an integer"):
        decode({"at": wrapped})


def test_an_iso_date_without_a_zone_is_read_in_utc() -> None:
    """Compared with zoned ones (the newest event of a shifted load), it stopped the load with a
    TypeError: naive and aware datetimes."""
    assert decode({"$date": "2026-01-02T10:00:00"}) == datetime(2026, 1, 2, 10, tzinfo=UTC)
    assert decode({"$date": "2026-01-02T10:00:00+02:00"}) == datetime(2026, 1, 2, 8, tzinfo=UTC)


def test_lines_asked_by_number_are_read_alone_and_keep_their_numbers(tmp_path: Path) -> None:
    path = tmp_path / "events.jsonl"
    path.write_text('{"n": 1}\n\nnot json\n{"n": {"$numberLong": "4"}}\n{"n": 5}\n')
    assert [(line.number, line.document) for line in read_lines(path, {1, 4})] == [(1, {"n": 1}), (4, {"n": 4})]
    # the line that holds no JSON is read only when asked for
    assert [(line.number, line.problem is None) for line in read_lines(path, {3, 5})] == [(3, False), (5, True)]
