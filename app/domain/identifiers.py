"""Identifiers: the types we know, how their values are normalised, and the identity key.

An identity key is `"<type>:<normalised value>"`; it is the primary key of the `identities`
collection, so two profiles can never claim the same identifier.
"""

from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass
from enum import StrEnum
from functools import lru_cache

import phonenumbers
from email_validator import SPECIAL_USE_DOMAIN_NAMES, EmailNotValidError, validate_email

from app.domain.errors import InvalidInput
from app.domain.event_limits import is_valid_unicode


class KnownIdentifierType(StrEnum):
    CUSTOMER_ID = "customerId"
    EMAIL = "email"
    PHONE = "phone"
    LOYALTY_ID = "loyaltyId"
    DEVICE_ID = "deviceId"
    ANONYMOUS_ID = "anonymousId"


# Strongest first: an event whose identifiers point at several profiles goes to the profile of
# the strongest one. Custom types rank after loyaltyId and before the device/anonymous ones.
STRENGTH_ORDER: tuple[str, ...] = (
    KnownIdentifierType.CUSTOMER_ID,
    KnownIdentifierType.EMAIL,
    KnownIdentifierType.PHONE,
    KnownIdentifierType.LOYALTY_ID,
    KnownIdentifierType.DEVICE_ID,
    KnownIdentifierType.ANONYMOUS_ID,
)
_CUSTOM_RANK = STRENGTH_ORDER.index(KnownIdentifierType.LOYALTY_ID) + 0.5

_CUSTOM_TYPE = re.compile(r"^[a-z][A-Za-z0-9_]{1,39}\Z")
_KNOWN_BY_CASE = {name.lower(): str(name) for name in STRENGTH_ORDER}
MAX_VALUE_LENGTH = 256
EXTENSION = ";ext="  # a phone's extension after its E.164 number, as RFC 3966 writes it


@dataclass(frozen=True, slots=True)
class Identifier:
    type: str
    value: str

    @property
    def key(self) -> str:
        return f"{self.type}:{self.value}"

    @property
    def strength(self) -> float:
        """Lower is stronger."""
        if self.type in STRENGTH_ORDER:
            return STRENGTH_ORDER.index(self.type)
        return _CUSTOM_RANK


# Identifiers recur (a customer's email arrives with every one of their events) and validating an email
# address costs a quarter of a millisecond: the canonical form of each recent value is remembered.
NORMALISED_CACHE_SIZE = 65536


def normalise(type_: str, value: str, *, field: str = "identifier", default_region: str | None = None) -> Identifier:
    """Validate an identifier and return it in canonical form, or raise InvalidInput naming the part
    at fault within `field` (`identifiers[2].value`; with `field=""`, the part alone: `value`)."""
    result = _canonical(type_, value, default_region)
    if isinstance(result, Identifier):
        return result
    part, message = result
    raise InvalidInput(message, field=f"{field}.{part}" if field else part)


@lru_cache(maxsize=NORMALISED_CACHE_SIZE)
def _canonical(type_: str, value: str, default_region: str | None) -> Identifier | tuple[str, str]:
    """The identifier in canonical form, or (the part at fault, why): a pure function of its
    arguments, so its answers are cached (the field an error names is added by the caller)."""
    try:
        return _validated(type_, value, default_region)
    except InvalidInput as exc:
        return ("type" if exc.field == "type" else "value"), exc.message


def is_identifier_type(type_: str) -> bool:
    """One of the known types, or a custom name (what identifiers, segment conditions and filters take)."""
    return type_ in STRENGTH_ORDER or bool(_CUSTOM_TYPE.match(type_))


def misspelt_type(type_: str) -> str | None:
    """The known type `type_` is in other letter case (`customerID`: `customerId`), or None."""
    return _KNOWN_BY_CASE.get(type_.lower()) if type_ not in STRENGTH_ORDER else None


def checked_type(type_: str, *, field: str = "type") -> str:
    """The type stripped, or InvalidInput naming `field` and the types there are. A custom name that
    is a known type in other letter case (`customerID`) is refused, naming the known one: taken as a
    type of its own, it split a customer over profiles and let an erased person's id back in."""
    type_ = type_.strip()
    if (known := misspelt_type(type_)) is not None:
        raise InvalidInput(
            f"unknown identifier type {type_!r}: did you mean {known!r}? (types are case-sensitive)", field=field
        )
    if not is_identifier_type(type_):
        raise InvalidInput(
            f"unknown identifier type {type_!r}: use one of {', '.join(STRENGTH_ORDER)} "
            "or a custom name of 2-40 letters, digits or underscores starting with a lower-case letter",
            field=field,
        )
    return type_


