"""GraphQL inputs, and their translation into the domain's raw input types."""

from __future__ import annotations

from datetime import date, datetime
from decimal import ROUND_CEILING, ROUND_FLOOR, Decimal
from enum import Enum
from typing import Any

import strawberry
from strawberry.scalars import JSON

from app.domain.errors import InvalidInput
from app.domain.event_limits import is_valid_unicode
from app.domain.events import RawEvent, RawIdentifier
from app.domain.identifiers import checked_type
from app.domain.profile_query import MAX_FILTER_TEXT, ProfileFilter, StatsField, StatsRange


@strawberry.input
class IdentifierInput:
    type: str = strawberry.field(
        description="email, phone, customerId, anonymousId, deviceId, loyaltyId or a custom type"
    )
    value: str


@strawberry.input(description="One event from any channel. `messageId` makes re-sending it harmless.")
class EventInput:
    message_id: str
    type: str = strawberry.field(description="identify, page_view, product_view, add_to_cart, cart_abandoned, …")
    channel: str = strawberry.field(description="web, mobile, email, store, call_center or customer_service")
    timestamp: datetime
    identifiers: list[IdentifierInput]
    properties: JSON | None = None

    def to_raw(self) -> RawEvent:
        return RawEvent(
            message_id=self.message_id,
            type=self.type,
            channel=self.channel,
            timestamp=self.timestamp,
            identifiers=raw_identifiers(self.identifiers),
            properties=self.properties if self.properties is not None else {},
        )


def raw_identifiers(identifiers: list[IdentifierInput]) -> list[RawIdentifier]:
    return [RawIdentifier(i.type, i.value) for i in identifiers]


def raw_events(coerced: list[dict[str, Any]]) -> list[RawEvent]:
    """`[EventInput!]!` as graphql-core coerced it (GraphQL names, parsed scalars) into what
    `EventInput.to_raw` makes of it, without Strawberry's per-field conversion (compiled execution)."""
    return [
        RawEvent(
            message_id=e["messageId"],
            type=e["type"],
            channel=e["channel"],
            timestamp=e["timestamp"],
            identifiers=[RawIdentifier(i["type"], i["value"]) for i in e["identifiers"]],
            properties=properties if (properties := e.get("properties")) is not None else {},
        )
        for e in coerced
    ]


@strawberry.input
class AddressInput:
    kind: str | None = None
    street: str | None = None
    line2: str | None = strawberry.field(
        default=None, description="A second street line: flat, building, floor, care of."
    )
    city: str | None = None
    postcode: str | None = None
    region: str | None = None
    country: str | None = strawberry.field(default=None, description="ISO 3166-1 alpha-2, e.g. FR")


@strawberry.input(
    description="A direct profile write (CRM import). Omitted fields stay as they are; a field given as null is "
    "cleared (traits and preferences: null changes nothing, a key given null holds null)."
)
class ProfileInput:
    identifiers: list[IdentifierInput]
    # Left out: unchanged; null: cleared (traits and preferences: null changes nothing, a key set to
    # null is kept as null).
    first_name: str | None = strawberry.field(
        default=strawberry.UNSET,
        description='Given as its initials ("M." where the profile holds "Marie"), it leaves the full name as it is',
    )
    last_name: str | None = strawberry.UNSET
    birth_date: date | None = strawberry.UNSET
    gender: str | None = strawberry.UNSET
    language: str | None = strawberry.UNSET
    company: str | None = strawberry.UNSET
    job_title: str | None = strawberry.UNSET
    addresses: list[AddressInput] | None = strawberry.UNSET
    traits: JSON | None = None
    preferences: JSON | None = None
    source: str = strawberry.field(
        default="upsert", description="Where this data comes from (e.g. crm): ranked by the SOURCE_PRIORITY merge rule"
    )

    def fields(self) -> dict[str, Any]:
        """The fields given, a null one as None (cleared); those left out are not in it."""
        values: dict[str, Any] = {
            "first_name": self.first_name,
            "last_name": self.last_name,
            "birth_date": self.birth_date,
            "gender": self.gender,
            "language": self.language,
            "company": self.company,
            "job_title": self.job_title,
            "addresses": [vars(a) for a in self.addresses] if self.addresses else self.addresses,
        }
        given = {name: value for name, value in values.items() if value is not strawberry.UNSET}
        free_form = {"traits": self.traits, "preferences": self.preferences}
        return given | {name: value for name, value in free_form.items() if value is not None}


