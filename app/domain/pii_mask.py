"""Masked personal data, for callers without the `read:pii` scope: enough to recognise a record
(`j***@example.com`, `+33*******78`, `E***`), never enough to contact or identify the person.

One rule for every place personal data leaves the server: the profile's own fields, and free-form
data (event properties, traits, preferences) by the keys that name personal data and by values
shaped like an email address, at any depth.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable
from typing import Any

from app.domain.access import Scope
from app.domain.errors import Forbidden

MASK = "***"


def mask_text(value: str | None) -> str | None:
    """Names, streets, cities: the first letter, then a fixed mask (the length is not revealed)."""
    return None if value is None else (value[:1] + MASK if value else value)


def mask_email(value: str) -> str:
    local, _, domain = value.partition("@")
    return f"{local[:1]}{MASK}@{domain}"


def mask_phone(value: str) -> str:
    """Country code and the last two digits: `+33612345678` → `+33*******78`."""
    keep = 3 if value.startswith("+") else 0
    return value[:keep] + "*" * max(0, len(value) - keep - 2) + value[-2:]


def mask_identifier(type_: str, value: str) -> str:
    """By the type's name (`email`, `workEmail`; `phone`, `mobileNumber`, `tel`) and by an email-shaped
    value, or an international phone number (`+44 7700 900123`), whatever the type (a custom `crmRef`
    holding one); customer ids, device and anonymous ids are pseudonymous keys, left as they are."""
    kind = _normal_key(type_)
    if "email" in kind or _EMAIL.fullmatch(value):
        return mask_email(value)
    if kind in _PHONES or any(word in kind for word in _PHONE_WORDS) or _PHONE_IN_TEXT.fullmatch(value):
        return _phone_shaped(value)
    return value


def _masked_string(mask: Callable[[str], str | None]) -> Callable[[Any], Any]:
    return lambda value: mask(value) if isinstance(value, str) else mask_personal(value)


def _withheld(value: Any) -> None:
    return None


# Keys that name personal data in free-form documents, compared without case, `_` or `-`
# (first_name, firstName and First-Name alike); the value is masked as the profile's own field is.
_NAMES = ("firstname", "lastname", "fullname", "givenname", "familyname", "surname", "middlename", "username",
          "displayname", "preferredname", "nickname", "customername", "contactname", "recipientname",
          "cardholdername", "holdername", "billingname", "shippingname")  # fmt: skip
# Numbers that identify a person on their own: masked as names are (the first character).
_NATIONAL_NUMBERS = ("ssn", "socialsecuritynumber", "nationalid", "nationalidnumber", "passport", "passportnumber",
                     "taxid", "taxnumber", "iban", "accountnumber", "cardnumber")  # fmt: skip
_BIRTH_DATES = ("birthdate", "dateofbirth", "dob", "birthday")
_EMAILS = ("email", "emailaddress")
_PHONES = ("phone", "phonenumber", "mobile", "mobilephone", "telephone", "tel", "hometel", "worktel", "mobiletel",
           "landline", "fax")  # fmt: skip
_ADDRESSES = ("address", "street", "street2", "line1", "line2", "addressline1", "addressline2", "postcode",
              "postalcode", "zip", "zipcode")  # fmt: skip
_BY_KEY: dict[str, Callable[[Any], Any]] = {
    **dict.fromkeys(_NAMES, _masked_string(mask_text)),
    **dict.fromkeys(_NATIONAL_NUMBERS, _masked_string(mask_text)),
    **dict.fromkeys(_BIRTH_DATES, _withheld),
    **dict.fromkeys(_EMAILS, _masked_string(mask_email)),
    **dict.fromkeys(_PHONES, _masked_string(mask_phone)),
    **dict.fromkeys(_ADDRESSES, _masked_string(mask_text)),
}


def _phone_shaped(value: str) -> str:
    """Masked as a phone number when it reads as one (a `mobileApp: "ios"` is not)."""
    return mask_phone(value) if _PHONE.fullmatch(value.strip()) else value


# Keys naming personal data that contain one of these words (`workEmail`, `contactPhone`,
# `shippingAddress`, `placeOfBirth`): masked as the word's kind, where no exact key above applies,
# and personal to filter on. Under an email or phone word only a value of that shape is masked (an
# `emailCampaign: "spring"` or `mobileApp: "ios"` is not personal); an email address is masked
# wherever it is, by its shape.
_BY_WORD: tuple[tuple[str, Callable[[Any], Any]], ...] = (
    ("email", lambda value: mask_personal(value)),
    ("phone", _masked_string(_phone_shaped)),
    ("mobile", _masked_string(_phone_shaped)),
    ("birth", _withheld),
    ("address", _masked_string(mask_text)),
    ("street", _masked_string(mask_text)),
    ("postcode", _masked_string(mask_text)),
    ("postalcode", _masked_string(mask_text)),
    ("zipcode", _masked_string(mask_text)),
)
_PHONE_WORDS = ("phone", "mobile", "msisdn")
_PHONE = re.compile(r"\+?[\d\s().-]{6,}")
# Each part bounded (an address's local part is at most 64 characters, its domain 255): unbounded, a
# search tried every start in a long run of text without a dot, and one 8 KB event property (the most
# an event may hold) took 230-320 ms to mask, on the loop, for every read by a key without read:pii.
_EMAIL = re.compile(r"[^@\s]{1,64}@[^@\s]{1,255}\.[^@\s]{1,63}")
_PHONE_IN_TEXT = re.compile(r"\+\d[\d\s().-]{5,}\d")  # an international number inside free text
# A national number inside a sentence (a support note's "call me on 06 12 34 56 78"): a trunk 0 or
# an area code in brackets, or the North American 3-3-4 digits, then 7-11 more digits, spaced or
# not. Only in text with words in it: a value that is only digits (a barcode, an order number) is
# left as it is, where it is most often no one's number.
_NATIONAL_PHONE_IN_TEXT = re.compile(
    r"(?<![\w+%])(?:(?:0\d|\(\d{2,4}\)[\s.-]?)(?:[\s.-]?\d){7,11}|\d{3}[\s.-]\d{3}[\s.-]\d{4})(?![\w])"
)
_WORD = re.compile(r"[^\W\d_]{2}")  # letters: with a space, free text rather than a code
_SPACE = re.compile(r"\s")
# The same in a URL's query string, as browsers and SDKs write them (`email=ann%40example.com`,
# `phone=%2B447700900456`): the local part stops at what separates a query's parameters.
_EMAIL_ENCODED = re.compile(r"[^@\s=&?/#]{1,64}%40[^@\s&#]{1,255}\.[^@\s&#]{1,63}", re.IGNORECASE)
# Digits apart as a query string writes spaces (`+`, `%20`): `%2B33+6+12+34+56+78`, `%2B33%206%2012…`.
_PHONE_ENCODED = re.compile(r"%2B\d(?:[\d.+-]|%20){5,40}\d", re.IGNORECASE)
# In a person's own attributes (traits, stated preferences, an identify event's `traits`), a key
# ending in `name` names the person (Segment's identify `name`); in an event's properties `name` is
# most often a product's or a page's, and only the keys of _NAMES are a person's there.
_ATTRIBUTES = ("traits", "preferences")


def _normal_key(key: str) -> str:
    return key.replace("_", "").replace("-", "").lower()


def _rule(key: str, *, attributes: bool = False) -> Callable[[Any], Any] | None:
    """How the value under `key` is masked; None: not a key naming personal data. `attributes`: a
    key of a person's own attributes (_ATTRIBUTES)."""
    normal = _normal_key(key)
    found = _BY_KEY.get(normal)
    if found is not None:
        return found
    if attributes and normal.endswith("name"):
        return _BY_KEY["fullname"]
    return next((rule for word, rule in _BY_WORD if word in normal), None)


