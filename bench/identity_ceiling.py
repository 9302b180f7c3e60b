"""The most any scorer reading our comparisons could find in a store, knowing the answers: what a
quality target asks of the matcher beside what the data allow.

The profile pairs the review list compares (those sharing a blocking key, `blocking.block_pairs`) are
grouped by what a scorer reads of them: the levels of their comparison (`learned.comparison` of the
rules' reasons) and how many profiles hold their names' key (two, three, more, or none shared). An
oracle then takes whole groups, purest first, knowing which pairs are true, and keeps the best recall
whose precision stays at or above the target (purest first is the order that gains the most recall
for each wrong pair taken: no choice of groups does better but by one group at the margin). No
scorer reading only those can do better on this store, and one fit to other data does worse: a
group holding one true pair and no wrong one here is taken whole, which a scorer could only guess.
True pairs it does not compare (sharing no key) count as found (a link may find them), so the bound
is generous. A scorer reading more (the similarities, the values themselves) is not bounded by it.

    compared = compared_pairs(profiles, person)   # person: profile id -> the person it stands for
    best = ceiling(compared, min_precision)

`compared_pairs` is also what `identity_supervised` learns from: the pairs with what a scorer reads.
"""

from __future__ import annotations

import itertools
from collections import Counter, defaultdict
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from app.domain.matching import MatchReason, blocking_keys, match_fields, score_pair
from app.domain.matching.blocking import NAMES_KEY, block_pairs
from app.domain.matching.learned import comparison
from app.domain.profile import Profile
from bench.identity_store import Quality, key_blocks, true_pairs


@dataclass(frozen=True, slots=True)
class ComparedPair:
    """A key-sharing pair as a scorer reads it: the rules' reasons and score, and how many profiles
    hold the names key the two share (`_names_holders`), with whether it is one person's."""

    reasons: tuple[MatchReason, ...]
    score: float
    holders: str
    true: bool


@dataclass(frozen=True, slots=True)
class Compared:
    pairs: list[ComparedPair]
    true_count: int  # the store's true pairs, compared or not (sharing no key)


def compared_pairs(profiles: Mapping[str, Profile], person: Mapping[str, str]) -> Compared:
    """Every pair of `profiles` sharing a blocking key (`blocking.block_pairs`), as a scorer reads it."""
    fields = {profile_id: match_fields(profile) for profile_id, profile in profiles.items()}
    keys = {profile_id: set(blocking_keys(found)) for profile_id, found in fields.items()}
    blocks = key_blocks(keys.items())
    pairs = set(itertools.chain.from_iterable(block_pairs(ids, fields) for ids in blocks.values()))
    expected = true_pairs(dict(person))
    found = []
    for a, b in sorted(pairs):
        scored = score_pair(fields[a], fields[b])
        holders = _names_holders(a, b, keys, blocks)
        found.append(ComparedPair(tuple(scored.reasons), scored.score, holders, frozenset((a, b)) in expected))
    return Compared(found, len(expected))


def ceiling(compared: Compared, min_precision: float) -> Quality:
    """The oracle's best recall at `min_precision` on the compared pairs (see the module)."""
    groups: dict[tuple[object, ...], Counter[bool]] = defaultdict(Counter)
    for pair in compared.pairs:
        groups[(*comparison(pair.reasons), pair.holders)][pair.true] += 1
    unkeyed = compared.true_count - sum(found[True] for found in groups.values())
    return _best(groups.values(), compared.true_count, unkeyed, min_precision)


def _names_holders(a: str, b: str, keys: Mapping[str, set[str]], blocks: Mapping[str, list[str]]) -> str:
    """How many profiles hold the names key the two share: what the rules read as unique names."""
    shared = [key for key in keys[a] & keys[b] if key.startswith(NAMES_KEY)]
    if not shared:
        return "none"
    holders = len(blocks[shared[0]])
    return str(holders) if holders <= 3 else "more"


def _best(groups: Iterable[Counter[bool]], true_count: int, unkeyed: int, min_precision: float) -> Quality:
    purest = sorted(groups, key=lambda found: (-found[True] / found.total(), -found[True]))
    best = Quality(true_count, unkeyed, unkeyed)
    right, listed = unkeyed, unkeyed
    for found in purest:
        right, listed = right + found[True], listed + found.total()
        taken = Quality(true_count, listed, right)
        if taken.precision >= min_precision and taken.recall > best.recall:
            best = taken
    return best
