"""Mutation resolvers: parse input, call one service, map the result."""

from __future__ import annotations

import strawberry

from app.services import profiles
from app.services.ingestion import ingest_events
from graphql_schema.context import Info
from graphql_schema.inputs import EventInput, ProfileInput, raw_identifiers
from graphql_schema.types.ingestion import IngestResult
from graphql_schema.types.profile import Profile


@strawberry.type
class Mutation:
    @strawberry.mutation(
        description="Ingest a batch of events (at most 1,000). Each gets ACCEPTED, DUPLICATE or REJECTED "
        "with a reason; one bad event does not fail the others."
    )
    async def ingest_events(self, info: Info, events: list[EventInput]) -> IngestResult:
        services = info.context.services
        outcomes = await ingest_events(services.store, [e.to_raw() for e in events], services.ingestion)
        return IngestResult.from_outcomes(outcomes)

    @strawberry.mutation(description="Create or update the profile its identifiers resolve to.")
    async def upsert_profile(self, info: Info, input: ProfileInput) -> Profile:
        profile = await profiles.upsert_profile(
            info.context.services.store, raw_identifiers(input.identifiers), input.fields(), source=input.source
        )
        return Profile.from_domain(profile)
