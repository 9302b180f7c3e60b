"""GraphQL types of segments and of their membership changes."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from datetime import datetime
from enum import Enum
from typing import TypeVar

import strawberry
from strawberry.scalars import JSON
from strawberry.types.unset import UNSET

from app.domain.access import Scope
from app.domain.pii_mask import mask_condition
from app.domain.segments import segment as domain
from graphql_schema.context import Info
from graphql_schema.held_values import NOT_HELD, held_in
from graphql_schema.loaders import MemberPage
from graphql_schema.look_ahead import LookAhead
from graphql_schema.page_arguments import PROFILES_PAGE
from graphql_schema.pagination import Connection
from graphql_schema.shared_events import ReadsOfAnEvent
from graphql_schema.types.free_form import visible
from graphql_schema.types.node import Node
from graphql_schema.types.profile import Profile, id_window, page_connection

MEMBER_CURSOR = "member"
T = TypeVar("T")
R = TypeVar("R")


@strawberry.enum
class MembershipChange(Enum):
    ENTERED = "ENTERED"
    EXITED = "EXITED"


@strawberry.type(description="An audience defined by a condition tree, kept up to date on every profile change.")
class Segment(Node):
    segment: strawberry.Private[domain.Segment]
    id: strawberry.ID

    # A steward's words, which may name a person ("Zelda's re-engagement", an email): masked as free
    # text is, without read:pii, for every key that may read segments (and their subscribers).
    @strawberry.field(description="As given; an email address or a phone number in it masked without read:pii.")
    def name(self, info: Info) -> str:
        return visible(info, self.segment.name)

    @strawberry.field(description="As given; an email address or a phone number in it masked without read:pii.")
    def description(self, info: Info) -> str | None:
        return visible(info, self.segment.description)

    @strawberry.field(
        description="The condition tree as given (see README: Segments); without read:pii, the values it compares "
        "personal data to are masked."
    )
    def condition(self, info: Info) -> JSON:
        given = self.segment.condition
        return JSON(given if info.context.may(Scope.READ_PII) else mask_condition(given))

    purpose: str | None = strawberry.field(description="Consent purpose: only profiles that granted it are members.")
    traits: JSON
    created_at: datetime
    updated_at: datetime
    evaluated_at: datetime | None

    @strawberry.field(description="How many live profiles are members now.")
    async def count(self, info: Info) -> int:
        return await info.context.loaders(info).member_count.load(self.segment.id)

    @strawberry.field(
        description=f"Members ordered by id, with cursor pagination ({PROFILES_PAGE} a page unless "
        "first or last says otherwise)."
    )
    async def members(
        self,
        info: Info,
        first: int | None = None,
        after: str | None = None,
        last: int | None = None,
        before: str | None = None,
    ) -> Connection[Profile]:
        usual = min(PROFILES_PAGE, info.context.services.settings.max_page_size)
        window = id_window(MEMBER_CURSOR, first, after, last, before, default=usual)
        loaders = info.context.loaders(info)
        page = await loaders.members.load(MemberPage(self.segment.id, window))
        return page_connection(
            page, cursor_name=MEMBER_CURSOR, count=lambda: loaders.member_count.load(self.segment.id)
        )

    @classmethod
    def from_domain(cls, segment: domain.Segment) -> Segment:
        return cls(
            segment=segment,
            id=strawberry.ID(segment.id),
            purpose=segment.purpose,
            traits=JSON({name: str(kind) for name, kind in segment.traits.items()}),
            created_at=segment.created_at,
            updated_at=segment.updated_at,
            evaluated_at=segment.evaluated_at,
        )


@strawberry.type(description="A profile's membership of a segment.")
class SegmentMembership:
    segment: Segment
    since: datetime | None = strawberry.field(
        description="When the profile last entered the segment (null if the store holds no record of it)."
    )


@strawberry.type(description="A profile entering or leaving a segment, and why.")
class SegmentMembershipEvent:
    event: strawberry.Private[domain.SegmentEvent]
    # A subscription's event is one object for all its subscribers (shared_events.shared_payload), its
    # reads made once for them all; None for an event answered to one request (its loaders batch them).
    reads: strawberry.Private[ReadsOfAnEvent | None]
    # An event of a list holds its segment and profile when they were read for the whole list
    # (NOT_HELD: its loaders read them).
    held_segment: strawberry.Private[Segment | None]
    held_profile: strawberry.Private[Profile | None]
    id: strawberry.ID
    segment_id: strawberry.ID
    profile_id: strawberry.ID
    change: MembershipChange
    at: datetime
    cause: str

    # Not coroutines: an event of a list answers with what was read for the list, without an awaitable.
    @strawberry.field(
        graphql_type=Segment | None,
        description="The segment as it is now (null once deleted, and while it is being deleted: see segmentId).",
    )
    @held_in("held_segment")
    def segment(self, info: Info) -> Segment | Awaitable[Segment | None] | None:
        if self.held_segment is not NOT_HELD:
            return self.held_segment
        return self._made(
            standing_segment,
            self._read("segment", lambda: info.context.loaders(info).segment.load(self.event.segment_id)),
        )

    @strawberry.field(graphql_type=Profile | None, description="The profile as it is now (null once erased).")
    @held_in("held_profile")
    def profile(self, info: Info) -> Profile | Awaitable[Profile | None] | None:
        if self.held_profile is not NOT_HELD:
            return self.held_profile
        return self._made(
            Profile.from_domain,
            self._read("profile", lambda: info.context.loaders(info).profile.load(self.event.profile_id)),
        )

    def _read(self, what: str, load: Callable[[], Awaitable[T]]) -> Awaitable[T]:
        return load() if self.reads is None else self.reads.read(what, load)

    @staticmethod
    async def _made(make: Callable[[T], R], reading: Awaitable[T | None]) -> R | None:
        found = await reading
        return make(found) if found else None

    @classmethod
    def for_subscribers(cls, event: domain.SegmentEvent) -> SegmentMembershipEvent:
        """The event as every subscriber's execution of it shares it."""
        return cls.from_domain(event, reads=ReadsOfAnEvent())

    @classmethod
    def from_domain(
        cls,
        event: domain.SegmentEvent,
        *,
        reads: ReadsOfAnEvent | None = None,
        segment: Segment | None = NOT_HELD,
        profile: Profile | None = NOT_HELD,
    ) -> SegmentMembershipEvent:
        return cls(
            event=event,
            reads=reads,
            held_segment=segment,
            held_profile=profile,
            id=strawberry.ID(event.id),
            segment_id=strawberry.ID(event.segment_id),
            profile_id=strawberry.ID(event.profile_id),
            change=MembershipChange(event.change.value),
            at=event.at,
            cause=event.cause,
        )