def mask_personal(value: Any, *, attributes: bool = False) -> Any:
    """A copy of a free-form JSON value with its personal data masked: values under personal keys
    (an `address` object is masked inside, keeping its city and country as the profile's addresses
    do), and any string shaped like an email address or an international phone number, written
    plainly or in a URL's query string, and a national number in a sentence. Everything else is left
    as it was. `attributes`: the value is a person's own attributes (traits, stated preferences),
    where a key ending in `name` is theirs."""
    if isinstance(value, dict):
        masked: dict[str, Any] = {}
        for key, item in value.items():
            rule = _rule(key, attributes=attributes) if isinstance(key, str) else None
            if rule is not None:
                masked[key] = rule(item)
            else:
                masked[key] = mask_personal(item, attributes=isinstance(key, str) and _normal_key(key) in _ATTRIBUTES)
        return masked
    if isinstance(value, list):
        return [mask_personal(item) for item in value]
    if isinstance(value, str):
        if "@" in value and _EMAIL.search(value):
            value = _EMAIL.sub(lambda match: mask_email(match.group(0)), value)
        if "+" in value and _PHONE_IN_TEXT.search(value):
            value = _PHONE_IN_TEXT.sub(lambda match: mask_phone(match.group(0)), value)
        if _has_national_phone(value):
            value = _NATIONAL_PHONE_IN_TEXT.sub(lambda match: mask_phone(match.group(0)), value)
        if "%" in value:
            value = _EMAIL_ENCODED.sub(lambda match: mask_email(match.group(0).replace("%40", "@")), value)
            value = _PHONE_ENCODED.sub(lambda match: "%2B" + mask_phone("+" + match.group(0)[3:])[1:], value)
    return value


