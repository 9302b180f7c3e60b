"""The identity benchmark's supervised bound: a learner trained on other stores' answered pairs lists
the judged store's pairs it has learnt to tell apart, and its threshold keeps the precision asked."""

from __future__ import annotations

import random

import pytest

from app.domain.matching import MatchReason
from bench.identity_ceiling import Compared, ComparedPair
from bench.identity_supervised import _threshold, present, supervised

pytestmark = pytest.mark.skipif(not present(), reason="scikit-learn is a development dependency")


def _pair(given: str, born: str, *, true: bool, score: float = 0.5) -> ComparedPair:
    reasons = (MatchReason("firstName", given, 1.0 if given == "exact" else 0.2), MatchReason("birthDate", born, 1.0))
    return ComparedPair(reasons, score, "more", true)


def _store(seed: int, *, ambiguous: int = 0) -> Compared:
    """One person's pairs share a birth date; two people's do not, and the rules' score is the same
    for both (it alone would not separate them). `ambiguous` pairs of two people read exactly as one
    person's: nothing compared tells them apart."""
    pairs = [_pair("exact", "exact", true=True) for _ in range(60)]
    pairs += [_pair("exact", "different", true=False) for _ in range(300)]
    pairs += [_pair("different", "exact", true=False, score=0.1) for _ in range(100)]
    pairs += [_pair("exact", "exact", true=False) for _ in range(ambiguous)]
    random.Random(seed).shuffle(pairs)
    return Compared(pairs, true_count=70)  # 10 true pairs share no key


def test_it_lists_what_the_comparisons_tell_apart_and_misses_what_shares_no_key() -> None:
    found = supervised([_store(1), _store(2), _store(3)], _store(4), min_precision=0.999)

    for quality in (found.at_own_threshold, found.best):
        assert quality.correct_pairs == 60
        assert quality.found_pairs == 60
        assert quality.true_pairs == 70  # those sharing no key are missed: recall 60 / 70


def test_pairs_read_as_one_persons_keep_it_from_the_precision_asked() -> None:
    # A fifth of the pairs that read as one person's are two people's: at P >= 0.999 nothing is listed.
    train = [_store(seed, ambiguous=15) for seed in (1, 2, 3)]

    found = supervised(train, _store(4, ambiguous=15), min_precision=0.999)

    assert found.at_own_threshold.found_pairs == 0
    assert found.best.found_pairs == 0


def test_no_cut_at_the_precision_asked_lists_nothing_even_pairs_scored_one() -> None:
    import numpy as np

    # A probability rounds to 1.0 for pairs a learner is sure of: two people among them, no cut is precise.
    scores = np.array([1.0, 1.0, 0.5])
    answers = np.array([True, False, True])

    cut = _threshold(scores, answers, min_precision=0.999)

    assert not (scores >= cut).any()
