"""Events as the server accepts them: types, channels, and the properties each type must carry.

`parse_event` turns raw input into an `Event` or raises `InvalidInput` naming the field, so that the
ingestion service can report `REJECTED` with a reason and write nothing for that event. Every value
is checked against the event limits (app/domain/event_limits.py) first, and numbers the server sums
or shows as GraphQL Int are bounded here, so no accepted event can fail a store or a later read.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from decimal import ROUND_HALF_UP, Decimal
from enum import StrEnum
from typing import Annotated, Any

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, ValidationError, field_validator, model_validator

from app.domain.clock import parse_time, utc_ms
from app.domain.errors import InvalidInput, first_problem
from app.domain.event_limits import (
    MAX_AMOUNT,
    MAX_GRAPHQL_INT,
    EventLimits,
    check_properties,
    is_valid_unicode,
    shown,
)
from app.domain.identifiers import Identifier, normalise
from app.domain.keys import check_keys
from app.domain.person_fields import AddressInput, Gender, Language, Organisation, PersonName, checked_birth_date


class EventType(StrEnum):
    IDENTIFY = "identify"
    PAGE_VIEW = "page_view"
    PRODUCT_VIEW = "product_view"
    ADD_TO_CART = "add_to_cart"
    CART_ABANDONED = "cart_abandoned"
    ORDER_COMPLETED = "order_completed"
    ORDER_RETURNED = "order_returned"
    EMAIL_OPEN = "email_open"
    EMAIL_CLICK = "email_click"
    EMAIL_REPLY = "email_reply"
    SUPPORT_CONTACT = "support_contact"
    SURVEY_RESPONSE = "survey_response"
    CONSENT_UPDATE = "consent_update"


class Channel(StrEnum):
    WEB = "web"
    MOBILE = "mobile"
    EMAIL = "email"
    STORE = "store"
    CALL_CENTER = "call_center"
    CUSTOMER_SERVICE = "customer_service"


MAX_MESSAGE_ID_LENGTH = 128
MAX_FUTURE_SKEW = timedelta(minutes=5)
# A replay is the same messageId on the same profile; re-dated by its sender (rounded to the second,
# written in another time zone's wall time), it is still one within this of the first's time.
REPLAY_TIME_SLACK = timedelta(days=1)
# A time a system sends for "no date" (Go's zero time 0001-01-01, a year 0 typo) is no event's: stored,
# it became the profile's last order and last visit, and the visits and windows counted from it.
EARLIEST_EVENT = datetime(1970, 1, 1, tzinfo=UTC)

# Money is summed into 64-bit cents and shown as Float; quantities are summed and shown as GraphQL Int.
# Strict: numbers only. Read leniently, `"total": true` was an order of 1.00, `"nps": true` a
# detractor's answer, and `"total": "1e3"` 1,000.
Amount = Annotated[float, Field(ge=0, le=MAX_AMOUNT, allow_inf_nan=False, strict=True)]


def _whole(value: Any) -> Any:
    """A number written with a decimal part of zero (`2.0`, `1e3`: what an encoder of doubles writes) as
    the integer it is; anything else as it came, for the strict check to judge."""
    return int(value) if type(value) is float and value.is_integer() else value


# Whole numbers only: 2.5 items or an NPS of 7.5 are refused, 2.0 and 7.0 taken.
WholeNumber = Annotated[int, BeforeValidator(_whole), Field(strict=True)]
Quantity = Annotated[WholeNumber, Field(ge=1, le=MAX_GRAPHQL_INT)]
DEFAULT_LIMITS = EventLimits()


class _Properties(BaseModel):
    # Free-form keys are kept: every business sends its own extras.
    model_config = ConfigDict(extra="allow", str_strip_whitespace=True)


class IdentifyProperties(_Properties):
    """The profile fields an identify event sets, held to upsertProfile's bounds (person_fields.py)."""

    firstName: PersonName | None = None
    lastName: PersonName | None = None
    birthDate: str | None = Field(default=None, pattern=r"^\d{4}-\d{2}-\d{2}$")
    gender: Gender | None = None
    language: Language | None = None
    company: Organisation | None = None
    jobTitle: Organisation | None = None
    address: AddressInput | None = None
    traits: dict[str, Any] | None = None

    _trait_keys = field_validator("traits")(check_keys)

    @field_validator("birthDate")
    @classmethod
    def _lived(cls, value: str | None) -> str | None:
        # Kept as the text it is (the event's properties are stored as sent), once it is a real date.
        return None if value is None else checked_birth_date(date.fromisoformat(value)).isoformat()


