"""The steward's review list: every fuzzy merge candidate pair of the whole store in a score range,
best first (score, then `a`, then `b`; `a` sorts before `b`), paged by that position.

Scoring the whole store takes about a minute at 100,000 profiles, so a list is computed when its
first page is asked and its later pages are read from it: each process keeps its recent lists
(`LIST_SECONDS`, at most `max_pairs` pairs in all). A page asked after a list this process no longer
holds (another process, or later) recomputes it and resumes after the same position, so no pair still
listed is shown twice or skipped. Only pairs, scores and links are kept; a page's reasons are the
comparison of its two profiles as they are when the page is read.

A list holds at most `max_pairs` pairs (`Settings.max_review_pairs`): at a low `minScore` a large
store has more (every pair sharing a blocking key scores above 0), and asking for them is refused.
"""

from __future__ import annotations

import asyncio
import bisect
import logging
import secrets
import time
from array import array
from collections import OrderedDict
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import datetime

from app.domain.clock import now
from app.domain.errors import InvalidInput, LimitExceeded
from app.domain.matching import (
    DEFAULT_MIN_SCORE,
    Candidate,
    MatchFields,
    MatchReason,
    PairScorer,
    linked_pairs,
)
from app.domain.matching.blocking import MAX_BLOCK_SIZE, namesakes_by_given_name
from app.domain.matching.candidates import pairs_reaching
from app.domain.matching.links import LINK_FIELD, LINK_METHOD, MIN_LINK_STEP
from app.domain.paging import Window
from app.scoring_processes import MIN_PROFILES, Found, ScoringProcesses, process_count
from app.services.key_groups import KeyGroup, SeenPairs, key_group_chunks, let_go, unseen_pairs
from app.services.match_candidates import check_min_score, check_request
from app.services.match_model import current_scorer
from app.services.ports import ProfileStore
from app.services.profiles import check_page_size

log = logging.getLogger("cdp.matching")

# How long a process keeps a list for the pages after its first.
LIST_SECONDS = 600.0
# The most pairs a list holds (Settings.max_review_pairs): about 50 MB of pairs in each process.
MAX_REVIEW_PAIRS = 500_000


@dataclass(frozen=True, slots=True)
class Pair:
    score: float
    a: str
    b: str
    via: str | None  # the listed score is the product of the links through this profile
    unique_names: bool = False  # scored as the only two profiles holding their names key


@dataclass(frozen=True, slots=True)
class Position:
    """Where a page ends: the pair's score and ids; the next page starts after it."""

    score: float
    a: str
    b: str


@dataclass(frozen=True, slots=True)
class ListPosition:
    """What a cursor carries: the list it was read from, the minScore it was scored at, and the
    position in it."""

    list_id: str
    min_score: float
    position: Position


@dataclass(frozen=True, slots=True)
class ReviewList:
    id: str
    min_score: float
    computed_at: datetime
    pairs: list[Pair]  # best first


@dataclass(frozen=True, slots=True)
class ReviewPage:
    list_id: str
    min_score: float
    computed_at: datetime
    candidates: list[Candidate]
    total: int  # pairs of the list in the score range asked
    has_next: bool
    has_previous: bool


def _order(pair: Pair) -> tuple[float, str, str]:
    return (-pair.score, pair.a, pair.b)


