"""Synthetic people and the records a CDP holds for them, with the noise real sources add: the data
set of the identity-matching benchmark. Deterministic for a seed; no pair is hand-picked.

People come from seven countries (FR, DE, GB, ES, IT, NL, US) with first names and surnames drawn
from Zipf-like frequencies over real common names (so namesakes and shared surnames are frequent),
a birth date, an address with a postcode, emails derived from the name in varied patterns and
valid-looking mobile numbers. Some people live in households (same address, usually the same
surname, sometimes a shared landline or family email, a few twins), and some share a birth date with
an unrelated person: the look-alikes a matcher must not merge.

Each person then gets 1-4 records, each independently noised by `NoiseModel` (rates printed by the
benchmark): typos (keyboard neighbour, deletion, transposition, doubled letter; first letter rarely),
phonetic misspellings, nicknames and short forms, swapped first/last names, initials, married names,
dropped second surnames, transliterations (ü → ue), accents dropped, letter case; day/month swapped
and one-digit typos in birth dates; missing fields; another email, phone or an old address; the same
mailbox at another provider, with a +tag or (Gmail) with dots added or dropped; street abbreviations,
typos in street, postcode and city; phones in national or international format, one digit mistyped.
"""

from __future__ import annotations

import random
import unicodedata
from collections.abc import Callable
from dataclasses import dataclass, fields
from datetime import date, timedelta

import phonenumbers

from app.domain.matching.fields import mailbox
from bench.people.names import COUNTRIES, LONG_TAIL_SHARE, NICKNAMES, Country, long_tail_surname

TODAY = date(2026, 1, 1)


@dataclass(frozen=True, slots=True)
class NoiseModel:
    """Per-record probabilities, each drawn independently for every record (the first included)."""

    first_name_typo: float = 0.05
    nickname: float = 0.10  # when the name has a known nickname or short form
    initial_only: float = 0.015
    first_name_missing: float = 0.01
    last_name_typo: float = 0.07
    last_name_phonetic: float = 0.03
    married_name: float = 0.03  # women of 22 and over: another surname
    second_surname_dropped: float = 0.35  # Spanish double surnames
    transliterated: float = 0.5  # ü → ue, ß → ss when the name has one
    accents_dropped: float = 0.3
    names_swapped: float = 0.02
    upper_case: float = 0.15
    birth_date_missing: float = 0.20
    day_month_swapped: float = 0.05  # when the day is 12 or less and differs from the month
    birth_date_typo: float = 0.03
    email_missing: float = 0.12
    other_email: float = 0.15  # when the person has a second address
    email_provider_change: float = 0.04  # the same local part at another provider of the country
    email_plus_tag: float = 0.03  # "jean.dupont+shop@..."
    email_dots: float = 0.15  # at Gmail, which ignores them: "jeandupont" for "jean.dupont" or back
    email_typo: float = 0.02
    email_case: float = 0.2
    phone_missing: float = 0.25
    other_phone: float = 0.10  # when the person has a second number
    phone_typo: float = 0.02
    address_missing: float = 0.20
    old_address: float = 0.30  # when the person has moved
    street_abbreviated: float = 0.25
    street_typo: float = 0.04
    house_number_missing: float = 0.03
    postcode_typo: float = 0.02
    city_typo: float = 0.02

    def lines(self) -> list[str]:
        return [f"{f.name} {getattr(self, f.name):.3f}" for f in fields(self)]


@dataclass(frozen=True, slots=True)
class PopulationModel:
    records_per_person: tuple[float, float, float, float] = (0.35, 0.30, 0.20, 0.15)  # 1, 2, 3, 4 records
    household_member: float = 0.20  # a new person joins an earlier person's household
    same_surname_in_household: float = 0.8
    shared_landline: float = 0.25
    shared_family_email: float = 0.08
    twin: float = 0.06  # of household members
    same_birth_date_as_stranger: float = 0.03
    second_email: float = 0.30
    second_phone: float = 0.15
    moved: float = 0.35

    def lines(self) -> list[str]:
        return [f"{f.name} {getattr(self, f.name)}" for f in fields(self)]


@dataclass(frozen=True, slots=True)
class Place:
    number: str
    street: str
    city: str
    postcode: str
    country: str


