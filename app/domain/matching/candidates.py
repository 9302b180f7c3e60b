"""Merge candidates for one profile: score each look-alike found through the blocking keys and keep
those at or above a threshold, best first."""

from __future__ import annotations

from collections.abc import Callable, Collection, Iterable
from dataclasses import dataclass
from datetime import date
from typing import Protocol, TypeVar

from app.domain.matching.fields import MatchFields
from app.domain.matching.scoring import (
    RULES,
    MatchReason,
    MatchScore,
    birth_dates_cap_below,
    score_pair_reaching,
)

K = TypeVar("K")  # how a pair names its two profiles: their ids, or their numbers in a list

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
    score: PairScorer,
    unique_names: Collection[str] = (),
) -> list[Candidate]:
    """The others scoring at least `min_score` against the target, best first; `unique_names`: the
    one whose names only it and the target hold, if any (`blocking.names_key`). The others are the
    look-alikes a lookup kept (`PairScorer.may_reach`), each scored by `PairScorer.score_lookalike`."""
    found: list[Candidate] = []
    seen = {target_id}
    for other_id, other in others:
        if other_id in seen:  # the target itself, or a profile fetched under two keys
            continue
        seen.add(other_id)
        scored = score.score_lookalike(target, other, min_score, unique_names=other_id in unique_names)
        if scored is not None and scored.score >= min_score:
            found.append(Candidate(target_id, other_id, scored.score, scored.reasons, scorer=scored.scorer))
    return best_first(found)


class Named(Protocol):
    """A profile's names, birth date and the contact fields it holds, each read when asked for
    (`index.MatchView`)."""

    @property
    def birth_date(self) -> date | None: ...

    @property
    def names(self) -> MatchFields: ...  # `fields.names_and_birth_date`

    @property
    def contacts(self) -> frozenset[str]: ...  # `fields.contacts_held`


class PairScorer(Protocol):
    """Scores pairs of profiles: the rules (`RULES_SCORER`) or a learned model (`learned.MatchModel`).
    Besides the score, each says which pairs it can pass over unscored, by its own bound: most pairs
    a lookup or the review list meets score far below any threshold."""

    # Whether the scorer counts names no other profile of the store holds (`scoring.UNIQUE_NAMES_BITS`):
    # the rules do; a learned model weighs how common each name is by its own frequencies instead.
    @property
    def counts_unique_names(self) -> bool: ...

    def __call__(self, a: MatchFields, b: MatchFields) -> MatchScore: ...

    def may_reach(self, a: Named, b: Named, min_score: float) -> bool:
        """Whether a pair could reach `min_score`, judged on its names and birth dates and on which
        contact fields both hold (before the profiles' other fields are read)."""
        ...

    def score_reaching(
        self, a: MatchFields, b: MatchFields, min_score: float, *, unique_names: bool = False
    ) -> MatchScore | None:
        """The pair's score, or None when its bound keeps it below `min_score`. `unique_names`: no
        other profile holds the two's names key (counted when `counts_unique_names`)."""
        ...

    def score_lookalike(
        self, a: MatchFields, b: MatchFields, min_score: float, *, unique_names: bool = False
    ) -> MatchScore | None:
        """`score_reaching` of a pair `may_reach` kept: a bound asked there is not asked again."""
        ...


@dataclass(frozen=True, slots=True)
class RulesScorer:
    """The rules scorer (`scoring.score_pair`): what answers until a learned model separates.
    `common_given_names`: the given names COMMON_GIVEN_NAME profiles of the store or more hold, names
    people are given (`scoring.read_apart`); none known, two one letter apart read as a typo."""

    common_given_names: frozenset[str] = frozenset()

    @property
    def counts_unique_names(self) -> bool:
        return True

    def __call__(self, a: MatchFields, b: MatchFields) -> MatchScore:
        found = score_pair_reaching(a, b, 0.0, common_given_names=self.common_given_names)
        assert found is not None  # every pair reaches 0
        return found

    def may_reach(self, a: Named, b: Named, min_score: float) -> bool:
        """False exactly where the rules cap the pair below `min_score` whatever else the two hold
        (`score_pair_reaching` gives None), the birth dates looked at first."""
        if birth_dates_cap_below(a.birth_date, b.birth_date, min_score):
            return False
        return score_pair_reaching(a.names, b.names, min_score, common_given_names=self.common_given_names) is not None

    def score_reaching(
        self, a: MatchFields, b: MatchFields, min_score: float, *, unique_names: bool = False
    ) -> MatchScore | None:
        return score_pair_reaching(
            a, b, min_score, unique_names=unique_names, common_given_names=self.common_given_names
        )

    # `may_reach` compared the names alone: they are compared again, with what else the two hold.
    score_lookalike = score_reaching


RULES_SCORER = RulesScorer()


def pairs_reaching(
    score: PairScorer,
    field_of: Callable[[K], MatchFields],
    pairs: Iterable[tuple[K, K]],
    min_score: float,
    *,
    unique_names: bool = False,
) -> list[tuple[float, K, K]]:
    """The pairs (as `field_of` reads each of the two) scoring at least `min_score`, each with its
    score; those its bound keeps below are not scored in full (`PairScorer.score_reaching`)."""
    found: list[tuple[float, K, K]] = []
    for a, b in pairs:
        compared = score.score_reaching(field_of(a), field_of(b), min_score, unique_names=unique_names)
        if compared is not None and compared.score >= min_score:
            found.append((compared.score, a, b))
    return found


def best_first(candidates: Iterable[Candidate]) -> list[Candidate]:
    return sorted(candidates, key=lambda c: (-c.score, c.b))
