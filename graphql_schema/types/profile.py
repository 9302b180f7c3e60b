"""GraphQL types of a customer profile, mapped from the domain Profile."""

from __future__ import annotations

from collections.abc import Awaitable
from datetime import UTC, date, datetime
from typing import TYPE_CHECKING, Annotated, Any, TypeVar, cast

import strawberry
from strawberry.scalars import JSON

from app.domain import profile as domain
from app.domain.access import Scope
from app.domain.clock import to_iso
from app.domain.paging import Window
from app.domain.pii_mask import mask_identifier, mask_text
from app.domain.profile_query import InteractionFilter, InteractionPosition, ProfileFilter
from app.services import profiles, recommendations
from app.services.history import (
    HistoryWindow,
    InteractionPage,
    embedded_count,
    embedded_first_page,
    embedded_newest,
    embedded_page,
    page_of,
)
from graphql_schema.context import Info
from graphql_schema.loaders import ConsentPage, HistoryPage, InteractionCount
from graphql_schema.page_arguments import CONSENT_HISTORY_PAGE, INTERACTIONS_PAGE
from graphql_schema.pagination import (
    Connection,
    Count,
    PageNodes,
    connection,
    counted,
    decode_cursor,
    encode_cursor,
    foreign_cursor,
    nodes_alone,
    page_window,
)
from graphql_schema.types.counts import graphql_int
from graphql_schema.types.free_form import visible
from graphql_schema.types.merge_record import Merge, MergeRefusal
from graphql_schema.types.node import Node
from graphql_schema.types.privacy import ConsentDecision
from graphql_schema.types.product import Recommendation
from graphql_schema.types.traits import ComputedTraits, Rfm

if TYPE_CHECKING:
    from graphql_schema.types.segment import SegmentMembership

INTERACTION_CURSOR = "interaction"
PROFILE_CURSOR = "profile"
T = TypeVar("T")


def _money(cents: int | None) -> float | None:
    return None if cents is None else cents / 100


@strawberry.type
class Identifier:
    type: str
    value: str
    added_at: datetime
    source: str | None


@strawberry.type
class Address:
    kind: str | None
    street: str | None
    line2: str | None = strawberry.field(description="A second street line: flat, building, floor, care of.")
    city: str | None
    postcode: str | None
    region: str | None
    country: str | None


@strawberry.type
class Consent:
    purpose: str
    granted: bool
    source: str | None
    at: datetime


@strawberry.type
class Rating:
    rating: int
    at: datetime
    named: strawberry.Private[str | None]
    written: strawberry.Private[str | None]

    @strawberry.field(description="As the event named it; an email address or phone number masked without read:pii.")
    def product_id(self, info: Info) -> str | None:
        return visible(info, self.named)  # an event's free text: masked as its properties are

    @strawberry.field(description="As written; email addresses in it masked without read:pii.")
    def comment(self, info: Info) -> str | None:
        return visible(info, self.written)


@strawberry.type
class Qualitative:
    nps_score: int | None
    nps_at: datetime | None
    average_rating: float | None
    rating_count: int
    ratings: list[Rating]
    stated: strawberry.Private[dict[str, Any]]

    @strawberry.field(description="Stated preferences; personal data in them masked without read:pii.")
    def preferences(self, info: Info) -> JSON:
        return JSON(visible(info, self.stated, attributes=True))


@strawberry.type
class ChannelCount:
    channel: str
    count: int


@strawberry.type(description="Counters and totals kept up to date on every event. Amounts are in currency units.")
class Stats:
    events_total: int
    orders: int
    revenue: float
    average_order_value: float | None
    items_purchased: int
    first_order_at: datetime | None
    last_order_at: datetime | None
    returns: int
    returned_amount: float
    add_to_carts: int
    cart_abandons: int
    last_cart_abandon_at: datetime | None
    email_opens: int
    email_clicks: int
    email_replies: int
    visits: int
    page_views: int
    product_views: int
    support_contacts: int
    survey_responses: int
    first_seen_at: datetime | None
    last_seen_at: datetime | None
    channels: list[ChannelCount]

    @classmethod
    def from_domain(cls, stats: domain.Stats) -> Stats:
        return cls(
            events_total=graphql_int(stats.events_total),
            orders=graphql_int(stats.orders),
            revenue=stats.revenue_cents / 100,
            average_order_value=_money(stats.average_order_value_cents),
            items_purchased=graphql_int(stats.items_purchased),
            first_order_at=stats.first_order_at,
            last_order_at=stats.last_order_at,
            returns=graphql_int(stats.returns),
            returned_amount=stats.returned_cents / 100,
            add_to_carts=graphql_int(stats.add_to_carts),
            cart_abandons=graphql_int(stats.cart_abandons),
            last_cart_abandon_at=stats.last_cart_abandon_at,
            email_opens=graphql_int(stats.email_opens),
            email_clicks=graphql_int(stats.email_clicks),
            email_replies=graphql_int(stats.email_replies),
            visits=graphql_int(stats.visits),
            page_views=graphql_int(stats.page_views),
            product_views=graphql_int(stats.product_views),
            support_contacts=graphql_int(stats.support_contacts),
            survey_responses=graphql_int(stats.survey_responses),
            first_seen_at=stats.first_seen_at,
            last_seen_at=stats.last_seen_at,
            channels=[ChannelCount(channel=c, count=graphql_int(n)) for c, n in sorted(stats.channels.items())],
        )