@dataclass(frozen=True, slots=True)
class Person:
    number: int
    country: str
    female: bool
    first: str
    last: str
    birth: date
    places: tuple[Place, ...]  # current first
    emails: tuple[str, ...]  # primary first
    phones: tuple[str, ...]  # E.164, primary first


@dataclass(frozen=True, slots=True)
class Record:
    person: int
    country: str
    first_name: str | None
    last_name: str | None
    birth_date: date | None
    emails: tuple[str, ...]
    phones: tuple[str, ...]  # as typed: national or international format
    street: str | None
    city: str | None
    postcode: str | None
    noise: tuple[str, ...]


# -- people ---------------------------------------------------------------------------------------
def zipf_weights(count: int, exponent: float, offset: float) -> list[float]:
    return [1.0 / (rank + offset) ** exponent for rank in range(1, count + 1)]


class _Draw:
    """Weighted draws from each country's name lists, with the cumulative weights computed once."""

    def __init__(self) -> None:
        self.countries = list(COUNTRIES)
        self.country_weights = [COUNTRIES[c].share for c in self.countries]
        self.first: dict[tuple[str, bool], tuple[tuple[str, ...], list[float]]] = {}
        self.last: dict[str, tuple[tuple[str, ...], list[float]]] = {}
        for code, country in COUNTRIES.items():
            for female, names in ((True, country.female), (False, country.male)):
                self.first[code, female] = (names, _cumulative(zipf_weights(len(names), 0.9, 1.0)))
            self.last[code] = (country.surnames, _cumulative(zipf_weights(len(country.surnames), 1.0, 3.0)))

    def first_name(self, rng: random.Random, country: str, female: bool) -> str:
        names, weights = self.first[country, female]
        return rng.choices(names, cum_weights=weights)[0]

    def surname(self, rng: random.Random, country: str) -> str:
        name = self._one_surname(rng, country)
        if COUNTRIES[country].double_surname:
            name = f"{name} {self._one_surname(rng, country)}"
        return name

    def _one_surname(self, rng: random.Random, country: str) -> str:
        if rng.random() < LONG_TAIL_SHARE:
            return long_tail_surname(rng, country)
        names, weights = self.last[country]
        return rng.choices(names, cum_weights=weights)[0]


def _cumulative(weights: list[float]) -> list[float]:
    total, out = 0.0, []
    for w in weights:
        total += w
        out.append(total)
    return out


def people(count: int, seed: int, model: PopulationModel | None = None) -> list[Person]:
    model = model or PopulationModel()
    rng = random.Random(seed)
    draw = _Draw()
    taken: set[str] = set()
    found: list[Person] = []
    households: dict[int, list[Person]] = {}  # by the number of the person who founded it
    household_of: list[int] = []
    while len(found) < count:
        number = len(found)
        if found and rng.random() < model.household_member:
            home = household_of[rng.randrange(number)]
            member = _household_member(rng, draw, model, number, households[home], taken)
            found.append(member)
            households[home].append(member)
            household_of.append(home)
            continue
        households[number] = []
        household_of.append(number)
        country = rng.choices(draw.countries, weights=draw.country_weights)[0]
        female = rng.random() < 0.5
        first, last = draw.first_name(rng, country, female), draw.surname(rng, country)
        birth = _birth_date(rng)
        if found and rng.random() < model.same_birth_date_as_stranger:
            birth = rng.choice(found).birth
        places = (_place(rng, country),) + ((_place(rng, country),) if rng.random() < model.moved else ())
        emails = _emails(rng, country, first, last, birth, taken, 2 if rng.random() < model.second_email else 1)
        phones = tuple(_phone(rng, country) for _ in range(2 if rng.random() < model.second_phone else 1))
        found.append(Person(number, country, female, first, last, birth, places, emails, phones))
        households[number].append(found[-1])
    return found


