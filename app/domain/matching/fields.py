"""What the matcher reads from a profile: names, birth date, emails, phones and addresses, each in
one canonical form (lower case, accents folded, punctuation gone, abbreviations expanded), plus the
derived codes every comparison needs, computed once per profile rather than once per pair."""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Collection, Iterable
from dataclasses import dataclass, field
from datetime import date
from functools import lru_cache

import jellyfish
import phonenumbers

from app.domain.identifiers import EXTENSION, KnownIdentifierType
from app.domain.profile import Address, Profile

# Letters that Unicode decomposition leaves alone, spelt the way people type them without the key.
_LETTERS = str.maketrans(
    {"æ": "ae", "œ": "oe", "ø": "o", "ł": "l", "đ": "d", "ð": "d", "þ": "th", "\u0131": "i"}
)  # u0131: dotless i
# Apostrophes join (O'Brien → obrien, D'Angelo → dangelo): people type them with or without.
_JOINING = re.compile("['\u2019`\u00b4.]")  # ' and its typographic, grave and acute look-alikes
_SEPARATING = re.compile(r"[^a-z0-9]+")
_NUMBER = re.compile(r"\d+")

# Street-type abbreviations as written in the seven markets we serve, expanded so that "12 r. Victor
# Hugo" and "12 rue Victor Hugo", or "Hauptstr. 5" and "Hauptstraße 5", compare equal.
_STREET_WORDS = {
    "st": "street",
    "rd": "road",
    "ave": "avenue",
    "av": "avenue",
    "ln": "lane",
    "dr": "drive",
    "sq": "square",
    "r": "rue",
    "bd": "boulevard",
    "bld": "boulevard",
    "blvd": "boulevard",
    "pl": "place",
    "ch": "chemin",
    "imp": "impasse",
    "str": "strasse",
    "c": "calle",
    "cl": "calle",
    "avda": "avenida",
    "pza": "plaza",
    "v": "via",
    "cso": "corso",
}
# What second street lines abbreviate: "Apt 3", "Appt. 3" and "apartment 3" are one flat.
_UNIT_WORDS = {
    "apt": "apartment",
    "apmt": "apartment",
    "apmnt": "apartment",
    "appt": "apartment",
    "app": "apartment",
    "flt": "flat",
    "bldg": "building",
    "bat": "batiment",
    "bt": "batiment",
    "fl": "floor",
    "ste": "suite",
    "co": "care of",
}
# Compound German and Dutch street names abbreviate their suffix: Goethestr. → goethestrasse.
_STREET_SUFFIX = re.compile(r"(?<=[a-z]{3})str$")


def fold(text: str) -> str:
    """Lower case, accents and ligatures folded to ASCII, apostrophes and dots removed, every other
    run of punctuation or space a single space."""
    folded = text.casefold().translate(_LETTERS)  # casefold also turns ß into ss
    if not folded.isascii():  # ASCII has nothing to decompose: most names, streets and cities
        decomposed = unicodedata.normalize("NFKD", folded)
        folded = "".join(c for c in decomposed if not unicodedata.combining(c))
    return _SEPARATING.sub(" ", _JOINING.sub("", folded)).strip()


# Names, streets and cities repeat across profiles (and one profile is read again for each lookup it
# takes part in): their canonical forms and codes are kept, which exact values make always right.
_CACHED = 1 << 16


@lru_cache(maxsize=_CACHED)
def fold_name(text: str | None) -> str:
    return " ".join(t for t in fold(text or "").split() if not t.isdigit())


@dataclass(frozen=True, slots=True)
class MatchAddress:
    number: str  # the house number without its suffix ("12bis" → "12"), "" when none
    street: str  # street words, abbreviations expanded, number removed
    line2: str  # the second street line folded, unit words expanded ("apt 3" → "apartment 3")
    city: str
    postcode: str  # upper case, letters and digits only ("SW11 4NP" → "SW114NP")
    country: str
    # The same address with its two street lines read the other way round (None unless it has two):
    # people put a building's or a locality's name first as often as the street ("Durraween, 26
    # Chant Street"), and forms swap the lines. Read from the texts as written, each line normalised
    # for the part it then plays; the house number stays the address's, on whichever line it was.
    swapped: MatchAddress | None = field(default=None, compare=False, repr=False)


def match_address(address: Address) -> MatchAddress | None:
    return _match_address(*address_values(address))


