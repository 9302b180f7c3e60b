"""The customer profile as stored: one document per customer, identical in both backends.

Field names are the document keys (camelCase, as in MongoDB); Python code uses snake_case through
pydantic aliases. Derived values (average order value, revenue in currency units) are computed on
read, never stored, so they cannot drift from the counters they come from.
"""

from __future__ import annotations

from datetime import date
from datetime import datetime as _datetime
from typing import Annotated, Any

import orjson
from pydantic import AfterValidator, BaseModel, BeforeValidator, ConfigDict, Field, ValidationError, ValidationInfo
from pydantic.alias_generators import to_camel

from app.domain.clock import utc_ms
from app.domain.event_limits import MAX_STORED_DEPTH, readable

# Documents known to hold nothing to walk (a stored text too short to nest anything past
# MAX_STORED_DEPTH) are loaded with this context: their times are already UTC milliseconds and their
# free-form data cannot be too deep, so neither is walked.
TRUSTED = {"trusted": True}
# A document the embedded store wrote (app/store/documents.py writes each time as clock.to_iso gives
# it: UTC, milliseconds): its times are read as they are, its free-form data is cut.
_OWN_TEXT = {"times": True}


def _stored_time(moment: _datetime, info: ValidationInfo) -> _datetime:
    return moment if info.context is TRUSTED or info.context is _OWN_TEXT else utc_ms(moment)


def _stored_free_form(value: dict[str, Any], info: ValidationInfo) -> dict[str, Any]:
    return value if info.context is TRUSTED else readable(value)


# Every stored time is aware UTC with millisecond precision, whichever backend it came from
# (BSON dates read back naive from some drivers and fakes, and carry milliseconds only).
datetime = Annotated[_datetime, AfterValidator(_stored_time)]
# Free-form JSON (event properties, traits, preferences), read with anything nested deeper than any
# write accepts cut: an older version stored such data, and it must not make every read fail.
FreeForm = Annotated[dict[str, Any], AfterValidator(_stored_free_form)]

RECENT_INTERACTIONS_CAP = 50
RECENT_RATINGS_CAP = 20


class StoredModel(BaseModel):
    # A stored document that no longer validates (damaged, or read by a stricter version) is an
    # internal error, logged with its traceback: without its values (a customer's email, birth date),
    # which pydantic's message would otherwise quote.
    model_config = ConfigDict(
        alias_generator=to_camel, populate_by_name=True, extra="ignore", hide_input_in_errors=True
    )


class IdentifierRecord(StoredModel):
    type: str
    value: str
    added_at: datetime
    source: str | None = None


class Address(StoredModel):
    kind: str | None = None
    street: str | None = None
    line2: str | None = None  # a second street line: flat, building, floor, care of
    city: str | None = None
    postcode: str | None = None
    region: str | None = None
    country: str | None = None


class Consent(StoredModel):
    granted: bool
    source: str | None = None
    at: datetime


def _as_text(value: Any) -> Any:
    """A rating's product id or comment as text: versions before the survey's properties were typed
    stored them as sent (a number, an object), and the profile read back no more."""
    return value if value is None or isinstance(value, str) else orjson.dumps(value).decode()


class Rating(StoredModel):
    rating: int
    at: datetime
    product_id: Annotated[str | None, BeforeValidator(_as_text)] = None
    comment: Annotated[str | None, BeforeValidator(_as_text)] = None


class Qualitative(StoredModel):
    nps_score: int | None = None
    nps_at: datetime | None = None
    rating_count: int = 0
    rating_sum: int = 0
    ratings: list[Rating] = Field(default_factory=list)
    preferences: FreeForm = Field(default_factory=dict)

    @property
    def average_rating(self) -> float | None:
        return round(self.rating_sum / self.rating_count, 2) if self.rating_count else None


class Stats(StoredModel):
    events_total: int = 0
    orders: int = 0
    revenue_cents: int = 0
    items_purchased: int = 0
    first_order_at: datetime | None = None
    last_order_at: datetime | None = None
    returns: int = 0
    returned_cents: int = 0
    add_to_carts: int = 0
    cart_abandons: int = 0
    last_cart_abandon_at: datetime | None = None
    email_opens: int = 0
    email_clicks: int = 0
    email_replies: int = 0
    visits: int = 0
    last_visit_at: datetime | None = None
    page_views: int = 0
    product_views: int = 0
    support_contacts: int = 0
    survey_responses: int = 0
    first_seen_at: datetime | None = None
    last_seen_at: datetime | None = None
    channels: dict[str, int] = Field(default_factory=dict)

    @property
    def average_order_value_cents(self) -> int | None:
        return round(self.revenue_cents / self.orders) if self.orders else None


class Rfm(StoredModel):
    """Recency, frequency and monetary scores (1-5, 5 best) and the named RFM segment they place the
    customer in; written by the computed-traits job, absent until it has run."""

    recency_score: int | None = None
    frequency_score: int | None = None
    monetary_score: int | None = None
    segment: str | None = None
    computed_at: datetime | None = None