def _household_member(
    rng: random.Random, draw: _Draw, model: PopulationModel, number: int, household: list[Person], taken: set[str]
) -> Person:
    head = rng.choice(household)  # the member this one is related to (partner, child, parent or twin)
    names = {member.first for member in household}
    female = rng.random() < 0.5
    first = draw.first_name(rng, head.country, female)
    for _ in range(50):  # bounded: parents do not give two of their children (or themselves) one name
        if first not in names:
            break
        first = draw.first_name(rng, head.country, female)
    last = head.last if rng.random() < model.same_surname_in_household else draw.surname(rng, head.country)
    relation = rng.random()
    if relation < model.twin:
        birth = head.birth
    elif relation < 0.6:  # partner: a few years apart, on whichever side stays within adult ages
        offset = timedelta(days=rng.randint(-6 * 365, 6 * 365))
        birth = head.birth + offset if _adult(head.birth + offset) else head.birth - offset
    else:  # child or parent, whichever is of customer age (both: either); never clamped to one date
        gap = timedelta(days=rng.randint(22 * 365, 38 * 365))
        options = [born for born in (head.birth + gap, head.birth - gap) if _adult(born)]
        birth = rng.choice(options) if options else head.birth + timedelta(days=rng.randint(-3 * 365, 3 * 365))
    emails = _emails(rng, head.country, first, last, birth, taken, 2 if rng.random() < model.second_email else 1)
    if rng.random() < model.shared_family_email:
        emails = (head.emails[0], *emails)
    phones: tuple[str, ...] = (_phone(rng, head.country),)
    if rng.random() < model.shared_landline:
        phones = (*phones, head.phones[-1])
    return Person(number, head.country, female, first, last, birth, head.places[:1], emails, phones)


def _birth_date(rng: random.Random) -> date:
    # Adults 18 to 85, fewer at the ends, as in a retailer's customer base.
    age = min(85.0, max(18.0, rng.gauss(44, 15)))
    return TODAY - timedelta(days=int(age * 365.25) + rng.randint(0, 364))


ADULT_BORN_BY = date(2008, 1, 1)
OLDEST_BORN = date(1935, 1, 1)


def _adult(born: date) -> bool:
    return OLDEST_BORN <= born <= ADULT_BORN_BY


def _place(rng: random.Random, country: str) -> Place:
    data = COUNTRIES[country]
    city, postcode_of = rng.choice(data.cities)
    street = rng.choice(data.streets)
    number = str(rng.randint(1, 9999 if country == "US" else 180))
    return Place(number, street, city, postcode_of(rng), country)


def ascii_fold(text: str) -> str:
    decomposed = unicodedata.normalize("NFKD", text.replace("ß", "ss"))
    return "".join(c for c in decomposed if not unicodedata.combining(c))


def _email_name(rng: random.Random, name: str, *, first_part: bool = False) -> str:
    if rng.random() < 0.5:  # German-speaking users spell ü as ue in addresses as often as u
        name = name.replace("ü", "ue").replace("ö", "oe").replace("ä", "ae")
    parts = ascii_fold(name).lower().replace("'", "").replace("-", " ").split()
    return parts[0] if first_part and parts else "".join(parts)


_EMAIL_PATTERNS: tuple[tuple[str, float], ...] = (
    ("{f}.{l}", 28),
    ("{f}{l}", 12),
    ("{fi}.{l}", 8),
    ("{fi}{l}", 8),
    ("{f}_{l}", 5),
    ("{l}.{f}", 5),
    ("{f}.{l}{yy}", 8),
    ("{f}{yyyy}", 4),
    ("{f}{l}{n2}", 6),
    ("{l}{fi}", 3),
    ("{f}.{li}{n2}", 4),
    ("{nick}{l}", 3),
    ("{f}{n3}", 3),
    ("{l}{n2}", 3),
)


