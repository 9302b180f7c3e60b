"""Fellegi-Sunter weights learned from a store's own candidate pairs by expectation-maximisation
(as `recordlinkage`'s ECM and Splink estimate them), instead of bits set by hand for one population.

A pair is described by its comparison vector: one agreement level per field, the levels the rules
scorer (`scoring.score_pair`) already names in its reasons (a missing value: no level, no evidence).
The model holds, per field and level, m (how often two records of one person compare so) and u (how
often two different people among the candidates do), and the share of candidate pairs that are
matches; a pair's score is the posterior probability of a match.

What the rules scorer guards against with fixed penalties is given to the model as evidence it
weighs: a given name that disagrees is compared together with what else the two share (a home or a
landline, the birth date), so that siblings and twins (another given name, everything else shared)
get their own levels, whose m and u the data decide.

EM starts from the rules scorer's probabilities and is held near them by a prior (maximum a
posteriori EM): the rules scorer's reading of the same pairs (each pair a match with the probability
the rules give it) sets, per field, Dirichlet pseudo-counts worth `PRIOR_PAIRS` pairs for m and as
many for u. Plain EM maximises the likelihood of a two-class mixture, and on a store whose candidate
pairs are mostly households (the pairs sharing an email or a phone were merged on the spot), the
likeliest split is households against strangers: the "match" class took in every pair sharing a
surname and a home, a different given name became evidence of nothing, and 118 of 434 pairs listed
on our population were wrong. Held by the prior, a level's m can leave the rules' value only as far
as the matches the data find for it outweigh those pseudo-pairs: on the same store 9 wrong pairs of
320 (6 of them two profiles holding one person's records each, which every field agrees on), while
on FEBRL a given name or birth date replaced in a duplicate is still learned as the mild evidence it
is there (on the profiles `bench/identity_api.py` loads: FEBRL2 F1 0.885 -> 0.991, and FEBRL1
0.905 -> 0.983 were it estimated on its 840 pairs, fewer than `match_model.MIN_PAIRS`). Stronger
priors keep more of the rules' mistakes (150 pairs: FEBRL1 F1 0.958; 1,000: 0.920) without
making our population safer (20 to 1,000 pairs: 8 to 10 wrong pairs). Capping the look-alike levels
at what the rules allow them was tried too: it changed nothing on our population and cost FEBRL2
F1 0.991 -> 0.957, since there a replaced given name with everything else shared is a duplicate.

Every count is also smoothed (`SMOOTHING`) so a level seen once does not decide alone; EM stops when
no pair's posterior moves by more than `TOLERANCE`. Pure Python: a store's candidate pairs collapse
to a few hundred distinct vectors.
"""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from app.domain.matching.fields import MatchFields
from app.domain.matching.scoring import (
    CLOSE,
    DISAGREEING_NAMES,
    ONE_MAILBOX,
    MatchReason,
    MatchScore,
    score_pair,
)

# A comparison vector: (field, level) for every field both records hold, in field order.
Vector = tuple[tuple[str, str], ...]

TOLERANCE = 1e-6
MAX_ITERATIONS = 500
SMOOTHING = 0.5  # pseudo-count added to every level's expected count, for matches and non-matches
# The weight of the rules scorer's reading of the pairs, in pairs, per field, for m and for u (the
# prior of MAP-EM, see above): 20 to 100 give the same figures on our population and FEBRL.
PRIOR_PAIRS = 50.0
MIN_MATCH_SHARE = 1e-4  # fewer matches than this among the candidate pairs: nothing to learn from
MAX_BITS = 20.0  # no single level says more than a million to one either way
# The household evidence a disagreeing given name is read together with.
_HOME = frozenset({"sameAddress", "sameBuildingOtherUnit", "sameStreet"})