@lru_cache(maxsize=_CACHED)
def _match_address(
    street_text: str | None,
    line2_text: str | None,
    city_text: str | None,
    postcode_text: str | None,
    country: str | None,
) -> MatchAddress | None:
    number, street = _street_line(street_text)
    line2 = _second_line(line2_text)
    city = fold(city_text or "")
    postcode = re.sub(r"[^A-Z0-9]", "", (postcode_text or "").upper())
    if not (street or city or postcode or line2):
        return None
    country = (country or "").strip().upper()
    swapped = None
    if street and line2:
        other_number, other_street = _street_line(line2_text)
        written_first = " ".join(_numberless(_second_line(street_text).split()))
        swapped = MatchAddress(other_number or number, other_street, written_first, city, postcode, country)
    return MatchAddress(number, street, line2, city, postcode, country, swapped)


def _street_line(text: str | None) -> tuple[str, str]:
    """(the house number, the street words with abbreviations expanded) of a street line."""
    folded = fold(text or "")
    number_found = _NUMBER.search(folded)
    words = [_expand_street_word(w) for w in _numberless(folded.split())]
    return (number_found.group() if number_found else ""), " ".join(words)


def _numberless(words: list[str]) -> list[str]:
    """The words without a digit: a house number ("26", "26b") is the address's, not the line's name."""
    return [w for w in words if not any(ch.isdigit() for ch in w)]


def _second_line(text: str | None) -> str:
    return " ".join(_UNIT_WORDS.get(w, w) for w in fold(text or "").split())


def _expand_street_word(word: str) -> str:
    return _STREET_WORDS.get(word) or _STREET_SUFFIX.sub("strasse", word)


def email_local_part(email: str) -> str:
    """The mailbox part that survives provider quirks: no +tag, no dots, underscores or hyphens."""
    local = email.partition("@")[0].partition("+")[0]
    return re.sub(r"[._\-]", "", local)


# Providers that deliver "j.dupont", "jdupont" and "j.d.upont" to one mailbox. Elsewhere a dot, an
# underscore or a hyphen makes another address, which a namesake may well hold.
_DOTLESS_PROVIDERS = {"gmail.com": "gmail.com", "googlemail.com": "gmail.com"}


def mailbox(email: str) -> str:
    """The mailbox an address delivers to: no +tag, and no dots where the provider ignores them."""
    local, _, domain = email.lower().partition("@")
    local = local.partition("+")[0]
    if domain in _DOTLESS_PROVIDERS:
        return f"{local.replace('.', '')}@{_DOTLESS_PROVIDERS[domain]}"
    return f"{local}@{domain}"


def phone_tail(phone: str) -> str:
    """The last 8 digits: the subscriber number, whatever country code or trunk prefix was typed. A
    number with an extension (`;ext=12`: a switchboard's line) keeps it, so that colleagues behind one
    switchboard do not read as one person's number under another country code."""
    number, _, extension = phone.partition(EXTENSION)
    digits = "".join(ch for ch in number if ch.isdigit())
    return f"{digits[-8:]};{extension}" if extension else digits[-8:]


@lru_cache(maxsize=_CACHED)
def phone_country(phone: str) -> int | None:
    """The country calling code of a number in international form (None for one written without it).
    Two numbers of one country that share their last 8 digits are two subscribers (New York's
    +1 212 555 1234 and Chicago's +1 312 555 1234), not one number typed under another country code."""
    try:
        return phonenumbers.parse(phone.partition(EXTENSION)[0], None).country_code
    except phonenumbers.NumberParseException:
        return None


@lru_cache(maxsize=_CACHED)
def phonetic(name: str) -> str:
    return jellyfish.metaphone(name.replace(" ", "")) if name else ""


@dataclass(frozen=True, slots=True)
class MatchFields:
    """A profile as the matcher sees it. Build it with `match_fields` (or `normalised_fields` for raw
    values); the derived fields below are filled in from the six given ones."""

    first_name: str
    last_name: str
    birth_date: date | None
    emails: tuple[str, ...]
    phones: tuple[str, ...]
    addresses: tuple[MatchAddress, ...]
    first_joined: str = field(init=False, repr=False, compare=False)  # "jean pierre" → "jeanpierre"
    last_joined: str = field(init=False, repr=False, compare=False)
    first_phonetic: str = field(init=False, repr=False, compare=False)  # Metaphone of first_joined
    last_phonetic: str = field(init=False, repr=False, compare=False)
    email_locals: tuple[str, ...] = field(init=False, repr=False, compare=False)
    mailboxes: tuple[str, ...] = field(init=False, repr=False, compare=False)
    phone_tails: tuple[str, ...] = field(init=False, repr=False, compare=False)
    order_key: tuple[str, ...] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        # object.__setattr__: the documented way to fill derived fields of a frozen dataclass.
        set_ = object.__setattr__
        set_(self, "first_joined", self.first_name.replace(" ", ""))
        set_(self, "last_joined", self.last_name.replace(" ", ""))
        set_(self, "first_phonetic", phonetic(self.first_name))
        set_(self, "last_phonetic", phonetic(self.last_name))
        set_(self, "email_locals", tuple(email_local_part(e) for e in self.emails))
        set_(self, "mailboxes", tuple(mailbox(e) for e in self.emails))
        set_(self, "phone_tails", tuple(phone_tail(p) for p in self.phones))
        # A total order over everything compared, so that score_pair can put any pair in one
        # canonical order and be symmetric by construction.
        set_(
            self,
            "order_key",
            (
                self.last_name,
                self.first_name,
                self.birth_date.isoformat() if self.birth_date else "",
                "|".join(self.emails),
                "|".join(self.phones),
                "|".join(f"{a.number},{a.street},{a.line2},{a.city},{a.postcode},{a.country}" for a in self.addresses),
            ),
        )


