"""GraphQL types of the merge audit log: merges and refusals."""

from __future__ import annotations

from datetime import datetime
from enum import Enum

import strawberry

from app.domain import merge as domain
from graphql_schema.context import Info
from graphql_schema.types.free_form import visible


@strawberry.enum
class MergeStatus(Enum):
    MERGED = "MERGED"
    UNMERGED = "UNMERGED"


@strawberry.type(description="One merge, kept for audit and to undo it.")
class Merge:
    id: strawberry.ID
    survivor: strawberry.ID
    merged: list[strawberry.ID]
    at: datetime
    written_reason: strawberry.Private[str]
    actor: str
    automatic: bool
    status: MergeStatus
    unmerged_at: datetime | None
    unmerged_by: str | None

    @strawberry.field(description="Why, as written; personal data in it masked without read:pii.")
    def reason(self, info: Info) -> str:
        return visible(info, self.written_reason)  # a steward's free text

    @classmethod
    def from_domain(cls, record: domain.MergeRecord) -> Merge:
        return cls(
            id=strawberry.ID(record.id),
            survivor=strawberry.ID(record.survivor_id),
            merged=[strawberry.ID(i) for i in record.merged_ids],
            at=record.at,
            written_reason=record.reason,
            actor=record.actor,
            automatic=record.automatic,
            status=MergeStatus(record.status.value),
            unmerged_at=record.unmerged_at,
            unmerged_by=record.unmerged_by,
        )


@strawberry.type(description="An automatic merge that merge protection refused.")
class MergeRefusal:
    id: strawberry.ID
    at: datetime
    profiles: list[strawberry.ID]
    written_reason: strawberry.Private[str]
    sent_message_id: strawberry.Private[str | None]

    @strawberry.field(description="Why it was refused; personal data in it masked without read:pii.")
    def reason(self, info: Info) -> str:
        return visible(info, self.written_reason)  # a steward's free text

    @strawberry.field(
        description="The event's messageId; an email address or a phone number in it masked without read:pii."
    )
    def message_id(self, info: Info) -> str | None:
        return visible(info, self.sent_message_id)

    @classmethod
    def from_domain(cls, refusal: domain.MergeRefusal) -> MergeRefusal:
        return cls(
            id=strawberry.ID(refusal.id),
            at=refusal.at,
            profiles=[strawberry.ID(i) for i in refusal.profile_ids],
            written_reason=refusal.reason,
            sent_message_id=refusal.message_id,
        )
