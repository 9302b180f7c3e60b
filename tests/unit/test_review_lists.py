"""The review lists a process keeps for the pages after the first: for a while, and no more pairs
in all than one list may hold."""

from __future__ import annotations

from datetime import UTC, datetime

from app.services.review_list import Pair, ReviewList, ReviewLists

AT = datetime(2026, 11, 1, tzinfo=UTC)


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def _list(list_id: str, pairs: int, min_score: float = 0.5) -> ReviewList:
    return ReviewList(list_id, min_score, AT, [Pair(0.9, f"a{i}", f"b{i}", None) for i in range(pairs)])


def test_a_list_is_read_again_at_the_same_min_score_until_it_expires() -> None:
    clock = Clock()
    lists = ReviewLists(max_pairs=10, seconds=60, clock=clock)
    kept = _list("one", 3)
    lists.keep(kept)
    clock.now = 59.0
    assert lists.get("one", 0.5) is kept
    assert lists.get("one", 0.4) is None  # another range: computed again
    assert lists.get("other", 0.5) is None
    clock.now = 60.0
    assert lists.get("one", 0.5) is None


def test_the_least_recently_read_lists_go_first_past_the_pairs_a_list_may_hold() -> None:
    lists = ReviewLists(max_pairs=10, seconds=60, clock=Clock())
    for name in ("old", "read", "new"):
        lists.keep(_list(name, 4))
        if name == "read":
            assert lists.get("old", 0.5) is not None  # read after "read" was kept: "read" is now the oldest
    assert lists.get("read", 0.5) is None
    assert lists.get("old", 0.5) is not None and lists.get("new", 0.5) is not None


def test_the_newest_list_is_kept_even_alone_at_the_limit() -> None:
    lists = ReviewLists(max_pairs=10, seconds=60, clock=Clock())
    lists.keep(_list("small", 2))
    lists.keep(_list("full", 10))
    assert lists.get("full", 0.5) is not None and lists.get("small", 0.5) is None
