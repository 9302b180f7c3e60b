"""Query resolvers: parse arguments, call one service, map the result."""

from __future__ import annotations

import strawberry
from strawberry.scalars import JSON

from app.domain.access import Scope
from app.domain.matching import DEFAULT_MIN_SCORE
from app.domain.pii_mask import refuse_personal_filter
from app.domain.profile_query import ProfileFilter
from app.domain.segments.segment import Segment as DomainSegment
from app.services import api_keys, match_candidates, nodes, privacy, profile_reads, recommendations, review_list
from app.services.profiles import check_page_size
from app.services.segments import membership_history
from graphql_schema.context import Info
from graphql_schema.inputs import ProfileFilterInput
from graphql_schema.page_arguments import PROFILES_PAGE, SEGMENT_HISTORY_MAX
from graphql_schema.pagination import Connection, page_window
from graphql_schema.permissions import requires
from graphql_schema.types.api_key import ApiKey
from graphql_schema.types.merge_candidate import (
    MergeCandidate,
    MergeCandidateConnection,
    merge_candidate_connection,
    pair_position,
)
from graphql_schema.types.node import Node
from graphql_schema.types.product import Recommendation
from graphql_schema.types.profile import PROFILE_CURSOR, Profile, id_window, profile_connection
from graphql_schema.types.segment import Segment, SegmentMembershipEvent, membership_events


