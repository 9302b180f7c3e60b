"""The review lists a process keeps for the pages after the first: for a while, and no more pairs
in all than one list may hold."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
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


async def test_first_pages_asked_together_share_one_list_and_lists_are_computed_one_at_a_time() -> None:
    """A whole-store list takes about a minute at 100,000 profiles: eight first pages at once were
    eight computations side by side."""
    lists = ReviewLists(max_pairs=100, seconds=60, clock=Clock())
    running, most, made = 0, 0, []

    def computing(list_id: str, min_score: float) -> Callable[[], Awaitable[ReviewList]]:
        async def compute() -> ReviewList:
            nonlocal running, most
            running += 1
            most = max(most, running)
            await asyncio.sleep(0.02)
            running -= 1
            made.append(list_id)
            return _list(list_id, 1, min_score)

        return compute

    same = await asyncio.gather(*(lists.computed(0.5, computing(f"same{n}", 0.5)) for n in range(4)))
    assert {review.id for review in same} == {"same0"} and made == ["same0"]  # one computation, shared
    assert lists.get("same0", 0.5) is same[0]  # kept for the later pages
    await asyncio.gather(*(lists.computed(score, computing(f"at{score}", score)) for score in (0.3, 0.4, 0.6)))
    assert most == 1  # never two at once
    assert sorted(made) == ["at0.3", "at0.4", "at0.6", "same0"]