def _emails(
    rng: random.Random, country: str, first: str, last: str, birth: date, taken: set[str], count: int
) -> tuple[str, ...]:
    data = COUNTRIES[country]
    f = _email_name(rng, first, first_part=True)
    surname = last.split()[0] if data.double_surname and rng.random() < 0.7 else last
    l = _email_name(rng, surname)  # noqa: E741 - the pattern letter
    nick = NICKNAMES.get(first)
    values = {
        "f": f,
        "l": l,
        "fi": f[:1],
        "li": l[:1],
        "yy": f"{birth.year % 100:02}",
        "yyyy": str(birth.year),
        "n2": str(rng.randint(10, 99)),
        "n3": str(rng.randint(100, 999)),
        "nick": _email_name(rng, rng.choice(nick)) if nick else f,
    }
    found: list[str] = []
    patterns, weights = zip(*_EMAIL_PATTERNS, strict=True)
    domains, domain_weights = zip(*data.email_domains, strict=True)
    while len(found) < count:
        local = rng.choices(patterns, weights=weights)[0].format(**values)
        domain = rng.choices(domains, weights=domain_weights)[0]
        email = f"{local}@{domain}"
        for _ in range(100):  # bounded: a free variant is found within a few tries
            if mailbox(email) not in taken:  # "jdupont" and "j.dupont" are one Gmail mailbox
                break
            email = f"{local}{rng.randint(1, 999)}@{domain}"
        taken.add(mailbox(email))
        found.append(email)
    return tuple(found)


def _phone(rng: random.Random, country: str) -> str:
    data = COUNTRIES[country]
    for _ in range(50):  # bounded: most national patterns are valid at the first try
        national = data.mobile(rng)
        parsed = phonenumbers.parse(f"+{data.calling_code}{national}")
        if phonenumbers.is_valid_number(parsed):
            return phonenumbers.format_number(parsed, phonenumbers.PhoneNumberFormat.E164)
    raise RuntimeError(f"no valid phone number generated for {country}")


# -- records --------------------------------------------------------------------------------------
def records(
    population: list[Person], seed: int, noise: NoiseModel | None = None, model: PopulationModel | None = None
) -> list[Record]:
    noise, model = noise or NoiseModel(), model or PopulationModel()
    rng = random.Random(seed + 1)
    counts = (1, 2, 3, 4)
    found: list[Record] = []
    for person in population:
        for _ in range(rng.choices(counts, weights=model.records_per_person)[0]):
            found.append(_record(rng, person, noise))
    return found