def _has_national_phone(text: str) -> bool:
    return (
        _SPACE.search(text) is not None
        and _WORD.search(text) is not None
        and _NATIONAL_PHONE_IN_TEXT.search(text) is not None
    )


# Profile paths holding personal data (as segment conditions name them): filtering on one reveals it,
# a letter at a time, to a key that may not read it.
PERSONAL_PATHS = frozenset(
    {"firstName", "lastName", "birthDate", "addresses.street", "addresses.line2", "addresses.postcode"}
)


def is_personal_path(path: str) -> bool:
    """A profile path, an event property (`properties.<key>`) or a trait (`traits.<key>`) that holds
    personal data, by the keys the masking knows."""
    head, _, key = path.partition(".")
    if path in PERSONAL_PATHS:
        return True
    first, _, rest = key.partition(".")
    if head == "traits":
        return _rule(first, attributes=True) is not None
    if head == "properties" and _normal_key(first) in _ATTRIBUTES and rest:  # an identify's traits
        return _rule(rest.split(".")[0], attributes=True) is not None
    return head == "properties" and _rule(first) is not None


def is_personal_value(value: Any) -> bool:
    """A compared value that holds an email address or a part of one (an `@`), or an international
    phone number (what free text masks, `mask_personal`): whatever the field, filtering on it asks
    whether someone's data holds it (a page's URL carrying `?email=`, a note with a number in it),
    and so reveals personal data."""
    if isinstance(value, list | tuple):
        return any(is_personal_value(item) for item in value)
    if not isinstance(value, str):
        return False
    if "@" in value or ("+" in value and _PHONE_IN_TEXT.search(value) is not None) or _has_national_phone(value):
        return True
    folded = value.lower()  # as a URL's query string writes them: `%40`, `%2B` and digits
    return "%40" in folded or re.search(r"%2b\d", folded) is not None


def mask_condition(node: Any) -> Any:
    """A copy of a segment's condition tree with the values compared to personal data masked (a
    `compare` on `lastName`, an event `where` on a personal property or a personal trait), and the
    values that read as personal whatever they are compared to (`is_personal_value`): the condition
    of a segment a key with read:pii defined would otherwise tell the values to any key."""
    if isinstance(node, list):
        return [mask_condition(item) for item in node]
    if not isinstance(node, dict):
        return node
    path, prop = node.get("path"), node.get("property")
    compared = [node.get("value"), node.get("values")]
    personal = (
        (isinstance(path, str) and is_personal_path(path))
        or (isinstance(prop, str) and is_personal_path(f"properties.{prop}"))
        or ((isinstance(path, str) or isinstance(prop, str)) and is_personal_value(compared))
    )
    return {key: _masked_compared(item) if personal and key in ("value", "values") else mask_condition(item)
            for key, item in node.items()}  # fmt: skip


def _masked_compared(value: Any) -> Any:
    if isinstance(value, list):
        return [_masked_compared(item) for item in value]
    return mask_text(value) if isinstance(value, str) else None


# Operators that compare a part of a text, or its place in an order: on free-form text, a count
# answers them a letter at a time.
_PARTIAL = frozenset({"contains", "startsWith", "gt", "gte", "lt", "lte"})


def refuse_personal_filter(comparisons: Iterable[tuple[str, str, Any]], *, field: str) -> None:
    """Forbidden when a filter of a key without read:pii compares personal data: a (path, operator,
    value) whose path holds it, or whose value reads as it; or that compares a part of free-form text
    (a trait, an event property), where an email address or a name under any key is masked when read:
    `traits.contact startsWith "jane.d"` spelt out, a letter at a time, what the key reads as
    `j***@example.com`. Whole values (eq, ne, in, exists) and numbers stay open to it."""
    for path, op, value in comparisons:
        if is_personal_path(path):
            raise Forbidden(
                f"{field} compares {path}, personal data: that needs the scope {Scope.READ_PII}", field=field
            )
        if is_personal_value(value):
            raise Forbidden(
                f"{field} compares {path} with a value that reads as an email address or a phone number, "
                f"which asks whether someone's data holds it: that needs the scope {Scope.READ_PII}",
                field=field,
            )
        if op in _PARTIAL and isinstance(value, str) and path.partition(".")[0] in ("traits", "properties"):
            raise Forbidden(
                f"{field} compares a part of {path}, free-form text that may hold personal data shown masked "
                f"(compare whole values with eq, ne or in): that needs the scope {Scope.READ_PII}",
                field=field,
            )