def _validated(type_: str, value: str, default_region: str | None) -> Identifier:
    type_ = checked_type(type_)
    stripped = _trimmed(value)
    if not stripped:
        raise InvalidInput("identifier value must not be empty", field="value")
    if len(stripped) > MAX_VALUE_LENGTH:
        raise InvalidInput(f"identifier value is longer than {MAX_VALUE_LENGTH} characters", field="value")
    if not is_valid_unicode(stripped):  # it would become a key no store can write (nor look up)
        raise InvalidInput("identifier value is not valid Unicode (it holds a lone surrogate)", field="value")
    if any(unicodedata.category(ch) == "Cc" for ch in stripped):  # MongoDB keys may hold no NUL
        raise InvalidInput("identifier value holds a control character (such as NUL or a tab)", field="value")
    if type_ == KnownIdentifierType.EMAIL:
        return Identifier(type_, _normalise_email(stripped, field="value"))
    if type_ == KnownIdentifierType.PHONE:
        return Identifier(type_, _normalise_phone(stripped, field="value", default_region=default_region))
    return Identifier(type_, unicodedata.normalize("NFC", stripped))


def _trimmed(value: str) -> str:
    """`value` without the white space and the invisible format characters around it (a byte-order
    mark a spreadsheet's export leaves before the first value, a zero-width space copied with it):
    kept, they made another identifier of the same id, which let an erased person's id back in."""
    start, end = 0, len(value)
    while start < end and (value[start].isspace() or unicodedata.category(value[start]) == "Cf"):
        start += 1
    while end > start and (value[end - 1].isspace() or unicodedata.category(value[end - 1]) == "Cf"):
        end -= 1
    return value[start:end]


# The shape of nearly every address: a dot-atom of ASCII characters, "@", and ASCII host-name labels
# (at most 63 characters each, the last ending with a letter) with at least one period. For those,
# email-validator's remaining checks are the total length, "--" (Punycode, RFC 5890 R-LDH labels) and
# the special-use names, and its normal form is the address with the domain lower-cased: they are
# decided here without it (a quarter of a millisecond a call), and anything else is left to it.
_ATEXT = r"[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+"
_PLAIN_EMAIL = re.compile(
    rf"{_ATEXT}(?:\.{_ATEXT})*@(?:[A-Za-z0-9](?:[A-Za-z0-9-]{{0,61}}[A-Za-z0-9])?\.)+"
    r"(?:[A-Za-z0-9][A-Za-z0-9-]{0,61})?[A-Za-z]"
)
_EMAIL_MAX_LENGTH = 254
_SPECIAL_USE = frozenset(SPECIAL_USE_DOMAIN_NAMES)  # each refused with its subdomains, as email-validator does
_SPECIAL_USE_SUFFIXES = tuple(f".{name}" for name in SPECIAL_USE_DOMAIN_NAMES)


def _plain_email(value: str) -> str | None:
    """`value` normalised when it has the plain shape above, else None (email-validator decides)."""
    if len(value) > _EMAIL_MAX_LENGTH or not _PLAIN_EMAIL.fullmatch(value):
        return None
    normalised = value.lower()
    domain = normalised[normalised.index("@") + 1 :]
    if "--" in domain or domain in _SPECIAL_USE or domain.endswith(_SPECIAL_USE_SUFFIXES):
        return None
    return normalised


def _normalise_email(value: str, *, field: str) -> str:
    if (plain := _plain_email(value)) is not None:
        return plain
    try:
        result = validate_email(value, check_deliverability=False)
    except EmailNotValidError as exc:
        raise InvalidInput(f"{value!r} is not a valid email address: {exc}", field=field) from None
    # The domain part is case-insensitive by standard; the local part is in practice too, and
    # lower-casing it is what every CDP does so that "Emma@x.com" and "emma@x.com" are one person.
    return result.normalized.lower()


def _normalise_phone(value: str, *, field: str, default_region: str | None) -> str:
    try:
        parsed = phonenumbers.parse(value, default_region)
    except phonenumbers.NumberParseException:
        parsed = None
    if parsed is None or not phonenumbers.is_valid_number(parsed):
        hint = "" if default_region else " (give it in international form, e.g. +33 6 12 34 56 78)"
        raise InvalidInput(f"{value!r} is not a valid phone number{hint}", field=field)
    number = phonenumbers.format_number(parsed, phonenumbers.PhoneNumberFormat.E164)
    # E.164 has no extension: without it, colleagues behind one switchboard were one identifier, and
    # so one profile. Kept as RFC 3966 writes it.
    return f"{number}{EXTENSION}{parsed.extension}" if parsed.extension else number


def former_keys(key: str) -> list[str]:
    """The keys versions before 2026-12-03 may have stored this identifier under, where they still
    tell it apart: a phone without its extension (dropped then), an id in decomposed Unicode (NFD,
    as a Mac writes accents; kept as sent then). What an erasure suppressed under them still holds."""
    type_, _, value = key.partition(":")
    if type_ == KnownIdentifierType.PHONE:
        return [f"{type_}:{value.partition(EXTENSION)[0]}"] if EXTENSION in value else []
    if type_ == KnownIdentifierType.EMAIL or (decomposed := unicodedata.normalize("NFD", value)) == value:
        return []
    return [f"{type_}:{decomposed}"]


def strongest(identifiers: list[Identifier]) -> Identifier:
    return min(identifiers, key=lambda i: (i.strength, i.key))