def _record(rng: random.Random, person: Person, noise: NoiseModel) -> Record:
    applied: list[str] = []

    def chance(rate: float, label: str) -> bool:
        if rng.random() < rate:
            applied.append(label)
            return True
        return False

    first: str | None = person.first
    last: str | None = person.last
    nicknames = NICKNAMES.get(person.first)
    if nicknames and chance(noise.nickname, "nickname"):
        first = rng.choice(nicknames)
    elif chance(noise.first_name_typo, "firstNameTypo"):
        first = typo(rng, person.first)
    if (
        " " in person.last
        and COUNTRIES[person.country].double_surname
        and chance(noise.second_surname_dropped, "secondSurnameDropped")
    ):
        last = person.last.split()[0]
    age = (TODAY - person.birth).days // 365
    if person.female and age >= 22 and chance(noise.married_name, "marriedName"):
        last = rng.choice(COUNTRIES[person.country].surnames)
    if chance(noise.last_name_typo, "lastNameTypo"):
        last = typo(rng, last)
    elif chance(noise.last_name_phonetic, "lastNamePhonetic"):
        last = phonetic_misspelling(rng, last)
    if any(ch in (first + last) for ch in "äöüßÄÖÜ") and chance(noise.transliterated, "transliterated"):
        first, last = _transliterate(first), _transliterate(last)
    if chance(noise.accents_dropped, "accentsDropped"):
        first, last = ascii_fold(first), ascii_fold(last)
    if chance(noise.initial_only, "initialOnly"):
        first = f"{first[0]}."
    if chance(noise.names_swapped, "namesSwapped"):
        first, last = last, first
    if chance(noise.upper_case, "upperCase"):
        first, last = first.upper(), last.upper()
    if chance(noise.first_name_missing, "firstNameMissing"):
        first = None

    birth: date | None = person.birth
    if chance(noise.birth_date_missing, "birthDateMissing"):
        birth = None
    elif (
        person.birth.day <= 12
        and person.birth.day != person.birth.month
        and chance(noise.day_month_swapped, "dayMonthSwapped")
    ):
        birth = date(person.birth.year, person.birth.day, person.birth.month)
    elif chance(noise.birth_date_typo, "birthDateTypo"):
        birth = _date_typo(rng, person.birth)

    emails: tuple[str, ...] = ()
    if not chance(noise.email_missing, "emailMissing"):
        email = person.emails[0]
        if len(person.emails) > 1 and chance(noise.other_email, "otherEmail"):
            email = rng.choice(person.emails[1:])
        local, _, domain = email.partition("@")
        if chance(noise.email_provider_change, "emailProviderChange"):
            domains = [d for d, _ in COUNTRIES[person.country].email_domains if d != domain]
            domain = rng.choice(domains)
        if domain == "gmail.com" and chance(noise.email_dots, "emailDots"):
            local = _toggle_dots(rng, local)
        if chance(noise.email_plus_tag, "emailPlusTag"):
            local = f"{local}+{rng.choice(_PLUS_TAGS)}"
        email = f"{local}@{domain}"
        if chance(noise.email_typo, "emailTypo"):
            local, _, domain = email.partition("@")
            email = f"{typo(rng, local)}@{domain}"
        if rng.random() < noise.email_case:
            email = ".".join(p.capitalize() for p in email.split("."))
        emails = (email,)

    phones: tuple[str, ...] = ()
    if not chance(noise.phone_missing, "phoneMissing"):
        phone = person.phones[0]
        if len(person.phones) > 1 and chance(noise.other_phone, "otherPhone"):
            phone = rng.choice(person.phones[1:])
        if chance(noise.phone_typo, "phoneTypo"):
            phone = _digit_typo(rng, phone, keep=len(phone) - 8)
        phones = (_as_typed(rng, phone),)

    street = city = postcode = None
    if not chance(noise.address_missing, "addressMissing"):
        place = person.places[0]
        if len(person.places) > 1 and chance(noise.old_address, "oldAddress"):
            place = person.places[1]
        street_name = place.street
        if chance(noise.street_abbreviated, "streetAbbreviated"):
            street_name = COUNTRIES[person.country].abbreviate(street_name)
        if chance(noise.street_typo, "streetTypo"):
            street_name = typo(rng, street_name)
        number = "" if chance(noise.house_number_missing, "houseNumberMissing") else place.number
        street = COUNTRIES[person.country].street_line(number, street_name).strip(" ,")
        city = typo(rng, place.city) if chance(noise.city_typo, "cityTypo") else place.city
        postcode = (
            _digit_typo(rng, place.postcode, keep=0) if chance(noise.postcode_typo, "postcodeTypo") else place.postcode
        )
    return Record(
        person.number, person.country, first, last, birth, emails, phones, street, city, postcode, tuple(applied)
    )


_PLUS_TAGS = ("shop", "news", "promo", "orders", "store", "2024", "amazon", "web")


def _toggle_dots(rng: random.Random, local: str) -> str:
    """The dots of a Gmail address dropped, or one added between two letters where there was none."""
    if "." in local:
        return local.replace(".", "")
    letters = [i for i in range(1, len(local)) if local[i - 1].isalpha() and local[i].isalpha()]
    if not letters:
        return local
    at = rng.choice(letters)
    return f"{local[:at]}.{local[at:]}"


def _transliterate(name: str) -> str:
    for umlaut, spelt in (("ä", "ae"), ("ö", "oe"), ("ü", "ue"), ("Ä", "Ae"), ("Ö", "Oe"), ("Ü", "Ue"), ("ß", "ss")):
        name = name.replace(umlaut, spelt)
    return name


def _date_typo(rng: random.Random, born: date) -> date:
    for _ in range(20):  # bounded: most one-digit changes give a real date
        text = born.strftime("%Y%m%d")
        position = rng.randrange(2, 8)  # nobody types 1 for 2 in the millennium
        changed = text[:position] + str(rng.randint(0, 9)) + text[position + 1 :]
        try:
            typed = date(int(changed[:4]), int(changed[4:6]), int(changed[6:]))
        except ValueError:
            continue
        if typed != born and date(1900, 1, 1) <= typed <= TODAY:
            return typed
    return born