def comparison(reasons: Iterable[MatchReason]) -> Vector:
    """The comparison vector of a pair, from the reasons `score_pair` gave for it."""
    levels: dict[str, str] = {}
    line2: float | None = None
    for reason in reasons:
        if reason.field in ("firstName", "lastName", "birthDate", "email", "phone", "address"):
            levels[reason.field] = reason.method
        elif reason.field == "address.line2":
            line2 = reason.similarity
    if line2 is not None:
        levels["address.line2"] = "same" if line2 >= CLOSE else "different"
    given, born = levels.get("firstName"), levels.get("birthDate")
    other_given = given in DISAGREEING_NAMES
    if other_given or born == "different":
        # What the two share is read together with the contradiction: siblings and twins share a home,
        # a landline, a birth date; a parent and child of one name a home. Those agreeing levels leave
        # the vector and become one joint level whose m and u the data decide.
        shared = []
        for name, agrees in (
            ("home", levels.get("address") in _HOME),
            ("line2", levels.get("address.line2") == "same"),
            ("phone", levels.get("phone") in ("exact", "lastDigits")),
            ("mailbox", levels.get("email") in ONE_MAILBOX),
            ("birthDate", other_given and born in ("exact", "dayMonthSwap", "damerauLevenshtein")),
        ):
            if agrees:
                shared.append(name)
                levels.pop({"home": "address", "line2": "address.line2", "mailbox": "email"}.get(name, name))
        contradiction = ("otherGivenName" if given == "different" else "givenNameEnding") if other_given else ""
        if born == "different":
            contradiction = f"{contradiction}+otherBirthDate" if contradiction else "otherBirthDate"
        levels["contradicted"] = "+".join([contradiction, *shared])
    return tuple(sorted(levels.items()))


@dataclass(frozen=True, slots=True)
class MatchModel:
    version: int
    estimated_at: datetime
    pairs_used: int
    match_share: float  # the share of candidate pairs that are matches (the prior)
    m: dict[str, dict[str, float]]
    u: dict[str, dict[str, float]]
    iterations: int
    name: str = field(init=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "name", f"fellegiSunter:v{self.version}")

    def bits(self, field_name: str, level: str) -> float:
        """log2(m/u) of a level; 0 for a level the model never saw (no evidence either way)."""
        m, u = self.m.get(field_name, {}).get(level), self.u.get(field_name, {}).get(level)
        if m is None or u is None:
            return 0.0
        return max(-MAX_BITS, min(MAX_BITS, math.log2(m / u)))

    def probability(self, vector: Vector) -> float:
        prior = math.log2(self.match_share / (1 - self.match_share))
        total = prior + sum(self.bits(f, level) for f, level in vector)
        total = max(-60.0, min(60.0, total))
        return 1.0 / (1.0 + math.pow(2.0, -total))

    def score(self, a: MatchFields, b: MatchFields) -> MatchScore:
        """The pair's posterior under this model; the reasons are the rules scorer's comparisons."""
        compared = score_pair(a, b)
        return MatchScore(self.probability(comparison(compared.reasons)), compared.reasons, self.name)

    def separates(self) -> bool:
        """Whether the estimate reads as matches against non-matches: agreeing names and birth dates
        count for a match, a different given name against. EM on too few or too alike pairs can
        settle on another split (households against strangers); such a model is not used."""
        seen = all(level in self.m.get(f, {}) for f in ("firstName", "birthDate") for level in ("exact", "different"))
        return (
            seen
            and MIN_MATCH_SHARE < self.match_share < 0.9
            and self.bits("firstName", "exact") > 0 > self.bits("firstName", "different")
            and self.bits("birthDate", "exact") > 0 > self.bits("birthDate", "different")
        )

    def to_document(self) -> dict[str, Any]:
        return {
            "version": self.version,
            "estimatedAt": self.estimated_at.isoformat(),
            "pairsUsed": self.pairs_used,
            "matchShare": self.match_share,
            "m": self.m,
            "u": self.u,
            "iterations": self.iterations,
        }

    @classmethod
    def from_document(cls, document: Mapping[str, Any]) -> MatchModel:
        return cls(
            version=int(document["version"]),
            estimated_at=datetime.fromisoformat(document["estimatedAt"]),
            pairs_used=int(document["pairsUsed"]),
            match_share=float(document["matchShare"]),
            m={f: dict(levels) for f, levels in document["m"].items()},
            u={f: dict(levels) for f, levels in document["u"].items()},
            iterations=int(document["iterations"]),
        )