class ReviewLists:
    """The lists this process computed, for their later pages: each for `seconds`, the least recently
    read dropped first once they hold more than `max_pairs` pairs together."""

    def __init__(
        self, *, max_pairs: int, seconds: float = LIST_SECONDS, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self.max_pairs = max_pairs
        self.seconds = seconds
        self._clock = clock
        self._lists: OrderedDict[str, tuple[ReviewList, float]] = OrderedDict()
        self._running: dict[float, asyncio.Future[ReviewList]] = {}  # by min score
        self._one_at_a_time = asyncio.Lock()

    async def computed(self, min_score: float, compute: Callable[[], Awaitable[ReviewList]]) -> ReviewList:
        """A new list at `min_score`, kept for its later pages. A whole-store list takes about a minute
        at 100,000 profiles, and every first page asked for one: eight at once held both cores. Here
        this process computes one at a time, and a first page asked while one at the same min score
        is computed shares it (a client gone does not cancel what others wait for)."""
        running = self._running.get(min_score)
        if running is None:
            running = asyncio.ensure_future(self._compute(compute))
            self._running[min_score] = running
            running.add_done_callback(lambda _: self._running.pop(min_score, None))
        return await asyncio.shield(running)

    async def _compute(self, compute: Callable[[], Awaitable[ReviewList]]) -> ReviewList:
        async with self._one_at_a_time:
            review = await compute()
        self.keep(review)
        return review

    def get(self, list_id: str, min_score: float) -> ReviewList | None:
        found = self._lists.get(list_id)
        if found is None or found[0].min_score != min_score:
            return None
        if self._clock() >= found[1]:
            del self._lists[list_id]
            return None
        self._lists.move_to_end(list_id)
        return found[0]

    def keep(self, review: ReviewList) -> None:
        self._lists[review.id] = (review, self._clock() + self.seconds)
        held = sum(len(kept.pairs) for kept, _ in self._lists.values())
        while held > self.max_pairs and len(self._lists) > 1:
            _, (dropped, _) = self._lists.popitem(last=False)
            held -= len(dropped.pairs)


def check_range(min_score: float, max_score: float | None) -> None:
    if max_score is not None and not min_score <= max_score <= 1.0:
        raise InvalidInput(f"maxScore must be in [minScore, 1], got {max_score}", field="maxScore")


async def review_page(
    store: ProfileStore,
    lists: ReviewLists,
    window: Window[ListPosition],
    *,
    min_score: float,
    max_score: float | None,
    max_page_size: int,
) -> ReviewPage:
    """The pairs at `min_score` to `max_score` within `window` (after and before the positions of its
    cursors; the first or the last of them), with the list's total."""
    check_min_score(min_score)
    check_range(min_score, max_score)
    check_page_size(window.size, maximum=max_page_size, field=window.argument)
    cursor = window.after or window.before
    if cursor is not None and cursor.min_score != min_score:
        # Another list's position, asked of this one: its pages would skip pairs or repeat them. A list
        # scored at another minScore on another worker, or held no longer, was read as this one's.
        raise InvalidInput(
            f"a cursor of the list at minScore {cursor.min_score:g}: ask its next page with that minScore, "
            "or this list's first page without a cursor",
            field="after" if window.after is not None else "before",
        )
    review = lists.get(cursor.list_id, min_score) if cursor is not None else None
    if review is None:
        review = await lists.computed(
            min_score, lambda: review_list(store, min_score=min_score, max_pairs=lists.max_pairs)
        )
    pairs = review.pairs
    in_range = bisect.bisect_left(pairs, (-max_score, "", ""), key=_order) if max_score is not None else 0
    lower, upper = in_range, len(pairs)  # what the cursors leave of the list
    if window.after is not None:
        at = window.after.position
        lower = max(lower, bisect.bisect_right(pairs, (-at.score, at.a, at.b), key=_order))
    if window.before is not None:
        at = window.before.position
        upper = max(lower, min(upper, bisect.bisect_left(pairs, (-at.score, at.a, at.b), key=_order)))
    start, end = (
        (max(lower, upper - window.size), upper) if window.from_end else (lower, min(upper, lower + window.size))
    )
    candidates = await with_reasons(store, pairs[start:end])
    # Pairs merged away or erased since the list was scored are left out: the page reads on past them
    # (a steward merging while paging left whole pages empty, their cursors null, `hasNextPage` true).
    while len(candidates) < window.size and (start > lower if window.from_end else end < upper):
        missing = window.size - len(candidates)
        if window.from_end:
            start, before = max(lower, start - missing), start
            candidates = await with_reasons(store, pairs[start:before]) + candidates
        else:
            end, after = min(upper, end + missing), end
            candidates += await with_reasons(store, pairs[after:end])
    return ReviewPage(
        list_id=review.id,
        min_score=min_score,
        computed_at=review.computed_at,
        candidates=candidates,
        total=len(pairs) - in_range,
        has_next=end < len(pairs),
        has_previous=start > in_range,
    )


async def candidates_in_store(
    store: ProfileStore,
    *,
    min_score: float = DEFAULT_MIN_SCORE,
    first: int = 100,
    max_pairs: int = MAX_REVIEW_PAIRS,
    lists: ReviewLists | None = None,
) -> list[Candidate]:
    """The best `first` pairs of the whole store, best first: the first page of a new review list,
    computed through `lists` when given (the server's: one whole-store list at a time, shared by the
    requests that ask meanwhile, as mergeCandidatePairs' first pages are; each request computed its
    own, and six at once took three times as long as one)."""
    check_request(min_score, first)
    if lists is None:
        review = await review_list(store, min_score=min_score, max_pairs=max_pairs)
    else:
        review = await lists.computed(min_score, lambda: review_list(store, min_score=min_score, max_pairs=max_pairs))
    return await with_reasons(store, review.pairs[:first])


async def review_list(store: ProfileStore, *, min_score: float, max_pairs: int) -> ReviewList:
    """Every pair of the store at or above `min_score`: each key group's pairs scored once, then the
    links (its cost grows with the number of profiles sharing keys, not with the square of the store)."""
    score_of = await current_scorer(store)
    fields: dict[str, MatchFields] = {}
    scored = SeenPairs()
    pairs: dict[tuple[str, str], Pair] = {}
    unique: list[tuple[str, str]] = []  # the pairs of profiles holding a names key no other holds
    steps: list[Candidate] = []  # the pairs links may go through, filled once every pair is scored
    count = process_count() if await store.count_profiles() >= MIN_PROFILES else 0

    def keep(found: list[Pair]) -> None:
        pairs.update(((pair.a, pair.b), pair) for pair in found)
        _check_size(len(pairs), min_score, max_pairs)

    try:
        long_blocks = 0
        async with _scoring(score_of, min_score, count) as processes:
            async for groups in key_group_chunks(store, fields, unique_names=unique):
                if processes is None:
                    found = await asyncio.to_thread(_score_chunk, groups, fields, scored, score_of, min_score)
                else:  # the processes score this chunk while the next is read: what they found before
                    numbered = await asyncio.to_thread(_numbered_chunk, processes, groups, fields, scored)
                    found = _found_pairs(processes, await processes.score(*numbered))
                keep(found)
                long_blocks += sum(len(ids) > MAX_BLOCK_SIZE for _, ids in groups)
            if processes is not None:
                keep(_found_pairs(processes, await processes.finish()))
        # Known only once their key's group is read, after other keys may have handed the pair out.
        keep(await asyncio.to_thread(_score_unique, unique, fields, score_of, min_score))
        if long_blocks:
            log.info(
                "merge candidates: %d blocking keys shared by over %d profiles compared by sorted neighbourhood",
                long_blocks,
                MAX_BLOCK_SIZE,
            )
        # The links and the ordering walk every pair in one piece: on a worker thread, not the event loop.
        listed = await asyncio.to_thread(_linked_and_ordered, pairs, steps, fields, min_score, max_pairs, score_of)
    finally:  # a list refused as too long holds the most
        await let_go(*scored.sets, pairs, unique, steps, fields)
    return ReviewList(id=secrets.token_urlsafe(9), min_score=min_score, computed_at=now(), pairs=listed)


@asynccontextmanager
async def _scoring(score_of: PairScorer, min_score: float, count: int) -> AsyncIterator[ScoringProcesses | None]:
    """Processes scoring a large store's pairs (`count` of them), or None: the serving process scores."""
    if not count:
        yield None
        return
    async with await asyncio.to_thread(ScoringProcesses, score_of, min_score, count) as processes:
        yield processes


def _score_chunk(
    groups: list[KeyGroup],
    fields: dict[str, MatchFields],
    scored: SeenPairs,
    score_of: PairScorer,
    min_score: float,
) -> list[Pair]:
    """The pairs of a chunk of key groups not scored before, those at `min_score` or above (on a
    worker thread: `scored` is only touched here, one chunk at a time)."""
    found = pairs_reaching(score_of, fields.__getitem__, _unseen(groups, fields, scored), min_score)
    return [Pair(score, a, b, None) for score, a, b in found]


def _numbered_chunk(
    processes: ScoringProcesses, groups: list[KeyGroup], fields: dict[str, MatchFields], scored: SeenPairs
) -> tuple[array[int], array[int]]:
    """`_score_chunk`'s pairs, numbered for the scoring processes (on a worker thread)."""
    return processes.numbered(list(_unseen(groups, fields, scored)), fields)


def _found_pairs(processes: ScoringProcesses, found: Found) -> list[Pair]:
    ids = processes.ids
    return [Pair(score, ids[a], ids[b], None) for score, a, b in found]


def _unseen(groups: list[KeyGroup], fields: dict[str, MatchFields], scored: SeenPairs) -> Iterator[tuple[str, str]]:
    """The pairs of a chunk not handed out before. The namesakes by given name of the given-name
    key's groups are passed over, as one profile's lookup passes them over, whichever scorer answers."""

    def namesakes(key: str, a: str, b: str) -> bool:
        return namesakes_by_given_name(key, fields[a], fields[b])

    return unseen_pairs(groups, fields, scored, namesakes)


def _score_unique(
    unique: list[tuple[str, str]], fields: dict[str, MatchFields], score_of: PairScorer, min_score: float
) -> list[Pair]:
    """The pairs of profiles whose names key only they hold, scored with that evidence (on a worker
    thread), those at `min_score` or above; a profile no longer held is left out. None for a learned
    model, which weighs the names by its own frequencies."""
    if not score_of.counts_unique_names:
        return []
    held = [(a, b) for a, b in unique if a in fields and b in fields]
    found = pairs_reaching(score_of, fields.__getitem__, held, min_score, unique_names=True)
    return [Pair(score, a, b, None, unique_names=True) for score, a, b in found]


def _linked_and_ordered(
    pairs: dict[tuple[str, str], Pair],
    steps: list[Candidate],
    fields: dict[str, MatchFields],
    min_score: float,
    max_pairs: int,
    score_of: PairScorer,
) -> list[Pair]:
    # `steps` is the caller's, let go of in slices: freed here in one piece, a large one held the loop.
    # In the pairs' order, not the order they were scored in (by processes, as each share came back):
    # of two links through other profiles with one score, the one listed is the same every time.
    steps.extend(Candidate(p.a, p.b, p.score, []) for _, p in sorted(pairs.items()) if p.score >= MIN_LINK_STEP)
    for found in linked_pairs(steps, fields, min_score, score_of):
        # A link is listed where it beats the pair's own score (the direct score the link was judged
        # against is the plain one: a pair holding a names key alone may score higher).
        known = pairs.get((found.a, found.b))
        if known is None or (found.via is not None and found.score > known.score):
            pairs[found.a, found.b] = Pair(found.score, found.a, found.b, found.via)
    _check_size(len(pairs), min_score, max_pairs)
    return sorted(pairs.values(), key=_order)


def _check_size(count: int, min_score: float, max_pairs: int) -> None:
    if count > max_pairs:
        raise LimitExceeded(
            f"more than {max_pairs:,} pairs score at or above minScore {min_score} in this store, the most a "
            "review list holds (CDP_MAX_REVIEW_PAIRS): raise minScore, or ask one profile's candidates",
            field="minScore",
        )


async def with_reasons(store: ProfileStore, pairs: list[Pair]) -> list[Candidate]:
    """The pairs with the comparison of their two profiles as they are now, in one store read. A pair
    whose profile (or the one it links through) was merged away or erased since the list was computed
    is left out: nothing left to review, and an erased person's id must not stay linked to another's."""
    ids = list(dict.fromkeys(p for pair in pairs for p in (pair.a, pair.b, pair.via) if p is not None))
    fields = {view.id: view.fields for view in await store.match_views(ids)} if ids else {}
    score_of = await current_scorer(store)
    found: list[Candidate] = []
    for pair in pairs:
        if not {pair.a, pair.b, pair.via or pair.a} <= fields.keys():
            continue
        compared = score_of.score_reaching(fields[pair.a], fields[pair.b], 0.0, unique_names=pair.unique_names)
        assert compared is not None  # every pair reaches 0
        reasons: list[MatchReason] = list(compared.reasons)
        scorer = compared.scorer
        if pair.via is not None:
            reasons.append(MatchReason(LINK_FIELD, LINK_METHOD, pair.score))
        found.append(Candidate(pair.a, pair.b, pair.score, reasons, via=pair.via, scorer=scorer))
    return found
