"""GraphQL types of fuzzy merge candidates: two profiles that probably are one person, and why; and
the whole store's review list as a connection."""

from __future__ import annotations

import json
import math
from datetime import datetime

import strawberry

from app.domain import matching
from app.services.review_list import LIST_SECONDS, ListPosition, Position, ReviewPage
from graphql_schema.context import Info
from graphql_schema.pagination import Connection, connection, counted, decode_cursor, encode_cursor, foreign_cursor
from graphql_schema.types.profile import Profile

PAIR_CURSOR = "mergeCandidatePair"


@strawberry.type(description="One field comparison behind a candidate's score.")
class MatchReason:
    field: str = strawberry.field(description="firstName, lastName, birthDate, email, phone, address…")
    method: str = strawberry.field(description="How it was compared: exact, jaroWinkler, metaphone, swappedDayMonth…")
    similarity: float = strawberry.field(description="0 (nothing alike) to 1 (identical).")

    @classmethod
    def from_domain(cls, reason: matching.MatchReason) -> MatchReason:
        return cls(field=reason.field, method=reason.method, similarity=round(reason.similarity, 4))


@strawberry.type(description="Two live profiles that probably belong to one person; merge them with mergeProfiles.")
class MergeCandidate:
    a_id: strawberry.ID
    b_id: strawberry.ID
    score: float = strawberry.field(description="Probability-like score in [0, 1]; pairs are listed best first.")
    reasons: list[MatchReason]
    scorer: str = strawberry.field(
        description='Which scorer answered: "rules" (the hand-set weights), or the learned Fellegi-Sunter model '
        'and its version ("fellegiSunter:v3") once the store has one that separates matches.'
    )
    via_id: strawberry.ID | None = None

    @strawberry.field(description="The profile candidates were asked for (or the first of the pair).")
    async def a(self, info: Info) -> Profile | None:
        return await _profile(info, self.a_id)

    @strawberry.field
    async def b(self, info: Info) -> Profile | None:
        return await _profile(info, self.b_id)

    @strawberry.field(
        description="Set when the score is a link's: the product of how much each of the two resembles this "
        "third profile, listed because it is higher than what the two score compared with each other (their "
        "own comparison is still in `reasons`, beside `profile linkedThrough` with the product). Whether the "
        "two share a blocking key does not matter. Null when the score is the two's own comparison."
    )
    async def via(self, info: Info) -> Profile | None:
        return await _profile(info, self.via_id) if self.via_id else None

    @classmethod
    def from_domain(cls, candidate: matching.Candidate) -> MergeCandidate:
        return cls(
            a_id=strawberry.ID(candidate.a),
            b_id=strawberry.ID(candidate.b),
            score=candidate.score,  # as compared and ordered (matching.scoring.shown)
            reasons=[MatchReason.from_domain(r) for r in candidate.reasons],
            scorer=candidate.scorer,
            via_id=strawberry.ID(candidate.via) if candidate.via else None,
        )


async def _profile(info: Info, profile_id: str) -> Profile | None:
    found = await info.context.loaders(info).profile.load(profile_id)
    return Profile.from_domain(found) if found else None


@strawberry.type(
    description="A page of the whole store's merge candidate pairs, best first (score, then aId, then bId)."
)
class MergeCandidateConnection(Connection[MergeCandidate]):
    computed_at: datetime = strawberry.field(
        description="When the list was scored: the pages after the first read the same list while this server "
        f"keeps it ({LIST_SECONDS / 60:.0f} minutes), so the profiles may have changed since; a first page "
        "scores the store again."
    )


def merge_candidate_connection(page: ReviewPage) -> MergeCandidateConnection:
    found = connection(
        page.candidates,
        has_next=page.has_next,
        has_previous=page.has_previous,
        cursor=lambda c: pair_cursor(page.list_id, page.min_score, c),
        node=MergeCandidate.from_domain,
        count=counted(page.total),  # the pairs of the list in the score range asked
    )
    return MergeCandidateConnection(
        page_info=found.page_info, counter=found.counter, page_nodes=found.page_nodes, computed_at=page.computed_at
    )


def pair_cursor(list_id: str, min_score: float, candidate: matching.Candidate) -> str:
    return encode_cursor(PAIR_CURSOR, json.dumps([list_id, min_score, candidate.score, candidate.a, candidate.b]))


def pair_position(cursor: str, field: str = "after") -> ListPosition:
    """The list and the position a cursor of `mergeCandidatePairs` names; any other string is refused."""
    try:
        found = json.loads(decode_cursor(PAIR_CURSOR, cursor, field=field))
    except ValueError:
        found = None
    match found:
        case [str() as list_id, float() | int() as min_score, float() | int() as score, str() as a, str() as b] if (
            math.isfinite(min_score) and math.isfinite(score)
        ):
            return ListPosition(list_id, float(min_score), Position(float(score), a, b))
    raise foreign_cursor(field)
