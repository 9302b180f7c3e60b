"""GraphQL types of computed traits (RFM, engagement, preferences, next order) and of the job that
computes them."""

from __future__ import annotations

from datetime import datetime

import strawberry

from app.domain import profile as domain
from app.domain.traits.rfm import RfmBoundaries as DomainBoundaries
from app.services.traits import TraitsJobResult
from graphql_schema.context import Info
from graphql_schema.types.free_form import visible


@strawberry.type(
    description="Recency, frequency and monetary scores 1-5 (5 best, by quintiles over customers with "
    "an order) and the named segment they give; a profile without orders is a Prospect, unscored."
)
class Rfm:
    recency_score: int | None
    frequency_score: int | None
    monetary_score: int | None
    segment: str | None
    computed_at: datetime | None

    @classmethod
    def from_domain(cls, rfm: domain.Rfm) -> Rfm:
        return cls(**rfm.model_dump())


@strawberry.type
class ChannelRate:
    channel: str
    events_per_week: float


@strawberry.type(
    description="Rates since the customer was first seen (campaign sends are not ingested, so email "
    "engagement is opens per month and the share of opens followed by a click)."
)
class Engagement:
    email_opens_per_month: float
    email_click_to_open_rate: float | None
    visits_per_week: float
    channels: list[ChannelRate]


@strawberry.type
class CategoryAffinity:
    named: strawberry.Private[str]
    score: float = strawberry.field(description="Share of the customer's weighted views, cart adds and purchases.")

    @strawberry.field(description="As the catalogue or the event named it; masked as event data without read:pii.")
    def category(self, info: Info) -> str:
        return visible(info, self.named)  # an event's `category` is its sender's free text


@strawberry.type(description="Traits derived by the computed-traits job besides rfm.")
class ComputedTraits:
    engagement: Engagement
    preferred_categories: list[CategoryAffinity]
    next_order_at: datetime | None = strawberry.field(
        description="Last order plus the mean interval between orders; null with fewer than two orders."
    )
    computed_at: datetime | None

    @classmethod
    def from_domain(cls, computed: domain.ComputedTraits) -> ComputedTraits:
        rates = computed.engagement
        return cls(
            engagement=Engagement(
                email_opens_per_month=rates.email_opens_per_month,
                email_click_to_open_rate=rates.email_click_to_open_rate,
                visits_per_week=rates.visits_per_week,
                channels=[ChannelRate(channel=c, events_per_week=n) for c, n in sorted(rates.events_per_week.items())],
            ),
            preferred_categories=[
                CategoryAffinity(named=a.category, score=a.score) for a in computed.preferred_categories
            ],
            next_order_at=computed.next_order_at,
            computed_at=computed.computed_at,
        )


@strawberry.type(description="Where scores 2, 3, 4 and 5 start (null: no customer scores that high).")
class RfmBoundaries:
    customers: int = strawberry.field(description="Profiles with at least one order the quintiles are over.")
    recency_days: list[int | None] = strawberry.field(description="At most this many days since the last order.")
    frequency: list[int | None] = strawberry.field(description="At least this many orders.")
    monetary: list[float | None] = strawberry.field(description="At least this net spend (revenue minus returns).")

    @classmethod
    def from_domain(cls, boundaries: DomainBoundaries) -> RfmBoundaries:
        return cls(
            customers=boundaries.customers,
            recency_days=list(boundaries.recency.cuts),
            frequency=list(boundaries.frequency.cuts),
            monetary=boundaries.monetary_amounts(),
        )


@strawberry.type
class TraitsJob:
    job_id: strawberry.ID
    processed: int = strawberry.field(description="Profiles written by this run.")
    total_processed: int = strawberry.field(description="Profiles written by the job, runs before an interruption too.")
    resumed: bool = strawberry.field(description="True when this run continued an interrupted job.")
    as_of: datetime
    duration_seconds: float
    boundaries: RfmBoundaries

    @classmethod
    def from_domain(cls, result: TraitsJobResult) -> TraitsJob:
        return cls(
            job_id=strawberry.ID(result.job_id),
            processed=result.processed,
            total_processed=result.total_processed,
            resumed=result.resumed,
            as_of=result.as_of,
            duration_seconds=result.duration_seconds,
            boundaries=RfmBoundaries.from_domain(result.boundaries),
        )
