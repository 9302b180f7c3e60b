"""When segment changes are dated: after the newest one recorded when the clock reads earlier, so
that the history lists them as they were made; not after one dated by a clock that was far off."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from app.domain.segments.segment import CLOCK_STEP_KEPT, event_time

NOW = datetime(2026, 12, 3, 9, 0, tzinfo=UTC)


def test_a_change_is_dated_now_when_the_clock_reads_later_than_the_newest_one() -> None:
    assert event_time(NOW, None) == NOW
    assert event_time(NOW, NOW - timedelta(seconds=1)) == NOW


def test_a_change_made_after_the_clock_was_set_back_is_dated_after_the_newest_one() -> None:
    newest = NOW + timedelta(seconds=2)
    assert event_time(NOW, newest) == newest + timedelta(milliseconds=1)
    assert event_time(NOW, NOW) == NOW + timedelta(milliseconds=1)


def test_a_newest_change_dated_by_a_clock_far_ahead_does_not_date_every_later_one() -> None:
    """Found by a review: an hour's jump of one server's clock dated every later change an hour ahead."""
    assert event_time(NOW, NOW + CLOCK_STEP_KEPT + timedelta(seconds=1)) == NOW