class PageViewProperties(_Properties):
    url: str = Field(min_length=1)


class ProductViewProperties(_Properties):
    productId: str = Field(min_length=1)
    price: Amount | None = None


class AddToCartProperties(_Properties):
    productId: str = Field(min_length=1)
    quantity: Quantity = 1
    price: Amount | None = None


class CartAbandonedProperties(_Properties):
    value: Amount | None = None


class OrderLine(BaseModel):
    model_config = ConfigDict(extra="allow")
    productId: str = Field(min_length=1)
    quantity: Quantity = 1
    price: Amount


class OrderCompletedProperties(_Properties):
    orderId: str = Field(min_length=1)
    total: Amount
    lines: list[OrderLine] = Field(default_factory=list)


class OrderReturnedProperties(_Properties):
    orderId: str = Field(min_length=1)
    amount: Amount


class EmailProperties(_Properties):
    campaignId: str = Field(min_length=1)


class SupportContactProperties(_Properties):
    satisfaction: WholeNumber | None = Field(default=None, ge=1, le=5)


class SurveyResponseProperties(_Properties):
    nps: WholeNumber | None = Field(default=None, ge=0, le=10)
    rating: WholeNumber | None = Field(default=None, ge=1, le=5)
    # Kept on the profile's ratings as text: a number there (a shop's numeric product id) was stored
    # as sent, and the profile read back no more (its reads, upserts, export and erasure all failed).
    productId: str | None = Field(default=None, min_length=1, strict=True)
    comment: str | None = Field(default=None, strict=True)

    @model_validator(mode="after")
    def _needs_an_answer(self) -> SurveyResponseProperties:
        if self.nps is None and self.rating is None:
            raise ValueError("a survey response needs `nps` (0-10) or `rating` (1-5)")
        return self


class ConsentUpdateProperties(_Properties):
    purpose: str = Field(min_length=1, max_length=64, pattern=r"^[a-z][a-z0-9_]*$")
    granted: bool = Field(strict=True)  # true or false: "no", 0 or "off" were read as a decision


PROPERTIES_BY_TYPE: dict[EventType, type[_Properties]] = {
    EventType.IDENTIFY: IdentifyProperties,
    EventType.PAGE_VIEW: PageViewProperties,
    EventType.PRODUCT_VIEW: ProductViewProperties,
    EventType.ADD_TO_CART: AddToCartProperties,
    EventType.CART_ABANDONED: CartAbandonedProperties,
    EventType.ORDER_COMPLETED: OrderCompletedProperties,
    EventType.ORDER_RETURNED: OrderReturnedProperties,
    EventType.EMAIL_OPEN: EmailProperties,
    EventType.EMAIL_CLICK: EmailProperties,
    EventType.EMAIL_REPLY: EmailProperties,
    EventType.SUPPORT_CONTACT: SupportContactProperties,
    EventType.SURVEY_RESPONSE: SurveyResponseProperties,
    EventType.CONSENT_UPDATE: ConsentUpdateProperties,
}


# By value, as clients send them: a dict lookup, where EventType(value) costs an enum call per event.
_EVENT_TYPES: dict[object, EventType] = {kind.value: kind for kind in EventType}
_CHANNELS: dict[object, Channel] = {channel.value: channel for channel in Channel}


@dataclass(frozen=True, slots=True)
class RawIdentifier:
    type: str
    value: str


@dataclass(frozen=True, slots=True)
class RawEvent:
    """An event as a client sent it, before any validation."""

    message_id: str
    type: str
    channel: str
    timestamp: datetime | str  # as the API takes it: text, read with this event alone (parse_event)
    identifiers: list[RawIdentifier]
    properties: Any  # validated against the event type's model; anything else is rejected


