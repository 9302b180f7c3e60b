"""GraphQL types of fuzzy merge candidates: two profiles that probably are one person, and why."""

from __future__ import annotations

import strawberry

from app.domain import matching
from graphql_schema.context import Info
from graphql_schema.types.profile import Profile


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
    via_id: strawberry.ID | None = None

    @strawberry.field(description="The profile candidates were asked for (or the first of the pair).")
    async def a(self, info: Info) -> Profile | None:
        return await _profile(info, self.a_id)

    @strawberry.field
    async def b(self, info: Info) -> Profile | None:
        return await _profile(info, self.b_id)

    @strawberry.field(
        description="For a pair linked through a third profile that each of the two resembles: that "
        "profile (the score is then the product of both resemblances; reason `profile linkedThrough`). "
        "Null when the two were compared directly."
    )
    async def via(self, info: Info) -> Profile | None:
        return await _profile(info, self.via_id) if self.via_id else None

    @classmethod
    def from_domain(cls, candidate: matching.Candidate) -> MergeCandidate:
        return cls(
            a_id=strawberry.ID(candidate.a),
            b_id=strawberry.ID(candidate.b),
            score=round(candidate.score, 4),
            reasons=[MatchReason.from_domain(r) for r in candidate.reasons],
            via_id=strawberry.ID(candidate.via) if candidate.via else None,
        )


async def _profile(info: Info, profile_id: str) -> Profile | None:
    found = await info.context.loaders(info).profile.load(profile_id)
    return Profile.from_domain(found) if found else None