@strawberry.type
class Query:
    @strawberry.field(
        permission_classes=[requires(Scope.READ_PROFILES)],
        description="A profile by id; an id merged away resolves to the surviving profile.",
    )
    async def profile(self, info: Info, id: strawberry.ID) -> Profile | None:
        found = await profile_reads.get_profile(info.context.services.store, str(id))
        return Profile.from_domain(found) if found else None

    @strawberry.field(
        permission_classes=[requires(Scope.READ_PROFILES)],
        description="The Profile or Segment with this id (Relay's Object Identification), with the scopes of "
        "profile(id) and segment(id); an id merged away finds the surviving profile, as profile(id) does.",
    )
    async def node(self, info: Info, id: strawberry.ID) -> Node | None:
        found = await nodes.find_node(info.context.services.store, str(id))
        if isinstance(found, DomainSegment):
            return Segment.from_domain(found)
        return Profile.from_domain(found) if found else None

    @strawberry.field(
        permission_classes=[requires(Scope.READ_PROFILES)],
        description="A profile by one of its identifiers, normalised as on ingestion.",
    )
    async def profile_by_identifier(self, info: Info, type: str, value: str) -> Profile | None:
        found = await profile_reads.get_profile_by_identifier(info.context.services.store, type, value)
        return Profile.from_domain(found) if found else None

    @strawberry.field(
        # Scores and reasons compare personal data: without read:pii, a profile written with a guessed
        # birth date or name would confirm a real person's, whatever the answer masks.
        permission_classes=[requires(Scope.READ_PROFILES), requires(Scope.READ_PII)],
        description="Fuzzy merge candidates, best first, at most 1,000: for one profile when profileId is given, "
        "else the best pairs of the whole store (the whole list, paged, with its count: mergeCandidatePairs). "
        "Found through blocking keys, scored on names, birth date, addresses, emails and phones. minScore "
        "(0 to 1) defaults to the calibrated threshold. Needs read:pii: scores compare personal data.",
    )
    async def merge_candidates(
        self,
        info: Info,
        profile_id: strawberry.ID | None = None,
        min_score: float = DEFAULT_MIN_SCORE,
        first: int = 20,
    ) -> list[MergeCandidate]:
        services = info.context.services
        if profile_id is None:
            found = await review_list.candidates_in_store(
                services.store,
                min_score=min_score,
                first=first,
                max_pairs=services.settings.max_review_pairs,
                lists=services.review_lists,
            )
        else:
            found = await match_candidates.candidates_for_profile(
                services.store, str(profile_id), min_score=min_score, first=first
            )
        return [MergeCandidate.from_domain(c) for c in found]

    @strawberry.field(
        permission_classes=[requires(Scope.READ_PROFILES), requires(Scope.READ_PII)],
        description="A steward's review list (needs read:pii, as mergeCandidates): every merge candidate pair of "
        "the whole store scoring from minScore "
        "(0 to 1, default the calibrated threshold) to maxScore (default 1), best first (score, then aId, then "
        f"bId), with cursor pagination ({PROFILES_PAGE} a page unless first or last says otherwise) and totalCount "
        "(the pairs in the score range). Each pair is listed once, with aId before bId. Refused when the store has "
        "more pairs at minScore than the server lists (CDP_MAX_REVIEW_PAIRS).",
    )
    async def merge_candidate_pairs(
        self,
        info: Info,
        min_score: float = DEFAULT_MIN_SCORE,
        max_score: float | None = None,
        first: int | None = None,
        after: str | None = None,
        last: int | None = None,
        before: str | None = None,
    ) -> MergeCandidateConnection:
        services = info.context.services
        page = await review_list.review_page(
            services.store,
            services.review_lists,
            page_window(
                first,
                after,
                last,
                before,
                default=min(PROFILES_PAGE, services.settings.max_page_size),
                position=pair_position,
            ),
            min_score=min_score,
            max_score=max_score,
            max_page_size=services.settings.max_page_size,
        )
        return merge_candidate_connection(page)

    @strawberry.field(
        permission_classes=[requires(Scope.READ_PROFILES)],
        description=f"Profiles ordered by id, with typed filters and cursor pagination ({PROFILES_PAGE} a page "
        "unless first or last says otherwise).",
    )
    async def profiles(
        self,
        info: Info,
        filter: ProfileFilterInput | None = None,
        first: int | None = None,
        after: str | None = None,
        last: int | None = None,
        before: str | None = None,
    ) -> Connection[Profile]:
        query = filter.to_domain() if filter else ProfileFilter()
        if not info.context.may(Scope.READ_PII):
            refuse_personal_filter(query.comparisons(), field="filter")
        usual = min(PROFILES_PAGE, info.context.services.settings.max_page_size)
        window = id_window(PROFILE_CURSOR, first, after, last, before, default=usual)
        return await profile_connection(info, query, window)

    @strawberry.field(
        permission_classes=[requires(Scope.READ_PROFILES)],
        description="Products to show the customer, best first (at most 50), each with the reasons it was picked: "
        "in-stock products from their preferred categories and from what customers who bought the same products "
        "also bought, new items boosted, recent purchases left out. Without the personalisation consent: "
        "best sellers only, and each item says so.",
    )
    async def recommendations(
        self, info: Info, profile_id: strawberry.ID, first: int = 10
    ) -> list[Recommendation] | None:
        services = info.context.services
        found = await recommendations.recommendations(
            services.store,
            str(profile_id),
            first=first,
            exclude_days=services.settings.recommendations_exclude_days,
        )
        return [Recommendation.from_domain(r) for r in found]

    @strawberry.field(
        permission_classes=[requires(Scope.READ_PROFILES), requires(Scope.READ_PII)],
        description="Everything held about the person as one JSON document (right of access): the profile, "
        "its full history, consent history, merges and refusals, and the ids of profiles merged into it.",
    )
    async def export_profile(self, info: Info, id: strawberry.ID) -> JSON | None:
        services = info.context.services
        async with services.exports:  # a few at once a process: each holds a whole history
            return JSON(await privacy.export_profile(services.store, str(id)))

    @strawberry.field(permission_classes=[requires(Scope.READ_PROFILES)], description="A segment by id.")
    async def segment(self, info: Info, id: strawberry.ID) -> Segment | None:
        found = await info.context.services.store.get_segment(str(id))
        return Segment.from_domain(found) if found else None

    @strawberry.field(permission_classes=[requires(Scope.READ_PROFILES)], description="Every segment, by id.")
    async def segments(self, info: Info) -> list[Segment]:
        return [Segment.from_domain(s) for s in await info.context.services.store.list_segments()]

    @strawberry.field(
        permission_classes=[requires(Scope.READ_PROFILES)],
        description="Membership changes, newest first, of a segment, a profile or both (at most 500 at a time; "
        "`before`, the id of the last one read, gives the ones before it: page back to the oldest change kept, "
        "CDP_SEGMENT_HISTORY_DAYS).",
    )
    async def segment_history(
        self,
        info: Info,
        segment_id: strawberry.ID | None = None,
        profile_id: strawberry.ID | None = None,
        last: int = 50,
        before: strawberry.ID | None = None,
    ) -> list[SegmentMembershipEvent]:
        check_page_size(last, maximum=SEGMENT_HISTORY_MAX, field="last")
        events = await membership_history(
            info.context.services.store,
            segment_id=str(segment_id) if segment_id else None,
            profile_id=str(profile_id) if profile_id else None,
            limit=last,
            before=str(before) if before is not None else None,
        )
        return await membership_events(info, events)

    @strawberry.field(
        permission_classes=[requires(Scope.ADMIN_KEYS)],
        description="Every API key, revoked ones included (never their secrets).",
    )
    async def api_keys(self, info: Info) -> list[ApiKey]:
        return [ApiKey.from_domain(k) for k in await api_keys.list_keys(info.context.services.store)]