def standing_segment(segment: domain.Segment | None) -> Segment | None:
    """A membership event's segment as it is now: null once deleted, and while it is being deleted. The
    exits of one deletion, delivered while it ran and after, answered the segment for some and null
    for others, as the timing fell; each still names it by `segmentId`."""
    return Segment.from_domain(segment) if segment is not None and segment.deleting_since is None else None


async def membership_events(info: Info, events: list[domain.SegmentEvent]) -> list[SegmentMembershipEvent]:
    """`events` as a list's items, their segments and profiles read for all of them at once when the
    selection asks for them (one store call each, not an awaitable per item)."""
    look_ahead = LookAhead(info)
    segment_ids = list(dict.fromkeys(e.segment_id for e in events)) if look_ahead.selects("segment") else []
    profile_ids = list(dict.fromkeys(e.profile_id for e in events)) if look_ahead.selects("profile") else []
    if not segment_ids and not profile_ids:
        return [SegmentMembershipEvent.from_domain(e) for e in events]
    loaders = info.context.loaders(info)
    # Both at once, on two reader threads, as the loaders read them.
    segments, profiles = await asyncio.gather(
        loaders.read_segments(segment_ids) if segment_ids else _nothing(),
        loaders.read_profiles(profile_ids) if profile_ids else _nothing(),
        return_exceptions=True,
    )
    if isinstance(segments, BaseException) or isinstance(profiles, BaseException):
        # Each event reads its own through the loaders, and a failure is its field's error, as it was.
        return [SegmentMembershipEvent.from_domain(e) for e in events]
    made_segments = {i: standing_segment(s) for i, s in segments.items()}
    made_profiles = {i: Profile.from_domain(p) if p else None for i, p in profiles.items()}
    return [
        SegmentMembershipEvent.from_domain(
            e,
            segment=made_segments.get(e.segment_id) if segment_ids else NOT_HELD,
            profile=made_profiles.get(e.profile_id) if profile_ids else NOT_HELD,
        )
        for e in events
    ]


async def _nothing() -> dict[str, None]:
    return {}


@strawberry.type(description="What a segment's evaluation over the whole store changed.")
class SegmentEvaluation:
    segment: Segment
    entered: int
    exited: int
    members: int


@strawberry.input(
    description="A segment definition; `condition` is a tree (see README: Segments). In updateSegment, "
    "`description`, `purpose` and `traits` left out keep their values; null clears them."
)
class SegmentInput:
    name: str
    condition: JSON
    description: str | None = UNSET
    purpose: str | None = strawberry.field(
        default=UNSET, description="Consent purpose the segment is used for: its members are those who granted it."
    )
    traits: JSON | None = strawberry.field(
        default=UNSET, description='Trait names the condition uses, with their type: {"tier": "string"}.'
    )

    def fields(self) -> dict[str, object]:
        """What was given: an update keeps what is left out (a rule dropped by leaving it out of an
        update, a consent purpose above all, would add people who never granted it)."""
        given = {"description": self.description, "purpose": self.purpose, "traits": self.traits}
        return {"name": self.name, "condition": self.condition} | {k: v for k, v in given.items() if v is not UNSET}
