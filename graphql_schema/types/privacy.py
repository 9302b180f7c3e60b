"""GraphQL types of privacy rights: consent decisions and erasure receipts."""

from __future__ import annotations

from datetime import datetime

import strawberry

from app.domain import privacy as domain
from graphql_schema.context import Info
from graphql_schema.types.free_form import visible


@strawberry.type(description="One consent decision, as recorded (the profile's consents show the current state).")
class ConsentDecision:
    purpose: str
    granted: bool
    source: str
    at: datetime
    sent_message_id: strawberry.Private[str | None]

    @strawberry.field(
        description="The consent_update event's messageId; an email address or a phone number in it masked "
        "without read:pii."
    )
    def message_id(self, info: Info) -> str | None:
        return visible(info, self.sent_message_id)

    @classmethod
    def from_domain(cls, decision: domain.ConsentDecision) -> ConsentDecision:
        return cls(
            purpose=decision.purpose,
            granted=decision.granted,
            source=decision.source,
            at=decision.at,
            sent_message_id=decision.message_id,
        )


@strawberry.type(description="The receipt of an erasure: what was deleted, never whose data it was.")
class Erasure:
    id: strawberry.ID
    at: datetime
    actor: str
    profiles: int
    identifiers: int
    interactions: int

    @classmethod
    def from_domain(cls, erasure: domain.Erasure) -> Erasure:
        return cls(
            id=strawberry.ID(erasure.id),
            at=erasure.at,
            actor=erasure.actor,
            profiles=erasure.profiles,
            identifiers=erasure.identifiers,
            interactions=erasure.interactions,
        )
