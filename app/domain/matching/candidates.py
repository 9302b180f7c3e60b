"""Merge candidates for one profile: score each look-alike found through the blocking keys and keep
those at or above a threshold, best first."""

from __future__ import annotations

from collections.abc import Callable, Collection, Iterable
from dataclasses import dataclass
from datetime import date
from typing import Protocol

from app.domain.matching.fields import MatchFields
from app.domain.matching.learned import MatchModel
from app.domain.matching.scoring import (
    RULES,
    MatchReason,
    MatchScore,
    birth_dates_cap_below,
    score_pair,
    score_pair_reaching,
)

# Scores a pair: the rules scorer `score_pair`, or a learned model (`learned.MatchModel`).
PairScorer = Callable[[MatchFields, MatchFields], MatchScore]

# Calibrated by `python -m bench identity --seed 1` and reported on seed 2: the highest threshold whose
# F1 is within 0.001 of the best F1 among thresholds keeping precision above 0.995 (a wrong merge
# costs more than a missed one: lower thresholds add few true pairs for several wrong ones).
DEFAULT_MIN_SCORE = 0.5


@dataclass(frozen=True, slots=True)
class Candidate:
    a: str  # the profile candidates were asked for
    b: str
    score: float
    reasons: list[MatchReason]
    via: str | None = None  # a linked pair: the profile both resemble (see `links`)
    scorer: str = RULES  # which scorer answered: "rules" or a learned model's name and version


def candidates_for(
    target: MatchFields,
    target_id: str,
    others: Iterable[tuple[str, MatchFields]],
    min_score: float,
    score: PairScorer = score_pair,
    unique_names: Collection[str] = (),
) -> list[Candidate]:
    """The others scoring at least `min_score` against the target, best first; `unique_names`: the
    one whose names only it and the target hold, if any (`blocking.names_key`). The others are the
    look-alikes a lookup kept (`may_reach`): a learned model's bound was asked then, and costs a
    comparison of the names as much as the score does, so it scores them in full here."""
    found: list[Candidate] = []
    seen = {target_id}
    for other_id, other in others:
        if other_id in seen:  # the target itself, or a profile fetched under two keys
            continue
        seen.add(other_id)
        if isinstance(score, MatchModel):
            scored: MatchScore | None = score(target, other)
        else:
            scored = score_reaching(score, target, other, min_score, unique_names=other_id in unique_names)
        if scored is not None and scored.score >= min_score:
            found.append(Candidate(target_id, other_id, scored.score, scored.reasons, scorer=scored.scorer))
    return best_first(found)


def score_reaching(
    score: PairScorer, a: MatchFields, b: MatchFields, min_score: float, *, unique_names: bool = False
) -> MatchScore | None:
    """`score(a, b)`, or None for a pair that cannot reach `min_score`: the rules scorer tells most of
    those from their names and birth dates alone (`score_pair_reaching`), a learned model some, by its
    own bound (`learned.MatchModel.ceiling`, given the contact fields both hold). `unique_names`: no
    other profile holds the two's names key, which the rules scorer counts
    (`scoring.UNIQUE_NAMES_BITS`); a learned model weighs how common each name is by its own
    frequencies instead."""
    if is_rules_scorer(score):
        return score_pair_reaching(a, b, min_score, unique_names=unique_names)
    if isinstance(score, MatchModel):
        return score.score_reaching(a, b, min_score)
    return score(a, b)


def is_rules_scorer(score: PairScorer) -> bool:
    """Whether `score` is the rules scorer: it alone counts names no other profile holds (a learned
    model weighs how common each name is by its own frequencies)."""
    return score is score_pair


class Named(Protocol):
    """A profile's names, birth date and the contact fields it holds, each read when asked for
    (`index.MatchView`)."""

    @property
    def birth_date(self) -> date | None: ...

    @property
    def names(self) -> MatchFields: ...  # `fields.names_and_birth_date`

    @property
    def contacts(self) -> frozenset[str]: ...  # `fields.contacts_held`


def may_reach(score: PairScorer, a: Named, b: Named, min_score: float) -> bool:
    """Whether a pair could reach `min_score`, judged on the two's names and birth dates alone: False
    exactly where the rules scorer caps the pair below it whatever else the two hold
    (`score_pair_reaching` gives None), the birth dates looked at first; for a learned model, where
    its own bound does, given which contact fields both hold (`learned.MatchModel.ceiling`)."""
    if isinstance(score, MatchModel):
        return score.ceiling(a.names, b.names, a.contacts & b.contacts) >= min_score
    if not is_rules_scorer(score):
        return True
    if birth_dates_cap_below(a.birth_date, b.birth_date, min_score):
        return False
    return score_pair_reaching(a.names, b.names, min_score) is not None


def best_first(candidates: Iterable[Candidate]) -> list[Candidate]:
    return sorted(candidates, key=lambda c: (-c.score, c.b))