@strawberry.enum
class StatsFilterField(Enum):
    ORDERS = "orders"
    REVENUE = "revenue"
    RETURNS = "returns"
    CART_ABANDONS = "cartAbandons"
    EMAIL_OPENS = "emailOpens"
    EMAIL_CLICKS = "emailClicks"
    VISITS = "visits"
    PAGE_VIEWS = "pageViews"
    PRODUCT_VIEWS = "productViews"
    SUPPORT_CONTACTS = "supportContacts"
    EVENTS_TOTAL = "eventsTotal"


@strawberry.input
class StatsRangeInput:
    field: StatsFilterField
    min: float | None = None
    max: float | None = None


@strawberry.input(description="Typed filters, combined with AND.")
class ProfileFilterInput:
    identifier_type: str | None = strawberry.field(default=None, description="has an identifier of this type")
    name: str | None = strawberry.field(default=None, description="first or last name starts with (any case)")
    city: str | None = None
    segment: strawberry.ID | None = None
    stats: list[StatsRangeInput] | None = None

    def to_domain(self) -> ProfileFilter:
        for name, text in (
            ("identifierType", self.identifier_type),
            ("name", self.name),
            ("city", self.city),
            ("segment", self.segment),
        ):
            if text is not None and len(text) > MAX_FILTER_TEXT:
                raise InvalidInput(
                    f"filter.{name} is longer than {MAX_FILTER_TEXT} characters ({len(text):,})", field=f"filter.{name}"
                )
            if text is not None and not is_valid_unicode(text):
                raise InvalidInput(
                    f"filter.{name} is not valid Unicode (it holds a lone surrogate)", field=f"filter.{name}"
                )
            if text is not None and "\x00" in text:  # no stored name holds one; MongoDB refuses it in a pattern
                raise InvalidInput(f"filter.{name} holds a NUL character", field=f"filter.{name}")
        identifier_type = None
        if self.identifier_type is not None:  # a type nobody can hold matched nobody, silently
            identifier_type = checked_type(self.identifier_type, field="filter.identifierType")
        ranges, fields = [], set()
        for index, bound in enumerate(self.stats or []):
            if bound.min is None and bound.max is None:
                raise InvalidInput("give min, max or both", field=f"filter.stats[{index}]")
            if bound.field in fields:  # thousands of ranges made an SQL expression too deep to run
                raise InvalidInput(
                    f"{bound.field.value} has a range already: give one range per field", field=f"filter.stats[{index}]"
                )
            fields.add(bound.field)
            if bound.field is StatsFilterField.REVENUE:
                # Revenue is kept in cents; the API speaks currency units.
                ranges.append(
                    StatsRange(
                        StatsField.REVENUE_CENTS, _cents(bound.min, ROUND_CEILING), _cents(bound.max, ROUND_FLOOR)
                    )
                )
            else:
                ranges.append(StatsRange(StatsField(bound.field.value), bound.min, bound.max))
        return ProfileFilter(
            identifier_type=identifier_type,
            name_prefix=self.name.strip() if self.name and self.name.strip() else None,
            city=self.city.strip() if self.city and self.city.strip() else None,
            segment=self.segment,
            stats=tuple(ranges),
        )


def _cents(amount: float | None, rounding: str) -> float | None:
    """A bound in currency units as whole cents, taken inward (`min` up, `max` down): as a float product,
    0.29 * 100 is 28.999…, and a profile of 0.29 was left out of `min: 0.29, max: 0.29`."""
    if amount is None:
        return None
    return float((Decimal(str(amount)) * 100).to_integral_value(rounding=rounding))