@strawberry.type
class Interaction:
    """An interaction of the history. Its values are the domain's interactions themselves (this type has
    no interface that would check them): a list of members' last interactions holds thousands, and a
    copy of each cost more than the rest of its completion."""

    type: str
    channel: str
    timestamp: datetime

    @strawberry.field(
        description="The event's messageId, as its sender chose it; an email address or a phone number in it "
        "masked without read:pii."
    )
    def message_id(self, info: Info) -> str:
        return visible(info, cast(domain.Interaction, self).message_id)

    @strawberry.field(description="As the event carried them; personal data masked without read:pii.")
    def properties(self, info: Info) -> JSON:
        return JSON(visible(info, cast(domain.Interaction, self).properties))


def _personal(info: Info, value: str | None) -> str | None:
    return value if info.context.may(Scope.READ_PII) else mask_text(value)


_EVERY_ONE = InteractionFilter()  # most pages filter nothing: one filter for them all (it is frozen)


def _asks_newest(after: str | None, before: str | None, last: int | None, types: Any, channels: Any) -> bool:
    """Whether `interactions` is asked for its newest page of every kind (`first` at most)."""
    return after is None and before is None and last is None and not types and not channels


def _usual_size(max_page_size: int) -> int:
    """The size of an `interactions` page asked for none: a CDP_MAX_PAGE_SIZE below INTERACTIONS_PAGE
    refused every such page."""
    return min(INTERACTIONS_PAGE, max_page_size)


def _newest_size(first: int | None, max_page_size: int) -> int | None:
    """The size of the newest page asked with `first` (`_usual_size` when None), when a caller may
    ask for it; None: the page is made from its window (which refuses a size out of bounds)."""
    size = _usual_size(max_page_size) if first is None else first
    return size if 1 <= size <= max_page_size else None


def _newest_page(profile: domain.Profile, first: int | None, max_page_size: int) -> InteractionPage | None:
    """The newest `first` interactions of every kind when the embedded list holds them: most pages,
    made directly. None: the page is made from its window."""
    size = _newest_size(first, max_page_size)
    return None if size is None else embedded_first_page(profile, size)


def _newest_nodes(arguments: dict[str, Any]) -> PageNodes | None:
    """`interactions`' nodes alone (`nodes_alone`): for a document asking for the newest page (`first`
    at most), the page's nodes from each profile's embedded list."""
    get = arguments.get
    if not _asks_newest(get("after"), get("before"), get("last"), get("types"), get("channels")):
        return None
    first = get("first")

    def nodes(source: Profile, context: Any) -> list[domain.Interaction] | None:
        size = _newest_size(first, context.services.settings.max_page_size)
        return None if size is None else embedded_newest(source.profile, size)

    return nodes


def interaction_cursor(interaction: domain.Interaction) -> str:
    return encode_cursor(INTERACTION_CURSOR, f"{to_iso(interaction.timestamp)}|{interaction.message_id}")


def interaction_position(cursor: str, field: str = "after") -> InteractionPosition:
    stamp, _, message_id = decode_cursor(INTERACTION_CURSOR, cursor, field=field).partition("|")
    try:
        at = datetime.fromisoformat(stamp.replace("Z", "+00:00"))
        if at.tzinfo is None:  # every cursor given holds its offset: one edited by hand (compared with aware times)
            raise ValueError(stamp)
        return InteractionPosition(at.astimezone(UTC), message_id)
    except (ValueError, OverflowError):  # OverflowError: year 1 at +01:00, before the first instant
        raise foreign_cursor(field) from None


