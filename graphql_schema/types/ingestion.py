"""GraphQL types of ingestion results."""

from __future__ import annotations

from enum import Enum

import strawberry

from app.services.ingestion import EventOutcome


@strawberry.enum
class EventStatus(Enum):
    ACCEPTED = "ACCEPTED"
    DUPLICATE = "DUPLICATE"
    REJECTED = "REJECTED"


@strawberry.type
class EventResult:
    message_id: str
    status: EventStatus
    profile_id: strawberry.ID | None
    reason: str | None = strawberry.field(description="Why the event was rejected or skipped, naming the field.")
    field: str | None


@strawberry.type
class IngestResult:
    accepted: int
    duplicates: int
    rejected: int
    results: list[EventResult]

    @classmethod
    def from_outcomes(cls, outcomes: list[EventOutcome]) -> IngestResult:
        results = [
            EventResult(
                message_id=o.message_id,
                status=EventStatus(o.status.value),
                profile_id=strawberry.ID(o.profile_id) if o.profile_id else None,
                reason=o.reason,
                field=o.field,
            )
            for o in outcomes
        ]
        counts = {status: sum(1 for r in results if r.status is status) for status in EventStatus}
        return cls(
            accepted=counts[EventStatus.ACCEPTED],
            duplicates=counts[EventStatus.DUPLICATE],
            rejected=counts[EventStatus.REJECTED],
            results=results,
        )
