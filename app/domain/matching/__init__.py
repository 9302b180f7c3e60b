"""Fuzzy identity matching: which profiles probably belong to one person although they share no
identifier. Pure Python over jellyfish; the services feed it profiles fetched by blocking key.

- `fields`: `MatchFields`, the normalised view of a profile (`match_fields`);
- `blocking`: `blocking_keys`, the short index keys that find look-alikes without comparing all pairs;
- `scoring`: `score_pair`, per-field comparisons combined into one calibrated score with reasons;
- `candidates`: `candidates_for` and `DEFAULT_MIN_SCORE`, what `mergeCandidates` returns; `PairScorer`,
  what scores a pair (`RULES_SCORER` or a learned model);
- `links`: `with_links` and `linked_pairs`, profiles linked through a third one they both resemble;
- `learned`: `MatchModel`, Fellegi-Sunter m/u learned by EM from a store's candidate pairs;
- `nicknames`: given names that spelling similarity cannot relate (Bill/William, Paco/Francisco).
"""

from __future__ import annotations

from app.domain.matching.blocking import MAX_BLOCKING_KEYS, blocking_keys
from app.domain.matching.candidates import (
    DEFAULT_MIN_SCORE,
    RULES_SCORER,
    Candidate,
    PairScorer,
    RulesScorer,
    candidates_for,
)
from app.domain.matching.fields import MatchAddress, MatchFields, match_fields, normalised_fields
from app.domain.matching.learned import MatchModel
from app.domain.matching.links import linked_pairs, with_links
from app.domain.matching.scoring import RULES, MatchReason, MatchScore, score_pair

__all__ = [
    "DEFAULT_MIN_SCORE",
    "MAX_BLOCKING_KEYS",
    "RULES",
    "RULES_SCORER",
    "Candidate",
    "MatchAddress",
    "MatchFields",
    "MatchModel",
    "MatchReason",
    "MatchScore",
    "PairScorer",
    "RulesScorer",
    "blocking_keys",
    "candidates_for",
    "linked_pairs",
    "match_fields",
    "normalised_fields",
    "score_pair",
    "with_links",
]
