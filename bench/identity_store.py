"""Fuzzy matching through the real services and the embedded store: what `mergeCandidates` costs
and finds, as opposed to the in-memory blocking of `bench/identity_matching.py`.

    store, seconds = await build_store(profiles, directory)  # written with their blocking keys
    await whole_store_seconds(store)                          # the whole store's review list
    await one_profile_latencies(store, sample)                # one profile's candidates, each timed
    await answered_by(store, model)                           # a learned model answers (None: the rules)

`truth` maps each profile id to the id of the person it belongs to.
"""

from __future__ import annotations

import json
import time
from collections import defaultdict
from collections.abc import Awaitable, Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar

from app.domain.matching import DEFAULT_MIN_SCORE
from app.domain.matching.index import refresh_keys
from app.domain.matching.learned import MatchModel
from app.domain.profile import Profile
from app.services import match_candidates, match_model, review_list
from app.services.ports import ProfileStore, StoreTransaction
from app.store.sqlite.store import SQLiteStore
from bench.common import Latencies

WRITE_BATCH = 1000
K = TypeVar("K")  # how a block names its profiles: their ids, or their numbers in a list


@dataclass(frozen=True, slots=True)
class Quality:
    true_pairs: int
    found_pairs: int
    correct_pairs: int

    @property
    def precision(self) -> float:
        return self.correct_pairs / self.found_pairs if self.found_pairs else 1.0

    @property
    def recall(self) -> float:
        return self.correct_pairs / self.true_pairs if self.true_pairs else 1.0

    @property
    def f1(self) -> float:
        p, r = self.precision, self.recall
        return 2 * p * r / (p + r) if p + r else 0.0


async def build_store(profiles: Sequence[Profile], directory: Path) -> tuple[SQLiteStore, float]:
    """An embedded store holding `profiles` with their blocking keys; returns it and the seconds taken."""
    store = SQLiteStore(directory / "identity.sqlite3")
    started = time.perf_counter()
    for start in range(0, len(profiles), WRITE_BATCH):
        async with store.batch():
            for profile in profiles[start : start + WRITE_BATCH]:
                await store.run_in_transaction(_insert(refresh_keys(profile)))
    return store, time.perf_counter() - started


async def answered_by(store: ProfileStore, model: MatchModel | None) -> None:
    """Make `model` (None: the rules) the scorer the store's lookups answer with, as an estimate
    storing it does (`match_model.estimate_model`; a new stamp: the processes' cached scorer is read
    again): the cost section alternates the two scorers' rounds on one store rather than estimating
    again (15 s at 100,000 profiles)."""
    await store.write_meta(match_model.META_KEY, "" if model is None else json.dumps(model.to_document()))
    await store.write_meta(match_model.STAMP_KEY, f"bench {time.monotonic_ns()}")


def _insert(profile: Profile) -> Callable[[StoreTransaction], Awaitable[None]]:
    async def work(tx: StoreTransaction) -> None:
        await tx.insert_profile(profile)

    return work


def key_blocks(keys_of: Iterable[tuple[K, Iterable[str]]]) -> dict[str, list[K]]:
    """Each blocking key and the profiles holding it, in the order given: the store's key groups,
    made in memory."""
    blocks: dict[str, list[K]] = defaultdict(list)
    for profile, keys in keys_of:
        for key in keys:
            blocks[key].append(profile)
    return blocks


def true_pairs(truth: dict[str, str]) -> set[frozenset[str]]:
    by_person: dict[str, list[str]] = {}
    for profile_id, person in truth.items():
        by_person.setdefault(person, []).append(profile_id)
    return {frozenset((a, b)) for ids in by_person.values() for i, a in enumerate(ids) for b in ids[i + 1 :]}


async def whole_store_seconds(store: ProfileStore, min_score: float = DEFAULT_MIN_SCORE) -> tuple[float, int]:
    started = time.perf_counter()
    found = await review_list.candidates_in_store(store, min_score=min_score, first=match_candidates.MAX_CANDIDATES)
    return time.perf_counter() - started, len(found)


async def listed_quality(store: ProfileStore, truth: dict[str, str]) -> tuple[Quality, int]:
    """Every profile's candidates at the default threshold (`mergeCandidates(profileId)` for each of
    `truth`'s profiles), judged on its pairs: their quality, and how many wrong pairs were links
    (listed through a third profile from both sides)."""
    listed: dict[frozenset[str], bool] = {}  # pair -> listed only as a link so far
    for profile_id in truth:
        for found in await match_candidates.candidates_for_profile(
            store, profile_id, first=match_candidates.MAX_CANDIDATES
        ):
            pair = frozenset((found.a, found.b))
            listed[pair] = listed.get(pair, True) and found.via is not None
    expected = true_pairs(truth)
    wrong = [linked for pair, linked in listed.items() if pair not in expected]
    return Quality(len(expected), len(listed), len(listed) - len(wrong)), sum(wrong)


async def one_profile_latencies(store: ProfileStore, sample: Sequence[str]) -> Latencies:
    samples: list[float] = []
    began = time.perf_counter()
    for profile_id in sample:
        started = time.perf_counter()
        await match_candidates.candidates_for_profile(store, profile_id)
        samples.append(time.perf_counter() - started)
    return Latencies(samples, wall_s=time.perf_counter() - began)