def _digit_typo(rng: random.Random, text: str, *, keep: int) -> str:
    """One digit replaced, or two adjacent digits swapped, after the first `keep` characters."""
    positions = [i for i in range(keep, len(text)) if text[i].isdigit()]
    if len(positions) < 2:
        return text
    i = rng.choice(positions[:-1])
    if rng.random() < 0.5 and text[i + 1].isdigit() and text[i] != text[i + 1]:
        return text[:i] + text[i + 1] + text[i] + text[i + 2 :]
    return text[:i] + str((int(text[i]) + rng.randint(1, 9)) % 10) + text[i + 1 :]


def _as_typed(rng: random.Random, e164: str) -> str:
    parsed = phonenumbers.parse(e164)
    style = rng.random()
    if style < 0.3:
        return e164
    if style < 0.7:
        return phonenumbers.format_number(parsed, phonenumbers.PhoneNumberFormat.INTERNATIONAL)
    return phonenumbers.format_number(parsed, phonenumbers.PhoneNumberFormat.NATIONAL)


# -- typing errors --------------------------------------------------------------------------------
_KEYBOARD = ("qwertyuiop", "asdfghjkl", "zxcvbnm")


def _neighbours() -> dict[str, str]:
    found: dict[str, str] = {}
    for row_number, row in enumerate(_KEYBOARD):
        for column, key in enumerate(row):
            near = [row[c] for c in (column - 1, column + 1) if 0 <= c < len(row)]
            for other in (row_number - 1, row_number + 1):
                if 0 <= other < len(_KEYBOARD):
                    near += [
                        _KEYBOARD[other][c] for c in (column - 1, column, column + 1) if 0 <= c < len(_KEYBOARD[other])
                    ]
            found[key] = "".join(near)
    return found


NEIGHBOURS = _neighbours()
# Pollock & Zamora (1983): the first letter is wrong in about 7% of misspellings.
FIRST_LETTER_TYPO = 0.07


def typo(rng: random.Random, word: str) -> str:
    """One typing error: keyboard neighbour (35%), deletion (25%), transposition (25%), doubled letter (15%)."""
    letters = [i for i, ch in enumerate(word) if ch.isalpha()]
    if len(letters) < 3:
        return word
    position = letters[0] if rng.random() < FIRST_LETTER_TYPO else rng.choice(letters[1:])
    kind = rng.random()
    ch = word[position]
    if kind < 0.35:
        near = NEIGHBOURS.get(ascii_fold(ch).lower(), "")
        if near:
            replacement = rng.choice(near)
            return word[:position] + (replacement.upper() if ch.isupper() else replacement) + word[position + 1 :]
        kind = 0.4
    if kind < 0.6:
        return word[:position] + word[position + 1 :]
    if kind < 0.85 and position + 1 < len(word) and word[position + 1].isalpha() and word[position + 1] != ch:
        return word[:position] + word[position + 1] + ch + word[position + 2 :]
    return word[:position] + ch + word[position:]


_SOUND_ALIKES: tuple[tuple[str, str], ...] = (
    ("ph", "f"),
    ("th", "t"),
    ("ck", "k"),
    ("ll", "l"),
    ("tt", "t"),
    ("ss", "s"),
    ("nn", "n"),
    ("mm", "m"),
    ("rr", "r"),
    ("ie", "i"),
    ("ey", "ay"),
    ("ei", "ai"),
    ("ai", "ei"),
    ("y", "i"),
    ("z", "s"),
    ("tz", "z"),
    ("dt", "t"),
    ("ou", "u"),
    ("eau", "o"),
    ("au", "o"),
    ("c", "k"),
    ("v", "w"),
    ("w", "v"),
    ("x", "ks"),
    ("qu", "k"),
    ("j", "y"),
)


def phonetic_misspelling(rng: random.Random, word: str) -> str:
    """A spelling that sounds the same (Meyer → Mayer, Philips → Filips); a typo when none applies."""
    lowered = word.lower()
    options = [(old, new) for old, new in _SOUND_ALIKES if old in lowered[1:]]
    if not options:
        return typo(rng, word)
    old, new = rng.choice(options)
    at = lowered.index(old, 1)
    replaced = new.upper() if word[at : at + len(old)].isupper() else new
    return word[:at] + replaced + word[at + len(old) :]


PostcodeOf = Callable[[random.Random], str]
__all__ = ["Country", "NoiseModel", "Person", "PopulationModel", "PostcodeOf", "Record", "people", "records"]