def estimate(vectors: Mapping[Vector, tuple[int, float]], *, version: int, at: datetime) -> MatchModel:
    """MAP-EM over distinct comparison vectors, each with its count and the rules scorer's probability
    (the starting point, and the prior). Deterministic: the same vectors give the same model."""
    patterns = sorted(vectors.items())
    counts = [count for _, (count, _) in patterns]
    posterior = [start for _, (_, start) in patterns]
    total = sum(counts)
    levels: dict[str, set[str]] = {}
    for vector, _ in patterns:
        for f, level in vector:
            levels.setdefault(f, set()).add(level)
    _, rules_m, rules_u = _expected(patterns, counts, posterior, levels)
    prior_m, prior_u = _prior(rules_m, levels), _prior(rules_u, levels)
    share = 0.5
    m: dict[str, dict[str, float]] = {}
    u: dict[str, dict[str, float]] = {}
    iterations = 0
    for iterations in range(1, MAX_ITERATIONS + 1):  # noqa: B007 (the count is kept)
        expected_matches, matched, unmatched = _expected(patterns, counts, posterior, levels)
        share = min(max(expected_matches / total, 1e-6), 1 - 1e-6)
        m, u = _normalised(matched, prior_m, levels), _normalised(unmatched, prior_u, levels)
        updated = [_posterior(vector, share, m, u) for vector, _ in patterns]
        moved = max((abs(x - y) for x, y in zip(updated, posterior, strict=True)), default=0.0)
        posterior = updated
        if moved < TOLERANCE:
            break
    return MatchModel(version=version, estimated_at=at, pairs_used=total, match_share=share, m=m, u=u,
                      iterations=iterations)  # fmt: skip


Counts = dict[str, dict[str, float]]


def _expected(
    patterns: list[tuple[Vector, tuple[int, float]]],
    counts: list[int],
    posterior: list[float],
    levels: dict[str, set[str]],
) -> tuple[float, Counts, Counts]:
    """The E-step's expected counts: matches, and per field and level among matches and non-matches."""
    matched: Counts = {f: defaultdict(float) for f in levels}
    unmatched: Counts = {f: defaultdict(float) for f in levels}
    expected_matches = 0.0
    for (vector, _), count, p in zip(patterns, counts, posterior, strict=True):
        expected_matches += count * p
        for f, level in vector:
            matched[f][level] += count * p
            unmatched[f][level] += count * (1 - p)
    return expected_matches, matched, unmatched


def _prior(found: Counts, levels: dict[str, set[str]]) -> Counts:
    """Pseudo-counts worth `PRIOR_PAIRS` pairs per field, spread over its levels as `found` (the
    rules scorer's expected counts) spreads them."""
    prior: Counts = {}
    for f, names in levels.items():
        total = sum(found[f].get(level, 0.0) for level in names)
        prior[f] = {level: PRIOR_PAIRS * found[f].get(level, 0.0) / total if total else 0.0 for level in names}
    return prior


def _normalised(found: Counts, prior: Counts, levels: dict[str, set[str]]) -> Counts:
    result: Counts = {}
    for f, names in levels.items():
        pseudo = {level: prior[f][level] + SMOOTHING for level in names}
        total = sum(found[f].values()) + sum(pseudo.values())
        result[f] = {level: (found[f].get(level, 0.0) + pseudo[level]) / total for level in sorted(names)}
    return result


def _posterior(vector: Vector, share: float, m: dict[str, dict[str, float]], u: dict[str, dict[str, float]]) -> float:
    weights = [math.log2(m[f][level] / u[f][level]) for f, level in vector]
    total = math.log2(share / (1 - share)) + sum(weights)
    total = max(-60.0, min(60.0, total))
    return 1.0 / (1.0 + math.pow(2.0, -total))
