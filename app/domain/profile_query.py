"""Typed queries over profiles and interactions. Stores translate these, and only these, into
database queries: no client-supplied operator ever reaches a backend."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum
from typing import Any

from app.domain.errors import InvalidInput
from app.domain.events import Channel, EventType


class StatsField(StrEnum):
    """Stats a profile list can be filtered on (document path under `stats`)."""

    ORDERS = "orders"
    REVENUE_CENTS = "revenueCents"
    RETURNS = "returns"
    CART_ABANDONS = "cartAbandons"
    EMAIL_OPENS = "emailOpens"
    EMAIL_CLICKS = "emailClicks"
    VISITS = "visits"
    PAGE_VIEWS = "pageViews"
    PRODUCT_VIEWS = "productViews"
    SUPPORT_CONTACTS = "supportContacts"
    EVENTS_TOTAL = "eventsTotal"


@dataclass(frozen=True, slots=True)
class StatsRange:
    field: StatsField
    min: float | None = None
    max: float | None = None


FINAL_SIGMA, SIGMA = "\u03c2", "\u03c3"


def folded(text: str) -> str:
    """`text` as a filter compares names and cities, in either store: lower case, with the Greek final
    sigma (U+03C2) as a sigma (U+03C3). lower() writes a capital sigma that ends a word as the final
    one, so a name prefix typed in capitals (`ΟΔΥΣ`) missed the name it begins (Odysseas in Greek).
    (casefold() would go further than a case-insensitive match: ß as ss.)"""
    return text.lower().replace(FINAL_SIGMA, SIGMA)


def folded_value(value: Any) -> str | None:
    """A stored name or city `folded` (None when it is no text: absent, or damaged)."""
    return folded(value) if isinstance(value, str) else None


def folded_cities(addresses: Any) -> set[str]:
    """The cities of a stored document's addresses, each `folded`: what a city filter compares."""
    found = (folded_value(a.get("city")) for a in addresses or () if isinstance(a, Mapping))
    return {city for city in found if city is not None}


# Longest text a filter compares (a name prefix, a city, an identifier type, a segment id): longer is
# no one's name, and SQLite refuses a LIKE pattern past 50,000 bytes with an error of its own.
MAX_FILTER_TEXT = 256


@dataclass(frozen=True, slots=True)
class ProfileFilter:
    identifier_type: str | None = None
    name_prefix: str | None = None  # matches first or last name, case-insensitively
    city: str | None = None  # exact, case-insensitive
    segment: str | None = None
    stats: tuple[StatsRange, ...] = field(default_factory=tuple)

    def comparisons(self) -> list[tuple[str, str, str]]:
        """The profile paths the filter compares, each with the operator and the value compared
        (personal ones need read:pii)."""
        if not self.name_prefix:
            return []
        return [("firstName", "startsWith", self.name_prefix), ("lastName", "startsWith", self.name_prefix)]


@dataclass(frozen=True, slots=True)
class InteractionPosition:
    """Where a page of history stops: interactions are ordered newest first by (timestamp, messageId)."""

    timestamp: datetime
    message_id: str


@dataclass(frozen=True, slots=True)
class InteractionFilter:
    types: frozenset[str] = frozenset()
    channels: frozenset[str] = frozenset()

    @classmethod
    def named(cls, types: Iterable[str] | None, channels: Iterable[str] | None) -> InteractionFilter:
        """A filter from a caller's names, each a known event type or channel: a typo would match
        nothing, silently, and a list of any length made a new SQL text the embedded store kept
        prepared on each connection (thousands of names: hundreds of MB that never came back)."""
        return cls(_known(types, EventType, "types", "event type"), _known(channels, Channel, "channels", "channel"))

    def matches(self, type_: str, channel: str) -> bool:
        return (not self.types or type_ in self.types) and (not self.channels or channel in self.channels)

    @property
    def everything(self) -> bool:
        """No type or channel given: every interaction matches."""
        return not self.types and not self.channels


def _known(names: Iterable[str] | None, kind: type[StrEnum], field: str, noun: str) -> frozenset[str]:
    given = frozenset(names or ())
    unknown = sorted(given - {member.value for member in kind})
    if unknown:
        known = ", ".join(member.value for member in kind)
        raise InvalidInput(f"{field}: unknown {noun} {unknown[0][:64]!r} (known: {known})", field=field)
    return given