@dataclass(frozen=True, slots=True)
class Event:
    message_id: str
    type: EventType
    channel: Channel
    timestamp: datetime
    identifiers: list[Identifier]
    properties: dict[str, Any]


def parse_event(raw: RawEvent, *, now: datetime, limits: EventLimits = DEFAULT_LIMITS) -> Event:
    message_id = raw.message_id.strip()
    if not message_id or len(message_id) > MAX_MESSAGE_ID_LENGTH:
        raise InvalidInput(f"messageId must be 1-{MAX_MESSAGE_ID_LENGTH} characters", field="messageId")
    if not is_valid_unicode(message_id):
        raise InvalidInput("messageId is not valid Unicode (it holds a lone surrogate)", field="messageId")
    event_type = _EVENT_TYPES.get(raw.type) if isinstance(raw.type, str) else None
    if event_type is None:
        raise InvalidInput(f"unknown event type {raw.type!r}; expected one of {', '.join(EventType)}", field="type")
    channel = _CHANNELS.get(raw.channel) if isinstance(raw.channel, str) else None
    if channel is None:
        raise InvalidInput(f"unknown channel {raw.channel!r}; expected one of {', '.join(Channel)}", field="channel")
    try:
        timestamp = utc_ms(raw.timestamp if isinstance(raw.timestamp, datetime) else _time(raw.timestamp))
    except OverflowError:  # year 1 or 9999 with an offset: no such time in UTC
        raise InvalidInput("timestamp is out of range", field="timestamp") from None
    if timestamp > now + MAX_FUTURE_SKEW:
        raise InvalidInput("timestamp is in the future", field="timestamp")
    if timestamp < EARLIEST_EVENT:
        raise InvalidInput(
            f"timestamp is before {EARLIEST_EVENT:%Y-%m-%d}: no customer event is that old", field="timestamp"
        )
    if not raw.identifiers:
        raise InvalidInput("an event needs at least one identifier", field="identifiers")
    identifiers = normalise_all(raw.identifiers)
    check_properties(raw.properties, limits)
    model = PROPERTIES_BY_TYPE[event_type]
    try:
        properties = model.model_validate(raw.properties).model_dump(exclude_none=True)
    except ValidationError as exc:
        path, message = first_problem(exc, prefix="properties")
        raise InvalidInput(message, field=path) from None
    return Event(message_id, event_type, channel, timestamp, identifiers, properties)


def _time(text: str) -> datetime:
    """An event's timestamp as sent: a text that is no ISO 8601 date-time rejects this event alone (as a
    DateTime in the schema, it failed the whole batch's variables)."""
    try:
        return parse_time(text)
    except (ValueError, OverflowError):
        raise InvalidInput(f"not an ISO 8601 date-time: {shown(text, at_most=40)!r}", field="timestamp") from None


# Identifiers one event or upsert may carry: a person's email, phone, customer and loyalty ids, a few
# devices. 5,000 emails in one event made one profile of them (merge protection counts only merges),
# and every later event of that person read and wrote them all.
MAX_IDENTIFIERS = 20


def normalise_all(raw: list[RawIdentifier], *, field: str = "identifiers") -> list[Identifier]:
    """Normalise and de-duplicate identifiers, keeping the caller's order."""
    if len(raw) > MAX_IDENTIFIERS:
        raise InvalidInput(f"at most {MAX_IDENTIFIERS} identifiers, got {len(raw):,}", field=field)
    if len(raw) == 1:  # the usual event: no field name to format unless it is refused
        try:
            return [normalise(raw[0].type, raw[0].value)]
        except InvalidInput:
            pass  # raised again below, naming its place
    seen: dict[str, Identifier] = {}
    for index, item in enumerate(raw):
        identifier = normalise(item.type, item.value, field=f"{field}[{index}]")
        seen.setdefault(identifier.key, identifier)
    return list(seen.values())


def to_minor_units(amount: float) -> int:
    """Money is summed in cents: float totals drift, integers do not."""
    return int((Decimal(str(amount)) * 100).quantize(Decimal(1), rounding=ROUND_HALF_UP))
