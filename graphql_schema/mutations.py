"""Mutation resolvers: parse input, call one service, map the result. Each write service reports the
profiles it changed to `services.changes`, whose listeners (segments, metrics) the composition root
wired: resolvers never keep segments up to date themselves."""

from __future__ import annotations

from collections import Counter
from dataclasses import replace
from typing import Annotated

import strawberry

from app.domain.access import Scope
from app.domain.events import EventType, RawEvent
from app.observability.metrics import Metrics
from app.off_loop import off_loop
from app.services import api_keys, merging, privacy, profiles, recommendations, traits
from app.services.ingestion import INLINE_EVENTS, EventOutcome, ingest_events
from app.services.segments import Evaluation
from graphql_schema.context import Context, Info
from graphql_schema.inputs import EventInput, ProfileInput, raw_identifiers
from graphql_schema.permissions import requires
from graphql_schema.types.api_key import ApiKey, CreatedApiKey
from graphql_schema.types.ingestion import IngestResult
from graphql_schema.types.merge import MergeResult, UnmergeResult
from graphql_schema.types.merge_record import Merge
from graphql_schema.types.privacy import Erasure
from graphql_schema.types.product import Product, ProductInput
from graphql_schema.types.profile import Profile
from graphql_schema.types.segment import Segment, SegmentEvaluation, SegmentInput
from graphql_schema.types.traits import TraitsJob


async def ingest(context: Context, raws: list[RawEvent]) -> IngestResult:
    """ingestEvents, whichever executor runs it (graphql_schema/compiled.py compiles it)."""
    services = context.services
    policy = replace(services.ingestion, actor=context.actor)  # the key's name, on the merges its events make
    outcomes = await ingest_events(services.store, raws, policy, answer_once_committed=True)
    # A batch's thousand results, counted and made into its answer: ~5-10 ms of Python, which held the
    # loop in one piece after every batch. A worker thread does it, as it validated the events.
    return await off_loop(len(raws) > INLINE_EVENTS, _answered, services.metrics, raws, outcomes)


# The `type` label of an event whose type is none of ours. /metrics answers without a key: a client's
# text as a label published whatever it held (an email address sent as a type), and each new one
# was a series kept for good.
UNKNOWN_TYPE = "unknown"
_KNOWN_TYPES = frozenset(EventType)


def _answered(metrics: Metrics, raws: list[RawEvent], outcomes: list[EventOutcome]) -> IngestResult:
    counted = Counter(
        (raw.type if raw.type in _KNOWN_TYPES else UNKNOWN_TYPE, outcome.status.value)
        for raw, outcome in zip(raws, outcomes, strict=True)
    )
    for labels, count in counted.items():
        metrics.events.labels(*labels).inc(count)
    return IngestResult.from_outcomes(outcomes)