@strawberry.type(description="One customer: identity, descriptive, behavioural and qualitative data.")
class Profile(Node):
    profile: strawberry.Private[domain.Profile]
    id: strawberry.ID
    gender: str | None
    language: str | None
    company: str | None
    job_title: str | None

    # Built when selected, not with the profile: a list of profiles asking for a name alone (a segment's
    # history, its members) would otherwise build every profile's counters, consents and ratings.
    @strawberry.field
    def qualitative(self) -> Qualitative:
        quality = self.profile.qualitative
        return Qualitative(
            nps_score=quality.nps_score,
            nps_at=quality.nps_at,
            average_rating=quality.average_rating,
            rating_count=quality.rating_count,
            ratings=[Rating(rating=r.rating, at=r.at, named=r.product_id, written=r.comment) for r in quality.ratings],
            stated=quality.preferences,
        )

    @strawberry.field
    def consents(self) -> list[Consent]:
        return [
            Consent(purpose=purpose, granted=c.granted, source=c.source, at=c.at)
            for purpose, c in sorted(self.profile.consents.items())
        ]

    @strawberry.field
    def stats(self) -> Stats:
        return Stats.from_domain(self.profile.stats)

    @strawberry.field
    def rfm(self) -> Rfm | None:
        return Rfm.from_domain(self.profile.rfm) if self.profile.rfm else None

    @strawberry.field
    def computed(self) -> ComputedTraits | None:
        return ComputedTraits.from_domain(self.profile.computed) if self.profile.computed else None

    @strawberry.field
    def segments(self) -> list[strawberry.ID]:
        return [strawberry.ID(s) for s in self.profile.segments]

    @strawberry.field
    def version(self) -> int:
        return self.profile.version

    @strawberry.field
    def created_at(self) -> datetime:
        return self.profile.created_at

    @strawberry.field
    def updated_at(self) -> datetime:
        return self.profile.updated_at

    # -- personal data: masked without the read:pii scope (never silently left out) ------------
    @strawberry.field(description="Free-form traits of this business; personal data in them masked without read:pii.")
    def traits(self, info: Info) -> JSON:
        return JSON(visible(info, self.profile.traits, attributes=True))

    @strawberry.field(description="True when personal data below is masked: the key lacks read:pii.")
    def pii_masked(self, info: Info) -> bool:
        return not info.context.may(Scope.READ_PII)

    @strawberry.field(description="Emails and phones masked without read:pii (j***@example.com).")
    def identifiers(self, info: Info) -> list[Identifier]:
        pii = info.context.may(Scope.READ_PII)
        return [
            Identifier(
                type=i.type,
                value=i.value if pii else mask_identifier(i.type, i.value),
                added_at=i.added_at,
                source=i.source,
            )
            for i in self.profile.identifiers
        ]

    @strawberry.field
    def first_name(self, info: Info) -> str | None:
        return _personal(info, self.profile.first_name)

    @strawberry.field
    def last_name(self, info: Info) -> str | None:
        return _personal(info, self.profile.last_name)

    @strawberry.field(description="Null without read:pii (see piiMasked).")
    def birth_date(self, info: Info) -> date | None:
        return self.profile.birth_date if info.context.may(Scope.READ_PII) else None

    @strawberry.field(description="Street lines and postcode masked without read:pii; city and country kept.")
    def addresses(self, info: Info) -> list[Address]:
        pii = info.context.may(Scope.READ_PII)
        found = []
        for a in self.profile.addresses:
            values = a.model_dump()
            if not pii:
                values |= {
                    "street": mask_text(a.street),
                    "line2": mask_text(a.line2),
                    "postcode": mask_text(a.postcode),
                }
            found.append(Address(**values))
        return found

    # Not a coroutine: the embedded list answers most pages (a list of members asking for their last 10
    # interactions), at once; a page past it is awaited, with the rest of its level (the loader).
    @strawberry.field(
        graphql_type=Connection[Interaction],
        description=f"The customer's history, newest first, across every channel ({INTERACTIONS_PAGE} a page "
        "unless first or last says otherwise).",
    )
    @nodes_alone(_newest_nodes)
    def interactions(
        self,
        info: Info,
        first: int | None = None,
        after: str | None = None,
        last: int | None = None,
        before: str | None = None,
        types: list[str] | None = None,
        channels: list[str] | None = None,
    ) -> Connection[Interaction] | Awaitable[Connection[Interaction]]:
        max_page_size = info.context.services.settings.max_page_size
        newest = None
        if _asks_newest(after, before, last, types, channels):
            newest = _newest_page(self.profile, first, max_page_size)
        if newest is not None:
            return self._interaction_connection(info, newest, _EVERY_ONE)
        usual = _usual_size(max_page_size)
        window = page_window(first, after, last, before, default=usual, position=interaction_position)
        where = InteractionFilter.named(types, channels) if types or channels else _EVERY_ONE
        page = embedded_page(self.profile, window, where=where, max_page_size=max_page_size)
        if page is None:  # past the embedded list: the full history, read for every parent at once
            return self._history_page(info, window, where)
        return self._interaction_connection(info, page, where)

    async def _history_page(
        self, info: Info, window: HistoryWindow, where: InteractionFilter
    ) -> Connection[Interaction]:
        read = await info.context.loaders(info).history.load(HistoryPage(self.profile.id, window, where))
        return self._interaction_connection(info, page_of(read, window), where)

    def _interaction_connection(
        self, info: Info, page: InteractionPage, where: InteractionFilter
    ) -> Connection[Interaction]:
        known = embedded_count(self.profile, where)
        return connection(
            page.interactions,
            has_next=page.has_next,
            has_previous=page.has_previous,
            cursor=interaction_cursor,
            node=None,  # the domain's interactions are the nodes (see Interaction)
            count=counted(known)
            if known is not None
            else lambda: info.context.loaders(info).interaction_count.load(InteractionCount(self.profile.id, where)),
        )

    @strawberry.field(
        description="The segments the profile is a member of now, with since when (one read for a whole list)."
    )
    async def segment_memberships(
        self, info: Info
    ) -> list[Annotated[SegmentMembership, strawberry.lazy("graphql_schema.types.segment")]]:
        from graphql_schema.types.segment import Segment, SegmentMembership  # that module imports this one

        loaders = info.context.loaders(info)
        entries = await loaders.segment_entries.load(self.profile.id)
        segments = await loaders.segment.load_many(self.profile.segments)
        return [SegmentMembership(segment=Segment.from_domain(s), since=entries.get(s.id)) for s in segments if s]

    @strawberry.field(
        description="What Query.recommendations(profileId) gives for this profile: products to show, best first "
        "(at most 50), with their reasons; without the personalisation consent, best sellers only, each saying so."
    )
    async def recommendations(self, info: Info, first: int = 10) -> list[Recommendation]:
        services = info.context.services
        found = await recommendations.recommendations_for(
            services.store, self.profile, first=first, exclude_days=services.settings.recommendations_exclude_days
        )
        return [Recommendation.from_domain(r) for r in found]

    @strawberry.field(
        description="The newest `last` consent decisions, newest first (with those of profiles merged in); "
        "every one is in exportProfile."
    )
    async def consent_history(self, info: Info, last: int | None = None) -> list[ConsentDecision]:
        # A banner's decision with every visit: unbounded, the list was megabytes of one answer.
        max_page_size = info.context.services.settings.max_page_size
        page = min(CONSENT_HISTORY_PAGE, max_page_size) if last is None else last
        profiles.check_page_size(page, maximum=max_page_size, field="last")
        decisions = await info.context.loaders(info).consent_history.load(ConsentPage(self.profile.id, page))
        return [ConsentDecision.from_domain(d) for d in decisions]

    @strawberry.field(description="Every merge and unmerge this profile took part in, oldest first.")
    async def merge_history(self, info: Info) -> list[Merge]:
        records = await info.context.loaders(info).merge_history.load(self.profile.id)
        return [Merge.from_domain(r) for r in records]

    @strawberry.field(description="Automatic merges that merge protection refused for this profile.")
    async def merge_refusals(self, info: Info) -> list[MergeRefusal]:
        refusals = await info.context.loaders(info).merge_refusals.load(self.profile.id)
        return [MergeRefusal.from_domain(r) for r in refusals]

    @classmethod
    def from_domain(cls, profile: domain.Profile) -> Profile:
        # Made as the generated __init__ makes it (attributes set in its order), without a call by
        # keywords: half the cost, for each of the 500 profiles of a segment's history.
        made = object.__new__(cls)
        made.id, made.profile = strawberry.ID(profile.id), profile
        made.gender, made.language, made.company, made.job_title = (
            profile.gender,
            profile.language,
            profile.company,
            profile.job_title,
        )
        return made


async def profile_connection(info: Info, query: ProfileFilter, window: Window[str]) -> Connection[Profile]:
    """A page of live profiles matching `query`, ordered by id, as a Relay connection."""
    services = info.context.services
    page = await profiles.list_profiles(services.store, query, window, max_page_size=services.settings.max_page_size)
    return page_connection(page, cursor_name=PROFILE_CURSOR, count=lambda: services.store.count_profiles(query))


def id_window(
    cursor_name: str, first: int | None, after: str | None, last: int | None, before: str | None, *, default: int
) -> Window[str]:
    """The window of a list of profiles ordered by id, its cursors of `cursor_name`."""
    return page_window(
        first,
        after,
        last,
        before,
        default=default,
        position=lambda cursor, field: decode_cursor(cursor_name, cursor, field=field),
    )


def page_connection(page: profiles.Page, *, cursor_name: str, count: Count) -> Connection[Profile]:
    """A page of profiles ordered by id as a Relay connection."""
    return connection(
        page.profiles,
        has_next=page.has_next,
        has_previous=page.has_previous,
        cursor=lambda p: encode_cursor(cursor_name, p.id),
        node=Profile.from_domain,
        count=count,
    )
