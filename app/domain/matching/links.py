"""Links through a third profile. Being one person is transitive: when A resembles B and B resembles
C, A and C are one person whenever both resemblances are right, so the chance is at least the
product of the two scores. This finds the records that share nothing but a name with each other
(one written in a shop with a phone, one online with an email) once a third record holds both the
phone and the email: the pairs no field comparison can tell from namesakes.

A link is not proposed when A and C contradict each other outright (another given name and another
birth date, say: a direct score below `MIN_DIRECT_SCORE`): then one of the two resemblances is wrong.
Links go one profile deep: a person's records are few, and each hop multiplies the doubt.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence

from app.domain.matching.candidates import Candidate, best_first
from app.domain.matching.fields import MatchFields
from app.domain.matching.scoring import MatchReason, MatchScore, score_pair

MIN_DIRECT_SCORE = 1e-4
# The link's own reason: `similarity` is the product of the two scores it goes through.
LINK_FIELD, LINK_METHOD = "profile", "linkedThrough"


def with_links(
    target_id: str,
    neighbours: Mapping[str, Sequence[Candidate]],
    fields: Mapping[str, MatchFields],
    min_score: float,
) -> list[Candidate]:
    """The target's candidates (`neighbours[target_id]`, each at or above `min_score`) with the
    profiles linked to it through one of them (from `neighbours[<that one>]`), best first. A linked
    profile scores the better of its direct score and the best product through one candidate, and
    names that candidate in `via`. `fields` holds the match fields of every profile named."""
    best = {c.b: c for c in neighbours.get(target_id, ())}
    direct: dict[str, MatchScore] = {}
    for first in neighbours.get(target_id, ()):
        for second in neighbours.get(first.b, ()):
            other = second.b
            score = first.score * second.score
            if other == target_id or score < min_score or (other in best and best[other].score >= score):
                continue
            if other not in direct:
                direct[other] = score_pair(fields[target_id], fields[other])
            if direct[other].score < MIN_DIRECT_SCORE:
                continue
            reasons = [*direct[other].reasons, MatchReason(LINK_FIELD, LINK_METHOD, score)]
            best[other] = Candidate(target_id, other, score, reasons, via=first.b)
    return best_first(best.values())


def linked_pairs(direct: Iterable[Candidate], fields: Mapping[str, MatchFields], min_score: float) -> list[Candidate]:
    """The pairs of a whole store: `direct` (every pair scored at or above `min_score`, each once, `a`
    before `b`) with the pairs linked through one profile added, each once with `a` before `b`."""
    pairs: dict[tuple[str, str], Candidate] = {}
    neighbours: dict[str, list[Candidate]] = defaultdict(list)
    for c in direct:
        pairs[c.a, c.b] = c
        neighbours[c.a].append(c)
        neighbours[c.b].append(Candidate(c.b, c.a, c.score, c.reasons))
    for profile_id in list(neighbours):
        for link in with_links(profile_id, neighbours, fields, min_score):
            if link.via is not None and profile_id < link.b:
                pairs[profile_id, link.b] = link
    return list(pairs.values())