def normalised_fields(
    *,
    first_name: str | None = None,
    last_name: str | None = None,
    birth_date: date | None = None,
    emails: Iterable[str] = (),
    phones: Iterable[str] = (),
    addresses: Iterable[Address] = (),
) -> MatchFields:
    """MatchFields from raw values. Emails and phones are expected already normalised by
    `app.domain.identifiers.normalise` (as stored on a profile); they are only trimmed and lower-cased."""
    return normalised_values(
        first_name, last_name, birth_date, tuple(emails), tuple(phones), tuple(address_values(a) for a in addresses)
    )


def stated_person(first_name: str | None, last_name: str | None, birth_date: date | None) -> MatchFields | None:
    """A write's own names and birth date as the matcher reads them, when it states a given name, or
    a surname and a birth date: what tells the members of a household apart (`scoring.another_person`).
    None otherwise: a write naming no one says nothing of whose it is beyond its identifiers."""
    if not first_name and not (last_name and birth_date):
        return None
    return normalised_fields(first_name=first_name, last_name=last_name, birth_date=birth_date)


# An address as the matcher reads it: street, line2, city, postcode, country.
AddressValues = tuple[str | None, str | None, str | None, str | None, str | None]


def address_values(address: Address) -> AddressValues:
    return address.street, address.line2, address.city, address.postcode, address.country


@lru_cache(maxsize=1 << 15)
def normalised_values(
    first_name: str | None,
    last_name: str | None,
    birth_date: date | None,
    emails: tuple[str, ...],
    phones: tuple[str, ...],
    addresses: tuple[AddressValues, ...],
) -> MatchFields:
    """`normalised_fields` of values as stored (`address_values` for each address)."""
    # Kept by value: a profile read again (by every lookup whose blocks hold it) is not normalised
    # again, and a changed profile has other values, so nothing here can be stale.
    found = [_match_address(*a) for a in addresses]
    return MatchFields(
        first_name=fold_name(first_name),
        last_name=fold_name(last_name),
        birth_date=birth_date,
        emails=tuple(sorted({e.strip().lower() for e in emails if e.strip()})),
        phones=tuple(sorted({p.strip() for p in phones if p.strip()})),
        addresses=tuple(dict.fromkeys(a for a in found if a is not None)),
    )


def contacts_held(
    emails: Collection[object], phones: Collection[object], addresses: Collection[object]
) -> frozenset[str]:
    """The contact fields a profile holds some value of, named as the scorer's reasons name them (an
    address counting for its second line too): a pair compares only those both hold, which bounds
    what a learned model can make of the rest (`learned.MatchModel.ceiling`). Read from values as
    stored too: one that normalises to nothing still counts, so the bound stays one."""
    held = {"email"} if emails else set()
    if phones:
        held.add("phone")
    if addresses:
        held.update(("address", "address.line2"))
    return frozenset(held)


def contacts_of(fields: MatchFields) -> frozenset[str]:
    """`contacts_held` of normalised match fields."""
    return contacts_held(fields.emails, fields.phones, fields.addresses)


def names_and_birth_date(fields: MatchFields) -> MatchFields:
    """`fields` without contact points and addresses: what `PairScorer.may_reach` judges a pair on."""
    return MatchFields(fields.first_name, fields.last_name, fields.birth_date, (), (), ())


@lru_cache(maxsize=_CACHED)
def stored_names_and_birth_date(first_name: str | None, last_name: str | None, birth_date: date | None) -> MatchFields:
    """`names_and_birth_date` of the values as stored: the names folded, nothing else normalised.
    Kept by value, as `normalised_values` is: every lookup whose blocks hold a profile asks for it."""
    return MatchFields(fold_name(first_name), fold_name(last_name), birth_date, (), (), ())


def match_fields(profile: Profile) -> MatchFields:
    return normalised_fields(
        first_name=profile.first_name,
        last_name=profile.last_name,
        birth_date=profile.birth_date,
        emails=(r.value for r in profile.identifiers if r.type == KnownIdentifierType.EMAIL),
        phones=(r.value for r in profile.identifiers if r.type == KnownIdentifierType.PHONE),
        addresses=profile.addresses,
    )