class Engagement(StoredModel):
    """Activity rates since the customer was first seen (a span of at least a week, or a month for
    email). Campaign sends are not ingested, so an open rate per email received cannot be known:
    email engagement is opens per month and the share of opens followed by a click."""

    email_opens_per_month: float = 0.0
    email_click_to_open_rate: float | None = None
    visits_per_week: float = 0.0
    events_per_week: dict[str, float] = Field(default_factory=dict)  # by channel


class CategoryAffinity(StoredModel):
    category: str
    score: float  # share of the customer's weighted views, cart adds and purchases


class ComputedTraits(StoredModel):
    """Traits derived by the computed-traits job (app/services/traits.py) besides `rfm`."""

    engagement: Engagement = Field(default_factory=Engagement)
    preferred_categories: list[CategoryAffinity] = Field(default_factory=list)
    next_order_at: datetime | None = None
    computed_at: datetime | None = None


class Interaction(StoredModel):
    message_id: str
    type: str
    channel: str
    timestamp: datetime
    properties: FreeForm = Field(default_factory=dict)
    # Where the event first landed, when, and the identifier keys it carried: what an unmerge
    # needs to send each interaction back to the right profile.
    origin: str | None = None
    received_at: datetime | None = None
    identifiers: list[str] = Field(default_factory=list)


class Profile(StoredModel):
    id: str = Field(alias="_id")
    identifiers: list[IdentifierRecord] = Field(default_factory=list)
    first_name: str | None = None
    last_name: str | None = None
    birth_date: date | None = None
    gender: str | None = None
    language: str | None = None
    addresses: list[Address] = Field(default_factory=list)
    company: str | None = None
    job_title: str | None = None
    traits: FreeForm = Field(default_factory=dict)
    qualitative: Qualitative = Field(default_factory=Qualitative)
    consents: dict[str, Consent] = Field(default_factory=dict)
    stats: Stats = Field(default_factory=Stats)
    # When and from where each identity/descriptive field was last set (`traits:<name>` for traits):
    # what the merge reconciliation rules MOST_RECENT, OLDEST and SOURCE_PRIORITY decide on.
    field_times: dict[str, datetime] = Field(default_factory=dict)
    field_sources: dict[str, str] = Field(default_factory=dict)
    rfm: Rfm | None = None
    computed: ComputedTraits | None = None
    segments: list[str] = Field(default_factory=list)
    # Derived from the identity fields on every write (app/domain/matching/index.py): what the stores
    # index so that fuzzy merge candidates are found by key, never by comparing all pairs.
    blocking_keys: list[str] = Field(default_factory=list)
    recent: list[Interaction] = Field(default_factory=list)
    version: int = 0
    created_at: datetime
    updated_at: datetime
    merged_into: str | None = None

    @classmethod
    def from_document(cls, document: dict[str, Any]) -> Profile:
        return cls.model_validate(document)

    @classmethod
    def for_change(cls, document: dict[str, Any]) -> Profile:
        """The profile of a stored document (in either store's form) without its recent list: what a
        change is computed from (an event's effects, new identifiers, blocking keys) never reads it,
        and it is most of what decoding a document costs (a demo profile: ~600 µs whole, ~130 µs
        without). Written back only by a replay, which sets its recent list anew (merges and unmerges:
        app/domain/history_rebuild.py); a batch writes the document it changed. Its times are UTC
        milliseconds already (as the store wrote them, or a validated profile made them), so they are
        not walked again; its free-form data is."""
        return cls.model_validate({key: value for key, value in document.items() if key != "recent"}, context=_OWN_TEXT)

    @classmethod
    def from_own_json(cls, text: str) -> Profile:
        """A document as the embedded store wrote it (each time as clock.to_iso gives it): its times
        are not walked again, nor its free-form data when the text has too few brackets to nest
        anything past MAX_STORED_DEPTH (then pydantic parses the text itself, as it does for the rest:
        a profile with a full history has more brackets than that, and its free-form data is walked)."""
        if text.count("{") + text.count("[") <= MAX_STORED_DEPTH:
            return cls.model_validate_json(text, context=TRUSTED)
        try:
            return cls.model_validate_json(text, context=_OWN_TEXT)
        except ValidationError:
            # Nested past pydantic's parser limit (an older version stored such data) or invalid:
            # decoded by orjson, which reads deeper, and the free-form data cut.
            return cls.model_validate(orjson.loads(text), context=_OWN_TEXT)

    def to_document(self) -> dict[str, Any]:
        """The stored form: camelCase keys, no nulls (a missing field reads as null in MongoDB and
        `$max`/`$min` then simply set it), Python dates and datetimes (each store encodes them)."""
        document = self.model_dump(by_alias=True, exclude_none=True)
        if self.birth_date is not None:
            document["birthDate"] = self.birth_date.isoformat()
        return document

    def identifier_keys(self) -> set[str]:
        return {f"{record.type}:{record.value}" for record in self.identifiers}


def new_profile(profile_id: str, at: _datetime) -> Profile:
    return Profile(_id=profile_id, created_at=at, updated_at=at)