@strawberry.type
class Mutation:
    @strawberry.mutation(
        permission_classes=[requires(Scope.WRITE_EVENTS)],
        description="Ingest a batch of events (at most 1,000). Each gets ACCEPTED, DUPLICATE or REJECTED "
        "with a reason; one bad event does not fail the others.",
    )
    async def ingest_events(self, info: Info, events: list[EventInput]) -> IngestResult:
        return await ingest(info.context, [e.to_raw() for e in events])

    @strawberry.mutation(
        permission_classes=[requires(Scope.MERGE_PROFILES)],
        description="Merge duplicates into the survivor: identifiers united, fields reconciled by the merge "
        "rules, histories joined, stats recomputed. Merged ids keep resolving to the survivor.",
    )
    async def merge_profiles(
        self, info: Info, survivor_id: strawberry.ID, merged_ids: list[strawberry.ID], reason: str
    ) -> MergeResult:
        services = info.context.services
        record, profile = await merging.merge_profiles(
            services.store,
            str(survivor_id),
            [str(i) for i in merged_ids],
            reason=reason,
            actor=info.context.actor,
            policy=services.ingestion.identity,
            changes=services.changes,
        )
        return MergeResult(merge=Merge.from_domain(record), profile=Profile.from_domain(profile))

    @strawberry.mutation(
        permission_classes=[requires(Scope.MERGE_PROFILES)],
        description="Undo a merge: the profiles come back, with what arrived since routed to each.",
    )
    async def unmerge_profile(self, info: Info, merge_id: strawberry.ID) -> UnmergeResult:
        services = info.context.services
        record, profiles = await merging.unmerge_profile(
            services.store, str(merge_id), actor=info.context.actor, changes=services.changes
        )
        return UnmergeResult(merge=Merge.from_domain(record), profiles=[Profile.from_domain(p) for p in profiles])

    @strawberry.mutation(
        permission_classes=[requires(Scope.WRITE_PROFILES)],
        description="Create or update the profile its identifiers resolve to.",
    )
    async def upsert_profile(self, info: Info, input: ProfileInput) -> Profile:
        services = info.context.services
        profile = await profiles.upsert_profile(
            services.store,
            raw_identifiers(input.identifiers),
            input.fields(),
            source=input.source,
            policy=services.ingestion.identity,
            changes=services.changes,
            actor=info.context.actor,
        )
        return Profile.from_domain(profile)

    @strawberry.mutation(
        permission_classes=[requires(Scope.WRITE_CONSENT)],
        description="Record a consent decision for a purpose (configured: CDP_CONSENT_PURPOSES); kept in "
        "consentHistory. A consent_update event does the same.",
    )
    async def set_consent(
        self,
        info: Info,
        profile_id: strawberry.ID,
        purpose: str,
        granted: bool,
        # `source` is a resolver argument name Strawberry's permission extension reserves.
        decided_by: Annotated[str, strawberry.argument(name="source", description="Where it was decided")],
    ) -> Profile:
        services = info.context.services
        profile = await privacy.set_consent(
            services.store,
            str(profile_id),
            purpose,
            granted,
            decided_by,
            purposes=tuple(services.settings.consent_purposes),
            changes=services.changes,
        )
        return Profile.from_domain(profile)

    @strawberry.mutation(
        permission_classes=[requires(Scope.PRIVACY_ERASE)],
        description="Erase the person (right to be forgotten): the profile, profiles merged into it, identifiers, "
        "history, consents and merge records. Their identifiers are suppressed: later or replayed events "
        "and upserts for them are rejected and never recreate the profile. Only an audit receipt remains.",
    )
    async def delete_profile(self, info: Info, id: strawberry.ID) -> Erasure:
        services = info.context.services
        erasure = await privacy.delete_profile(
            services.store, str(id), actor=info.context.actor, changes=services.changes
        )
        return Erasure.from_domain(erasure)

    @strawberry.mutation(
        permission_classes=[requires(Scope.ADMIN_SEGMENTS)],
        description="Define a segment; it is evaluated over every profile at once, then kept up to date.",
    )
    async def create_segment(self, info: Info, input: SegmentInput) -> SegmentEvaluation:
        segments = info.context.services.segments
        return _evaluation(await segments.create(input.fields(), personal_filters=info.context.may(Scope.READ_PII)))

    @strawberry.mutation(
        permission_classes=[requires(Scope.ADMIN_SEGMENTS)],
        description="Change a segment's definition; members are re-evaluated (ENTERED/EXITED for the difference).",
    )
    async def update_segment(self, info: Info, id: strawberry.ID, input: SegmentInput) -> SegmentEvaluation:
        segments = info.context.services.segments
        return _evaluation(
            await segments.update(str(id), input.fields(), personal_filters=info.context.may(Scope.READ_PII))
        )

    @strawberry.mutation(
        permission_classes=[requires(Scope.ADMIN_SEGMENTS)],
        description="Delete a segment: its members leave it (EXITED). Returns how many left.",
    )
    async def delete_segment(self, info: Info, id: strawberry.ID) -> int:
        return await info.context.services.segments.delete(str(id))

    @strawberry.mutation(
        permission_classes=[requires(Scope.ADMIN_SEGMENTS)],
        description="Recompute every profile's computed traits (RFM, engagement, preferred categories, next order) "
        "and the products' best-seller and co-purchase signals. Continues an interrupted job unless restart.",
    )
    async def recompute_traits(self, info: Info, restart: bool = False) -> TraitsJob:
        services = info.context.services
        result = await traits.recompute_traits(services.store, restart=restart, changes=services.changes)
        return TraitsJob.from_domain(result)

    @strawberry.mutation(
        permission_classes=[requires(Scope.WRITE_PROFILES)],
        description="Create or update catalogue products (at most 1,000). All are validated before any is "
        "written; a changed price is appended to the price history.",
    )
    async def upsert_products(self, info: Info, products: list[ProductInput]) -> list[Product]:
        written = await recommendations.upsert_products(info.context.services.store, [p.fields() for p in products])
        return [Product.from_domain(p) for p in written]

    @strawberry.mutation(
        permission_classes=[requires(Scope.ADMIN_KEYS)],
        description="Create an API key with the given scopes (README: Access control). The token is in the "
        "answer once and never again; only its hash is stored.",
    )
    async def create_api_key(self, info: Info, name: str, scopes: list[str]) -> CreatedApiKey:
        key, token = await api_keys.create_key(info.context.services.store, name, scopes)
        return CreatedApiKey(key=ApiKey.from_domain(key), token=token)

    @strawberry.mutation(
        permission_classes=[requires(Scope.ADMIN_KEYS)],
        description="Revoke an API key: refused from its next request on, its open subscriptions closed (4403).",
    )
    async def revoke_api_key(self, info: Info, id: strawberry.ID) -> ApiKey:
        return ApiKey.from_domain(await api_keys.revoke_key(info.context.services.store, str(id)))


def _evaluation(result: Evaluation) -> SegmentEvaluation:
    return SegmentEvaluation(
        segment=Segment.from_domain(result.segment),
        entered=result.entered,
        exited=result.exited,
        members=result.members,
    )
