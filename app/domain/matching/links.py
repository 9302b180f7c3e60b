"""Links through a third profile. Being one person is transitive: when A resembles B and B resembles
C, A and C are one person whenever both resemblances are right, so the chance is at least the
product of the two scores. This finds the records that share nothing but a name with each other
(one written in a shop with a phone, one online with an email) once a third record holds both the
phone and the email: the pairs no field comparison can tell from namesakes.

A link is not proposed when A and C contradict each other outright (another given name and another
birth date, say: a direct score below `MIN_DIRECT_SCORE`): then one of the two resemblances is wrong,
nor when A and C compared directly score at least the product: then the direct score is theirs, and
`via` stays unset. So `via` says exactly that the listed score is the product through that profile,
whether or not A and C share a blocking key. Links go one profile deep, through resemblances of at
least `MIN_LINK_STEP`: a person's records are few, and each hop multiplies the doubt.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence

from app.domain.matching.candidates import RULES_SCORER, Candidate, PairScorer, best_first
from app.domain.matching.fields import MatchFields
from app.domain.matching.scoring import MatchReason, MatchScore, shown

MIN_DIRECT_SCORE = 1e-4
# A resemblance weaker than this is never a step of a link: its products are noise, and at minScore 0
# following every compared pair would cost the square of each profile's blocks.
MIN_LINK_STEP = 0.01
# The link's own reason: `similarity` is the product of the two scores it goes through.
LINK_FIELD, LINK_METHOD = "profile", "linkedThrough"


def with_links(
    target_id: str,
    neighbours: Mapping[str, Sequence[Candidate]],
    fields: Mapping[str, MatchFields],
    min_score: float,
    score: PairScorer = RULES_SCORER,
) -> list[Candidate]:
    """The target's candidates (`neighbours[target_id]`, each at or above `min_score`) with the
    profiles linked to it through one of them (from `neighbours[<that one>]`), best first. A linked
    profile scores the better of its direct score and the best product through one candidate, and
    names that candidate in `via` only when the product is the higher. `fields` holds the match fields
    of every profile named."""
    best = {c.b: c for c in neighbours.get(target_id, ())}
    direct: dict[str, MatchScore] = {}
    for first in neighbours.get(target_id, ()):
        if first.score < MIN_LINK_STEP:
            continue
        for second in neighbours.get(first.b, ()):
            other = second.b
            product = shown(first.score * second.score)
            if second.score < MIN_LINK_STEP or other == target_id or product < min_score:
                continue
            if other in best and best[other].score >= product:
                continue
            if other not in direct:
                direct[other] = score(fields[target_id], fields[other])
            found = direct[other]
            if found.score < MIN_DIRECT_SCORE:
                continue
            if found.score >= product:  # found through the link, but the two alike on their own
                best[other] = Candidate(target_id, other, found.score, found.reasons, scorer=found.scorer)
                continue
            reasons = [*found.reasons, MatchReason(LINK_FIELD, LINK_METHOD, product)]
            best[other] = Candidate(target_id, other, product, reasons, via=first.b, scorer=found.scorer)
    return best_first(best.values())


def linked_pairs(
    direct: Iterable[Candidate],
    fields: Mapping[str, MatchFields],
    min_score: float,
    score: PairScorer = RULES_SCORER,
) -> list[Candidate]:
    """The pairs of a whole store: `direct` (pairs scored at or above `min_score`, each once, `a` before
    `b`; those below `MIN_LINK_STEP` may be left out, links never go through them) with the pairs found
    through a link added, each once with `a` before `b`: a link's product where it is the higher score,
    else the two's direct score."""
    pairs: dict[tuple[str, str], Candidate] = {}
    neighbours: dict[str, list[Candidate]] = defaultdict(list)
    for c in direct:
        pairs[c.a, c.b] = c
        neighbours[c.a].append(c)
        neighbours[c.b].append(Candidate(c.b, c.a, c.score, c.reasons, scorer=c.scorer))
    for profile_id in list(neighbours):
        for link in with_links(profile_id, neighbours, fields, min_score, score):
            if profile_id < link.b and (link.via is not None or (profile_id, link.b) not in pairs):
                pairs[profile_id, link.b] = link
    return list(pairs.values())
