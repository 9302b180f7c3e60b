"""How alike two profiles are: one comparison per field, each giving an agreement level with a
Fellegi-Sunter weight (log2 of how much likelier that level is for two records of one person than
for two different people), summed with a prior and mapped to a score in [0, 1] by a logistic.

A missing value adds nothing either way. Weights are set from how often each level occurs for true
duplicates and for look-alikes (namesakes, households, people born the same day), not fitted to one
data set; the benchmark in `bench/identity_matching.py` checks them against generated people.
"""

from __future__ import annotations

import math
import re
from collections import OrderedDict
from collections.abc import Collection, Container, Sequence
from datetime import date
from functools import lru_cache
from typing import NamedTuple, TypeGuard

import jellyfish

from app.domain.matching.fields import MatchAddress, MatchFields, phone_country
from app.domain.matching.nicknames import are_nicknames, forms_initials

# Two profiles picked among blocking candidates are different people far more often than not: with
# no evidence at all the odds are 2^-12 (1 in 4,096). A shared email (+16) alone then gives 0.94, a
# shared phone (+13) 0.67, a full name (+9.5) alone 0.15, a full name and birth date 0.99.
PRIOR_BITS = -12.0
# A shared email, phone or address is what a household shares too (a family mailbox, a landline,
# the home), and twins a birth date. When the given names or birth dates contradict each other, all
# of it together says "same household", not "same person", and counts for at most this much: twins
# stay apart.
HOUSEHOLD_CONTACT_BITS = 4.0
# Bits lost when the names only agree crossed (first name in one record, last name in the other):
# a data-entry slip, rarer than two people whose first and last names mirror one another.
SWAPPED_NAMES_BITS = -1.0
SWAPPED_NAMES = "firstLastSwapped"  # the reason (field "name") saying the names were read so
IN_EMAIL = "inEmail"  # the level of a given name's ending or a surname read in an email

# Jaro-Winkler bands: 0.92 and up is a typo or a spelling variant (Meyer/Meier, Smith/Smyth); 0.85
# to 0.92 is two edits or a short name with one; below, different names.
CLOSE = 0.92
NEAR = 0.85
# Given names further apart than this (Monika/Sabine, Antoine/Emma) are two people's even on one
# birth date, unless a name of one is near a name of the other (`_names_cross`): twins sharing a
# family's mailbox or landline (`another_person`). One person's two given names seldom are (a
# nickname mistyped: Elizaeth/Betty).
TWINS_APART = 0.6
# A given name this many profiles of the store hold is a name people are given, not a typo of one
# (`siblings_names`, `read_apart`): a typo makes a name few profiles hold (Mrata beside Marta),
# twins' and sisters' names are common (Anna and Lena, Sara and Marta: near, as Jaro-Winkler reads
# them; Maria and Marta: one letter apart).
COMMON_GIVEN_NAME = 5

GIVEN_NAME_BITS = {
    "exact": 5.0,
    "nickname": 4.0,
    "shortForm": 3.5,
    "jaroWinkler": 3.0,
    # One letter typed wrong, dropped or swapped in a short name (Jan/Jsn, Ava/Aa, Lea/Lsa), which
    # Jaro-Winkler scores low: weak evidence for, but no contradiction either.
    "damerauLevenshtein": 1.0,
    "initial": 1.0,
    # The same name but its ending (Daniel/Daniela, Marie/Maria, Louis/Louise, Jean/Jeanne): the
    # feminine and masculine forms of one name, or two names of one family, far more often than a
    # typo. Siblings and twins are named so: it contradicts nearly as much as a different name.
    "variant": -6.0,
    # An ending dropped (Sophi/Sophie, Mari/Maria) where the shorter name's own email spells the other
    # whole: a letter missed in a form, not a sibling's name (`_given_name_in_email`). Read so only
    # on one birth date; a typo's weight, as Jaro-Winkler's.
    IN_EMAIL: 3.0,
    # Rare for one person (an unknown nickname, a name changed at naturalisation); the norm for
    # siblings, spouses and twins, who share everything else.
    "different": -7.0,
}
SURNAME_BITS = {
    # Weak on purpose: among candidates a shared surname is common (families, Garcia, Müller, Smith).
    "exact": 4.5,
    "tokens": 3.5,  # one part of a compound surname: "Garcia Lopez" and "Garcia", "van den Berg" and "Berg"
    "metaphone": 1.5,  # sounds alike but spelt apart (Martin/Marten): as often another family as a misspelling
    "jaroWinkler": 3.0,
    "jaroWinklerNear": 1.0,
    "damerauLevenshtein": 2.0,  # one edit that Jaro-Winkler scores low (Berdard/Verdard: the first letter)
    "different": -4.0,  # married names change: milder than a different given name
    # Another surname, which the other's email address holds ("Elodie Morel, e.fachin@" beside
    # "Elodie Fachin"): a name changed at marriage, the old one kept in the mailbox. Read so only on
    # one birth date, beside a given name that agrees (`_surname_in_email`).
    IN_EMAIL: 2.0,
}
BIRTH_DATE_BITS = {
    # About 1 in 20,000 people share a birth date (14 bits), discounted by a third like the levels
    # below: twins and people born the same day gather in the blocks this is scored in.
    "exact": 9.0,
    # 03/04 typed for 04/03 (American and European orders mixed up): as rare a coincidence as the
    # same date, but a slip only a few duplicates make.
    "dayMonthSwap": 5.5,
    # One digit typed wrong or two swapped: some fifty dates lie one edit away from any date, so
    # fifty times likelier than the same date between strangers, and a slip a few duplicates make.
    # 3.0 until git 5244faf: on stores of our population (5,000 people, seeds 1-4, through the API)
    # no pair of two people whose names agree had birth dates one edit apart, and 12 pairs of one
    # person's profiles were left under the default threshold by another email or phone (-1, -1.5).
    # At 4.5, 11 of them are listed (and 12 on seeds 5-8, held as a check), no pair of two people.
    "damerauLevenshtein": 4.5,
    "different": -10.0,  # a true duplicate with an unrelated birth date is a rare entry error
    # One record without a birth date, whose email carries the other's year of birth ("jeantamac63@"
    # beside Jean Tamac, born 1963): people put it there, and a namesake's digits are that year by
    # chance about one time in sixty. Read so only when both names agree (`_year_in_email`).
    "yearInEmail": 4.0,
}
EMAIL_BITS = {
    "exact": 16.0,
    "sameMailbox": 15.0,  # one mailbox: +tags dropped, and dots where the provider ignores them (Gmail)
    "damerauLevenshtein": 5.0,  # one typo in a long address
    # The same "jean.dupont" at two providers: derived from the name, so it adds little to a name
    # that already agrees (namesakes pick the same handle)...
    "localPart": 1.0,
    # ... unless the handle carries digits ("jdupont84"), which people add to make it theirs.
    "localPartWithDigits": 6.0,
    "different": -1.0,  # people keep several addresses: weak evidence against
}
PHONE_BITS = {
    "exact": 13.0,  # weaker than an email: landlines are shared, numbers are recycled
    "lastDigits": 11.0,  # same subscriber number under another country code
    "damerauLevenshtein": 5.0,
    "different": -1.5,
}
ADDRESS_BITS = {
    "sameAddress": 6.5,  # a household shares it: strong only with the names (a full name and this: 0.94)
    "sameStreet": 4.0,  # no house number on one side
    "sameStreetOtherNumber": 0.0,  # neighbours
    "samePostcode": 1.0,
    "sameCity": 0.0,
    "different": -1.5,  # people move
    # The same street and number but another flat on the second line: neighbours in one building.
    "sameBuildingOtherUnit": 0.0,
    "secondLineOnly": 0.0,  # nothing but the second lines to compare: their own bits below
}
# A second street line (a building's or a locality's name, a flat) that agrees adds to what the
# address says: few of the people at one address write the same second line by chance.
LINE2_BITS = {"same": 1.5, "different": 0.0}

# Names no other profile of the store sounds like: the two are the only profiles holding their names'
# blocking key (`s:`, both names' phonetic codes). PRIOR_BITS takes the names of candidates as they
# usually come, shared with namesakes in the same block; a namesake of names the store holds nowhere
# else would need another person named so who is not in it. Counted only when nothing else the two
# hold disagrees (a namesake's birth date, email, phone or home are other): a full name alone then
# scores 0.74. On stores of our generated population (2,000 people, seeds 2, 4 and 6, through the API
# with the rules answering): 297 -> 302, 338 -> 351 and 305 -> 313 true pairs found, the same 6, 13
# and 7 wrong. An email allowed to differ (people keep several) found 1-3 true pairs more a store,
# but listed 16 pairs of namesakes in the demo data (two Lukas Schmidts, each with a mailbox of his
# own, in a store of 450 profiles drawn from few names); 3.5 bits listed two namesakes with another
# address.
UNIQUE_NAMES_BITS = 4.0
HELD_BY_NO_OTHER = "heldByNoOther"  # the reason (field "name") saying they were counted
# The levels at which names agree enough for their sound to be theirs, and the fields whose
# disagreement says another person whatever the names.
_UNIQUE_GIVEN_NAMES = frozenset({"exact", "nickname", "jaroWinkler", "damerauLevenshtein"})
_UNIQUE_SURNAMES = frozenset({"exact", "jaroWinkler", "tokens"})
_UNIQUE_CONTRADICTED = frozenset({"birthDate", "email", "phone", "address"})

# Name levels that say "another name": they make the crossed reading worth a look, and a given name
# at one of them makes everything else shared count as a household's.
DISAGREEING_NAMES = frozenset({"different", "variant"})
# Given name levels that agree enough for an email to say the rest (`_surname_in_email`,
# `_year_in_email`): an initial or a name one letter off is anyone's.
_AGREEING_GIVEN_NAMES = frozenset({"exact", "nickname", "shortForm", "jaroWinkler"})
# The surname levels beside which an email carrying a year says a birth date: beside a surname spelt
# apart it is another family's as often (Lomhoff/Lobhoff, Guiau/Guinand: 3 of the 4 such pairs left
# under the threshold on our population's seeds 1-4).
_SAME_SURNAMES = frozenset({"exact", "tokens"})
# The shortest surname looked for in an email address: shorter ones are in many by chance (Vos, Lee).
MIN_SURNAME_IN_EMAIL = 4
# The levels the rules read in an email for a surname or a birth date, each with the level the
# field says alone (None: none, a value missing). A learned model reads the fields alone, as its bound
# does, when it estimates as when it scores (`learned.comparison`).
READ_IN_EMAIL: dict[tuple[str, str], str | None] = {
    ("firstName", IN_EMAIL): "variant",
    ("lastName", IN_EMAIL): "different",
    ("birthDate", "yearInEmail"): None,
}

# Given name levels that read two names as one mistyped: one letter apart, two names may be read so
# (`read_apart`).
_TYPO_GIVEN_NAMES = frozenset({"jaroWinkler", "damerauLevenshtein"})

# Email levels that mean one mailbox (what a person rarely shares, unlike a home or a landline).
ONE_MAILBOX = frozenset({"exact", "sameMailbox"})

MIN_EMAIL_LENGTH_FOR_TYPO = 10
MIN_LOCAL_PART = 5
# Mailboxes of companies or roles, not people: a shared one says nothing about identity.
GENERIC_LOCAL_PARTS = frozenset(
    {"info", "contact", "admin", "office", "mail", "email", "hello", "sales", "support", "noreply", "test"}
)


class MatchReason(NamedTuple):
    """One comparison of a pair: a named tuple, made for every field of every pair compared (a frozen
    dataclass took twice as long to make)."""

    field: str
    method: str
    similarity: float


# The name of this hand-set scorer, as a candidate says which scorer answered (a learned model's
# name is its version: `learned.MatchModel.name`).
RULES = "rules"


class MatchScore(NamedTuple):
    score: float  # rounded to SCORE_DIGITS (`shown`)
    reasons: list[MatchReason]
    scorer: str = RULES


# A score is shown with 4 decimals, and compared, ordered and filtered as shown: kept finer, pairs shown
# equal were ordered by digits nobody saw, and one shown as 1.0 was left out by minScore: 1.0.
SCORE_DIGITS = 4


def shown(score: float) -> float:
    return round(score, SCORE_DIGITS)


class _Level(NamedTuple):
    method: str
    similarity: float
    bits: float


# The comparison caches below hold up to ~200,000 results for the life of the process, but few
# distinct ones (1,686 among 160,000 after a review list of 20,000 profiles): each distinct level is
# one shared instance. An instance per result was an object for every collection of the cycle
# collector to walk: after that review list, 220,000 tracked objects and a full collection of
# 290-319 ms; 62,000 and 94-125 ms with shared levels.
_LEVELS: dict[tuple[str, float, float], _Level] = {}
MAX_SHARED_LEVELS = 1 << 16  # past this many distinct levels, new ones are made, not kept


def _level(method: str, similarity: float, bits: float) -> _Level:
    key = (method, similarity, bits)
    found = _LEVELS.get(key)
    if found is None:
        found = _Level(method, similarity, bits)
        if len(_LEVELS) < MAX_SHARED_LEVELS:
            _LEVELS[key] = found
    return found


def score_pair(a: MatchFields, b: MatchFields) -> MatchScore:
    """Score two profiles. Symmetric by construction: the pair is put in one canonical order first,
    so no comparator (Jaro-Winkler's matching window is one) can make score(a, b) != score(b, a)."""
    found = score_pair_reaching(a, b, 0.0)
    assert found is not None  # every pair reaches 0
    return found


def score_pair_reaching(
    a: MatchFields,
    b: MatchFields,
    min_score: float,
    *,
    unique_names: bool = False,
    common_given_names: Collection[str] = frozenset(),
) -> MatchScore | None:
    """`score_pair(a, b)`, or None when the names and birth dates already cap the pair below
    `min_score` whatever its contact points and addresses say (another birth date, or another given
    name: what a household shares then counts for at most HOUSEHOLD_CONTACT_BITS). Most pairs sharing
    only a broad key (a common given name and an initial, a surname code and a birth year) stop here,
    before the costlier comparisons of emails, phones and addresses. `unique_names`: no other profile
    of the store holds their names' key (UNIQUE_NAMES_BITS; it never lifts a pair capped here).
    `common_given_names`: the names people are given in the store (`read_apart`)."""
    if birth_dates_cap_below(a.birth_date, b.birth_date, min_score):
        return None  # most pairs sharing only a name key: not even the names need comparing
    born = _birth_date(a.birth_date, b.birth_date)
    if b.order_key < a.order_key:
        a, b = b, a
    reasons: list[MatchReason] = []
    bits = PRIOR_BITS + _names(a, b, reasons)
    given = next((r.method for r in reasons if r.field == "firstName"), None)
    if given in _TYPO_GIVEN_NAMES and common_given_names:
        apart = read_apart(a, b, reasons, common_given_names)
        if apart is not None:
            bits += GIVEN_NAME_BITS["different"] - GIVEN_NAME_BITS[given]
            reasons, given = apart, "different"
    # What the emails say of the names and the birth date.
    one_birth_date = born is not None and born.method == "exact"
    if given in _AGREEING_GIVEN_NAMES:
        if one_birth_date:
            bits += _surname_in_email(a, b, reasons)
        elif born is None:
            born = _year_in_email(a, b, reasons)
    elif given == "variant" and one_birth_date and (read := _given_name_in_email(a, b, reasons)):
        bits, given = bits + read, IN_EMAIL
    other_given_name = given in DISAGREEING_NAMES
    shared = 0.0  # what a household shares: contact points and the address, and twins a birth date too
    if born is not None:
        reasons.append(MatchReason("birthDate", born.method, born.similarity))
        if other_given_name and born.bits > 0:
            shared += born.bits
        else:
            bits += born.bits
    other_birth_date = born is not None and born.method == "different"
    # Contradicted whatever the rest says (only a shared mailbox lifts the cap of a given name
    # differing in its ending, below): the rest adds at most HOUSEHOLD_CONTACT_BITS.
    if (given == "different" or other_birth_date) and shown(_logistic(bits + HOUSEHOLD_CONTACT_BITS)) < min_score:
        return None
    email, contact_bits = _contacts(a, b, reasons)
    shared += contact_bits
    # A given name differing in its ending only is a sibling's (Daniel/Daniela) or a letter dropped
    # (Giulia/Giula). Siblings share a home, a landline and, twins, a birth date, but seldom a mailbox:
    # with one in common the ending reads as a typo (its own bits still count against).
    typo_in_ending = given == "variant" and email is not None and email.method in ONE_MAILBOX
    contradicted = (other_given_name and not typo_in_ending) or other_birth_date
    bits += min(shared, HOUSEHOLD_CONTACT_BITS) if contradicted else shared
    if unique_names and _names_theirs_alone(reasons):
        reasons.append(MatchReason("name", HELD_BY_NO_OTHER, 1.0))
        bits += UNIQUE_NAMES_BITS
    return MatchScore(shown(_logistic(bits)), reasons)


# `names_and_birth_date_reasons` by the two's names and birth dates: a learned model's lookup asks
# for each look-alike's twice, for its bound on the names alone and for its score. The least recently
# read leaves as each new one comes: emptied at once when full, the 16,384 took 12-20 ms to free, in
# the middle of one lookup (5 of the 20 slowest of 2,000 learned lookups at 100,000 profiles).
_NAMES_READ: OrderedDict[tuple[str, str, date | None, str, str, date | None], tuple[MatchReason, ...]] = OrderedDict()
_NAMES_READ_MOST = 1 << 14  # a lookup reads a look-alike's names twice in a row: a few thousand suffice


def names_and_birth_date_reasons(a: MatchFields, b: MatchFields) -> tuple[MatchReason, ...]:
    """The reasons `score_pair` gives two profiles' names and birth dates, read in the same order,
    without comparing anything else: what a learned model bounds a pair's score from
    (`learned.MatchModel.ceiling`). They depend on those values alone (the pair's canonical order
    is by surname, given name and birth date first), so each pair of values is read once."""
    key = (a.first_name, a.last_name, a.birth_date, b.first_name, b.last_name, b.birth_date)
    found = _NAMES_READ.get(key)
    if found is not None:
        _NAMES_READ.move_to_end(key)
        return found
    born = _birth_date(a.birth_date, b.birth_date)
    if b.order_key < a.order_key:
        a, b = b, a
    reasons: list[MatchReason] = []
    _names(a, b, reasons)
    if born is not None:
        reasons.append(MatchReason("birthDate", born.method, born.similarity))
    if len(_NAMES_READ) >= _NAMES_READ_MOST:
        _NAMES_READ.popitem(last=False)
    found = _NAMES_READ[key] = tuple(reasons)
    return found


def contact_reasons(a: MatchFields, b: MatchFields) -> list[MatchReason]:
    """The reasons `score_pair` gives two profiles' emails, phones and addresses, read in the same
    order: after `names_and_birth_date_reasons`, all of its reasons, without its bits (a learned model
    weighs them its own way, its bound having read the names already)."""
    return [*point_reasons(a, b), *address_reasons(a, b)]


def point_reasons(a: MatchFields, b: MatchFields) -> list[MatchReason]:
    """The first of `contact_reasons`: the emails' and phones' (a learned model bounds a pair on
    them before it compares the addresses, the dearer part)."""
    if b.order_key < a.order_key:
        a, b = b, a
    return [
        MatchReason(field, level.method, level.similarity)
        for field, level in (("email", _emails(a, b)), ("phone", _phones(a, b)))
        if level is not None
    ]


def address_reasons(a: MatchFields, b: MatchFields) -> list[MatchReason]:
    """The rest of `contact_reasons`: the addresses'."""
    if b.order_key < a.order_key:
        a, b = b, a
    reasons: list[MatchReason] = []
    _addresses(a.addresses, b.addresses, reasons)
    return reasons


def _contacts(a: MatchFields, b: MatchFields, reasons: list[MatchReason]) -> tuple[_Level | None, float]:
    """The email, phone and address comparisons of a pair in canonical order, their reasons added to
    `reasons`: the email's level and the bits they all give."""
    email, bits = _emails(a, b), 0.0
    for field, level in (("email", email), ("phone", _phones(a, b))):
        if level is not None:
            reasons.append(MatchReason(field, level.method, level.similarity))
            bits += level.bits
    return email, bits + _addresses(a.addresses, b.addresses, reasons)


def _names_theirs_alone(reasons: list[MatchReason]) -> bool:
    """Whether a pair whose names no other profile holds may count it (UNIQUE_NAMES_BITS): the names
    agree and nothing else contradicts."""
    levels = {reason.field: reason.method for reason in reasons}
    return (
        levels.get("firstName") in _UNIQUE_GIVEN_NAMES
        and levels.get("lastName") in _UNIQUE_SURNAMES
        and all(levels.get(name) != "different" for name in _UNIQUE_CONTRADICTED)
    )


def _logistic(bits: float) -> float:
    bits = max(-60.0, min(60.0, bits))
    return 1.0 / (1.0 + math.pow(2.0, -bits))


# The most a pair whose birth dates differ scores (0.0028): the best names either way round, the
# birth dates' bits, and the most a contradicted pair's shared contacts and home count for.
_BEST_NAMES_BITS = max(GIVEN_NAME_BITS.values()) + max(SURNAME_BITS.values())
_OTHER_BIRTH_DATE_CEILING = shown(
    _logistic(PRIOR_BITS + _BEST_NAMES_BITS + BIRTH_DATE_BITS["different"] + HOUSEHOLD_CONTACT_BITS)
)


def birth_dates_cap_below(x: date | None, y: date | None, min_score: float) -> bool:
    """Whether two birth dates alone keep a pair below `min_score` (they differ: at most 0.0028)."""
    if x is None or y is None or x == y or min_score <= _OTHER_BIRTH_DATE_CEILING:
        return False
    found = _birth_date(x, y)
    return found is not None and found.method == "different"


def _jaro_winkler(x: str, y: str) -> float:
    similarity: float = jellyfish.jaro_winkler_similarity(x, y) if x <= y else jellyfish.jaro_winkler_similarity(y, x)
    return similarity


def _one_edit_apart(x: str, y: str) -> bool:
    """Whether the Damerau-Levenshtein distance of two strings is 1: one letter replaced, added or
    dropped, or two neighbours swapped. Every typo test asks this alone, of most pairs compared
    (phones, emails, names): jellyfish computes the whole distance, 2.5-6.6 us a pair, this 0.6-0.9."""
    length, other = len(x), len(y)
    if length == other:
        if x == y:
            return False
    elif length - other not in (1, -1):
        return False
    i, shorter = 0, min(length, other)
    while i < shorter and x[i] == y[i]:
        i += 1
    if length > other:
        return x[i + 1 :] == y[i:]
    if length < other:
        return x[i:] == y[i + 1 :]
    return x[i + 1 :] == y[i + 1 :] or (x[i + 2 :] == y[i + 2 :] and x[i] == y[i + 1] and x[i + 1] == y[i])


# -- names ----------------------------------------------------------------------------------------
def _names(a: MatchFields, b: MatchFields, reasons: list[MatchReason]) -> float:
    given = _given_name(a.first_name, a.first_joined, b.first_name, b.first_joined)
    surname = _surname(a.last_name, a.last_joined, a.last_phonetic, b.last_name, b.last_joined, b.last_phonetic)
    straight = (given.bits if given else 0.0) + (surname.bits if surname else 0.0)
    # Crossed names are looked at only when the straight reading has a disagreement to explain.
    if not (_disagrees(given) or _disagrees(surname)):
        return _keep(reasons, given, surname, straight)
    # Which field of which record holds the given name depends on which record was swapped: both
    # readings are tried, each comparing given name with given name (so Billy/William still meet).
    # A reading whose given names disagree is out whatever its surnames say, which are then not
    # compared: a given name read against a surname mostly disagrees, and comparing all four pairs
    # of values (each seldom compared before) took a third of a learned model's bounds.
    best: tuple[float, _Level, _Level] | None = None
    for given_names, surnames in (
        (
            (a.first_name, a.first_joined, b.last_name, b.last_joined),
            (a.last_name, a.last_joined, a.last_phonetic, b.first_name, b.first_joined, b.first_phonetic),
        ),
        (
            (a.last_name, a.last_joined, b.first_name, b.first_joined),
            (a.first_name, a.first_joined, a.first_phonetic, b.last_name, b.last_joined, b.last_phonetic),
        ),
    ):
        crossed_given = _given_name(*given_names)
        if not _agrees(crossed_given):
            continue
        crossed_surname = _surname(*surnames)
        if not _agrees(crossed_surname):
            continue
        crossed = crossed_given.bits + crossed_surname.bits + SWAPPED_NAMES_BITS
        if best is None or crossed > best[0]:
            best = (crossed, crossed_given, crossed_surname)
    if best is None or best[0] <= straight:
        return _keep(reasons, given, surname, straight)
    reasons.append(MatchReason("name", SWAPPED_NAMES, 1.0))
    return _keep(reasons, best[1], best[2], best[0])


def surnames_differ(a: MatchFields, b: MatchFields) -> bool:
    """Whether two profiles' surnames are other names: not one spelling, sound or compound part of
    the other (the straight reading: `blocking.given_name_alone` asks it of given names alike)."""
    level = _surname(a.last_name, a.last_joined, a.last_phonetic, b.last_name, b.last_joined, b.last_phonetic)
    return _disagrees(level)


def another_person(a: MatchFields, b: MatchFields) -> bool:
    """Whether two records' given names and birth dates say two people: the given names other names
    (neither a typo, a nickname nor a short form of one another, either way round with the surnames)
    and the birth dates not one date nor a slip apart. With a birth date missing, only given names
    far apart say so (below NEAR, not a variant's ending): a name misspelt twice
    (Thoams/Tommy) is still read as one. On one birth date, or two a slip apart (one digit, the day
    and month swapped: maybe one date), only given names further apart still (TWINS_APART) that no
    name of the other comes near: twins. With a given name missing, another birth date (not a slip)
    says it alone: a parent or a sibling writing a surname and a birth date through the family's
    mailbox. One person's records seldom differ so; the members of a household sharing a mailbox or
    a landline nearly always do. Beside another birth date, given names two edits apart are other
    names too (Maria/Martina), and so is another surname, whatever the given names say: a married
    name keeps its birth date. An initial, with a birth date missing or on one birth date, is
    another given name when no part of the other's, nor a known form of one, starts with it (M.
    beside Sylvie; A. beside Toni may be Antonio's)."""
    born = _birth_date(a.birth_date, b.birth_date)
    if not a.first_joined or not b.first_joined:  # a given name missing: the birth date says instead
        return born is not None and born.method == "different"
    a, b, reasons, given = _given_names_read(a, b)
    other_date = born is not None and born.method == "different"
    if other_date and any(r.field == "lastName" and r.method == "different" for r in reasons):
        return True  # another surname beside another birth date: not a married name
    if given is not None and given.method == "jaroWinkler" and other_date:
        # Read as a typo by Jaro-Winkler, which weighs a shared start much, but two edits apart
        # (Maria/Martina): beside another birth date, two sisters' names, seldom one's misspelt.
        return a.first_joined != b.first_joined and not _one_edit_apart(a.first_joined, b.first_joined)
    if given is None or given.method not in DISAGREEING_NAMES:
        return False
    if other_date:
        return True
    if min(len(a.first_joined), len(b.first_joined)) < 2:
        initial, other = (a, b) if len(a.first_joined) < 2 else (b, a)
        return given.method == "different" and initial.first_joined not in _initials(other)
    far = NEAR if born is None else TWINS_APART
    if given.method != "different" or given.similarity >= far:
        return False
    return born is None or not _names_cross(a, b)


def siblings_names(a: MatchFields, b: MatchFields) -> tuple[str, str] | None:
    """The two given names (`first_joined`) of records `another_person` reads as one person's only
    because the names are near, left to how common each is in the store: both held by
    COMMON_GIVEN_NAME profiles or more, they are two names, so two people; None when no count can
    tell. They are
    - other names (not a typo, a nickname, a short form, a variant's ending nor an initial; neither
      near a name of the other's) closer than TWINS_APART, on one birth date or a slip apart, as
      twins' names may be (Anna/Lena);
    - or, whatever the birth dates, names one letter apart that sound otherwise (`letter_apart`),
      read as a typo: sisters' (Maria/Marta), or one name mistyped (Julien/Julifn)."""
    born = _birth_date(a.birth_date, b.birth_date)
    if min(len(a.first_joined), len(b.first_joined)) < 2:
        return None
    a, b, reasons, given = _given_names_read(a, b)
    if _read_as_typo(given, reasons) and letter_apart(a, b):
        return a.first_joined, b.first_joined
    if born is None or born.method == "different":
        return None
    if given is None or given.method != "different" or given.similarity < TWINS_APART or _names_cross(a, b):
        return None  # one person's names, or told apart already (`another_person`)
    return a.first_joined, b.first_joined


def letter_apart(a: MatchFields, b: MatchFields) -> bool:
    """Whether two given names are one letter apart in place and sound otherwise (Maria/Marta,
    Mario/Marco, Emma/Ella): a typo, or two names people are given. A letter doubled, dropped or
    swapped (Ana/Anna), or one that keeps the sound (Katherine/Catherine, Erik/Eric), is a spelling
    of one name."""
    x, y = a.first_joined, b.first_joined
    if len(x) != len(y) or a.first_phonetic == b.first_phonetic:
        return False
    return sum(p != q for p, q in zip(x, y, strict=True)) == 1


def read_apart(
    a: MatchFields, b: MatchFields, reasons: Sequence[MatchReason], common_given_names: Container[str]
) -> list[MatchReason] | None:
    """The reasons of a pair's names (as `_names` gives them) with its given names read as other
    names, when they are read as a typo but are one letter apart, sound otherwise (`letter_apart`)
    and are both names people are given (`common_given_names`: those COMMON_GIVEN_NAME profiles of
    the store or more hold): Maria and Marta, twins sharing a home and a birth date, are two people,
    where Mrata beside Marta is one. None when they are not read so."""
    for index, reason in enumerate(reasons):
        if reason.field != "firstName":
            continue
        if not (
            _read_as_typo(reason, reasons)
            and letter_apart(a, b)
            and a.first_joined in common_given_names
            and b.first_joined in common_given_names
        ):
            return None
        return [*reasons[:index], MatchReason("firstName", "different", reason.similarity), *reasons[index + 1 :]]
    return None


def _read_as_typo(given: MatchReason | None, reasons: Sequence[MatchReason]) -> bool:
    """Whether a pair's given names, read straight (not swapped with the surnames), are read as a typo."""
    return given is not None and given.method in _TYPO_GIVEN_NAMES and not _crossed(reasons)


def _crossed(reasons: Sequence[MatchReason]) -> bool:
    """Whether a pair's names were read crossed (the given name of one against the surname of the
    other): its name reasons are then not the straight fields'."""
    return any(r.method == SWAPPED_NAMES for r in reasons)


def _given_names_read(
    a: MatchFields, b: MatchFields
) -> tuple[MatchFields, MatchFields, list[MatchReason], MatchReason | None]:
    """Two records as `score_pair` orders them (the same answer either way round), the reasons of
    their names' better reading (straight or with the names swapped) and its given name's: what
    `another_person` and `siblings_names` both judge, so that they read a pair alike."""
    if b.order_key < a.order_key:
        a, b = b, a
    reasons: list[MatchReason] = []
    _names(a, b, reasons)
    return a, b, reasons, next((r for r in reasons if r.field == "firstName"), None)


def _initials(fields: MatchFields) -> frozenset[str]:
    """The initials a profile's given name may be written as: each of its parts' and their known
    forms' (`nicknames.forms_initials`). Names written the other way round are read by `_names`."""
    return frozenset().union(*map(forms_initials, fields.first_name.split()))


def _names_cross(a: MatchFields, b: MatchFields) -> bool:
    """Whether a given name of either is near (NEAR) a name of the other's, given name or surname:
    one person's names swapped and mistyped (Muller Petra/Petra Schaefer), not twins' names."""
    for x, y in ((a, b), (b, a)):
        names = [name for name in f"{y.first_name} {y.last_name}".split() if len(name) > 1]
        if any(_jaro_winkler(given, name) >= NEAR for given in x.first_name.split() for name in names):
            return True
    return False


def _disagrees(level: _Level | None) -> bool:
    return level is not None and level.method in DISAGREEING_NAMES


def _agrees(level: _Level | None) -> TypeGuard[_Level]:
    """Whether both names are there and agree (at any level but those of DISAGREEING_NAMES)."""
    return level is not None and level.method not in DISAGREEING_NAMES


def _keep(reasons: list[MatchReason], given: _Level | None, surname: _Level | None, bits: float) -> float:
    if given is not None:
        reasons.append(MatchReason("firstName", given.method, given.similarity))
    if surname is not None:
        reasons.append(MatchReason("lastName", surname.method, surname.similarity))
    return bits


# Names and birth dates repeat across pairs: each comparison of two values is made once.
@lru_cache(maxsize=1 << 16)
def _given_name(x: str, x_joined: str, y: str, y_joined: str) -> _Level | None:
    if not x_joined or not y_joined:
        return None
    if x_joined == y_joined:
        return _level("exact", 1.0, GIVEN_NAME_BITS["exact"])
    if len(x_joined) == 1 or len(y_joined) == 1:  # "J." against "Jean"
        if x_joined[0] == y_joined[0]:
            return _level("initial", 1.0, GIVEN_NAME_BITS["initial"])
        return _level("different", 0.0, GIVEN_NAME_BITS["different"])
    if are_nicknames(x, y) or _token_nicknames(x, y):
        return _level("nickname", 1.0, GIVEN_NAME_BITS["nickname"])
    similarity = _jaro_winkler(x_joined, y_joined)
    if _other_ending(x_joined, y_joined):
        return _level("variant", similarity, GIVEN_NAME_BITS["variant"])
    if _short_form(x, x_joined, y, y_joined):
        return _level("shortForm", similarity, GIVEN_NAME_BITS["shortForm"])
    if similarity >= CLOSE:
        return _level("jaroWinkler", similarity, GIVEN_NAME_BITS["jaroWinkler"])
    if _one_edit_apart(x_joined, y_joined):
        return _level("damerauLevenshtein", similarity, GIVEN_NAME_BITS["damerauLevenshtein"])
    # Unlike surnames, given names that merely sound alike or look alike are mostly other names
    # (Peter/Petra, Maria/Martina, Jan/Jean): another given name, whatever the phonetic code says.
    return _level("different", similarity, GIVEN_NAME_BITS["different"])


_DOUBLED = re.compile(r"(.)\1+")
_NUMBERS = re.compile(r"\d+")
# What turns a name into another form of it: Jan/Janine, Paul/Pauline, Maria/Marie, Jean/Jeanne.
_NAME_ENDINGS = frozenset(
    {"", "a", "e", "i", "o", "y", "ia", "ie", "io", "na", "ne", "ina", "ine", "ita", "ette", "elle"}
)


def _other_ending(x: str, y: str) -> bool:
    """Two forms of one name that differ in their ending only (Daniel/Daniela, Marie/Maria, Jean/Jeanne):
    after the longest common start, each keeps one of `_NAME_ENDINGS`. A doubled or dropped letter
    alone (Ana/Anna) is not, nor letters swapped or mistyped at the end (Marai/Maria, Isabeloe)."""
    common = 0
    while common < min(len(x), len(y)) and x[common] == y[common]:
        common += 1
    if common < 2 or x[common:] not in _NAME_ENDINGS or y[common:] not in _NAME_ENDINGS:
        return False  # most pairs: asked before the doubled letters, which cost two regex passes
    return _DOUBLED.sub(r"\1", x) != _DOUBLED.sub(r"\1", y)


def _token_nicknames(x: str, y: str) -> bool:
    # Compound given names: "Jean-Baptiste" against "JB" is in the table; "Maria Pilar" against
    # "Pili" needs a look at each part.
    if " " not in x and " " not in y:
        return False
    return any(are_nicknames(p, q) or p == q for p in x.split() for q in y.split())


def _short_form(x: str, x_joined: str, y: str, y_joined: str) -> bool:
    shorter, longer = (x_joined, y_joined) if len(x_joined) <= len(y_joined) else (y_joined, x_joined)
    if len(shorter) >= 3 and longer.startswith(shorter):  # Alex/Alexander, Max/Maximilian
        return not _other_ending(shorter, longer)
    return _token_subset(x, y)


def _token_subset(x: str, y: str) -> bool:
    """One compound name holds every part of the other: "Marie Claire"/"Marie", "Garcia Lopez"/"Garcia"."""
    xs, ys = x.split(), y.split()
    if len(xs) == len(ys):
        return False
    small, large = (xs, ys) if len(xs) < len(ys) else (ys, xs)
    return all(len(part) >= 3 and part in large for part in small)


@lru_cache(maxsize=1 << 16)
def _surname(x: str, x_joined: str, x_code: str, y: str, y_joined: str, y_code: str) -> _Level | None:
    if not x_joined or not y_joined:
        return None
    if x_joined == y_joined:
        return _level("exact", 1.0, SURNAME_BITS["exact"])
    similarity = _jaro_winkler(x_joined, y_joined)
    if _token_subset(x, y):
        return _level("tokens", similarity, SURNAME_BITS["tokens"])
    return _spelling(x_joined, y_joined, similarity, x_code, y_code, SURNAME_BITS)


def _spelling(x: str, y: str, similarity: float, x_code: str, y_code: str, bits: dict[str, float]) -> _Level:
    if similarity >= CLOSE:
        return _level("jaroWinkler", similarity, bits["jaroWinkler"])
    if len(x_code) >= 2 and x_code == y_code:  # sounds the same: Meyer/Maier, Thompson/Tomson
        return _level("metaphone", similarity, bits["metaphone"])
    if similarity >= NEAR:
        return _level("jaroWinkler", similarity, bits["jaroWinklerNear"])
    if _one_edit_apart(x, y):
        return _level("damerauLevenshtein", similarity, bits["damerauLevenshtein"])
    return _level("different", similarity, bits["different"])


# -- birth date -----------------------------------------------------------------------------------
@lru_cache(maxsize=1 << 16)
def _birth_date(x: date | None, y: date | None) -> _Level | None:
    if x is None or y is None:
        return None
    if x == y:
        return _level("exact", 1.0, BIRTH_DATE_BITS["exact"])
    if x.year == y.year and x.month == y.day and x.day == y.month:
        return _level("dayMonthSwap", 0.9, BIRTH_DATE_BITS["dayMonthSwap"])
    # Formatted by hand: strftime took ~10 us a date, the most of comparing two (never compared before).
    distance = jellyfish.damerau_levenshtein_distance(
        f"{x.year}{x.month:02}{x.day:02}", f"{y.year}{y.month:02}{y.day:02}"
    )
    if distance == 1:
        return _level("damerauLevenshtein", 1 - distance / 8, BIRTH_DATE_BITS["damerauLevenshtein"])
    return _level("different", max(0.0, 1 - distance / 8), BIRTH_DATE_BITS["different"])


# -- what an email says of the names and the birth date ---------------------------------------
def _surname_in_email(a: MatchFields, b: MatchFields, reasons: list[MatchReason]) -> float:
    """The bits a surname that differs regains when a word of it, no name of the other's own, is in
    the other's email address: a name changed at marriage, the old one kept in the mailbox
    (`_reread_in_email`). 0 otherwise."""
    at = _rereadable_at(reasons, "lastName")
    if at is None or not (_holds_surname(a, b) or _holds_surname(b, a)):
        return 0.0
    return _reread_in_email(reasons, at, SURNAME_BITS)


def _given_name_in_email(a: MatchFields, b: MatchFields, reasons: list[MatchReason]) -> float:
    """The bits a given name differing in its ending regains when it is the other's with one letter
    dropped, and its own email address spells the other's whole (Sophi Chaleron, sophie.chaleron@): a
    letter missed in a form (`_reread_in_email`). 0 otherwise: Daniel's own address seldom spells
    Daniela."""
    at = _rereadable_at(reasons, "firstName")
    if at is None:
        return 0.0
    short, whole = (a, b) if len(a.first_joined) < len(b.first_joined) else (b, a)
    if (
        len(whole.first_joined) == len(short.first_joined) + 1
        and _one_edit_apart(short.first_joined, whole.first_joined)
        and any(whole.first_joined in local for local in short.email_locals)
    ):
        return _reread_in_email(reasons, at, GIVEN_NAME_BITS)
    return 0.0


def _rereadable_at(reasons: list[MatchReason], field: str) -> int | None:
    """Where `field`'s reason is, when the names were read straight and it says the level an email
    may read again (`READ_IN_EMAIL`: a given name's ending, another surname). None otherwise."""
    if _crossed(reasons):
        return None
    at = next((i for i, r in enumerate(reasons) if r.field == field), None)
    return at if at is not None and reasons[at].method == READ_IN_EMAIL[field, IN_EMAIL] else None


def _reread_in_email(reasons: list[MatchReason], at: int, bits: dict[str, float]) -> float:
    """Replaces the reason at `at` with its field read in an email (IN_EMAIL, similarity 1: the name
    and the email's word are one); the bits that gains over the level it said alone."""
    field = reasons[at].field
    alone = READ_IN_EMAIL[field, IN_EMAIL]
    assert alone is not None  # a name read in an email says a level alone too
    reasons[at] = MatchReason(field, IN_EMAIL, 1.0)
    return bits[IN_EMAIL] - bits[alone]


def _holds_surname(x: MatchFields, y: MatchFields) -> bool:
    """Whether one of `y`'s email addresses holds a word of `x`'s surname that is none of `y`'s names."""
    own = {*y.first_name.split(), *y.last_name.split()}
    return any(
        word in local
        for word in x.last_name.split()
        if len(word) >= MIN_SURNAME_IN_EMAIL and word not in own
        for local in y.email_locals
    )


def _year_in_email(a: MatchFields, b: MatchFields, reasons: list[MatchReason]) -> _Level | None:
    """A birth date level for two profiles whose names agree and of which one has a birth date: the
    other's email address carries its year, in four digits or two ("yearInEmail"). None otherwise."""
    surname = next((r.method for r in reasons if r.field == "lastName"), None)
    if surname not in _SAME_SURNAMES:
        return None
    for x, y in ((a, b), (b, a)):
        if x.birth_date is not None and y.birth_date is None:
            year = x.birth_date.year
            forms = (str(year), f"{year % 100:02}")
            if any(digits in forms for local in y.email_locals for digits in _NUMBERS.findall(local)):
                return _level("yearInEmail", 0.5, BIRTH_DATE_BITS["yearInEmail"])
    return None


# -- emails and phones ----------------------------------------------------------------------------
def _emails(a: MatchFields, b: MatchFields) -> _Level | None:
    if not a.emails or not b.emails:
        return None
    best = _Level("different", 0.0, EMAIL_BITS["different"])
    for x, x_local, x_box in zip(a.emails, a.email_locals, a.mailboxes, strict=True):
        for y, y_local, y_box in zip(b.emails, b.email_locals, b.mailboxes, strict=True):
            level = _email(x, x_local, x_box, y, y_local, y_box)
            if level.bits > best.bits:
                best = level
    return best


def _email(x: str, x_local: str, x_box: str, y: str, y_local: str, y_box: str) -> _Level:
    if x == y:
        return _Level("exact", 1.0, EMAIL_BITS["exact"])
    if x_box == y_box:
        return _Level("sameMailbox", 1.0, EMAIL_BITS["sameMailbox"])
    meaningful = len(x_local) >= MIN_LOCAL_PART and x_local not in GENERIC_LOCAL_PARTS
    if x_local == y_local and meaningful:  # the same handle, told apart only by separators or provider
        level = "localPartWithDigits" if any(ch.isdigit() for ch in x_local) else "localPart"
        return _Level(level, 0.5, EMAIL_BITS[level])
    if min(len(x), len(y)) >= MIN_EMAIL_LENGTH_FOR_TYPO and _one_edit_apart(x, y):
        return _Level("damerauLevenshtein", 1 - 1 / max(len(x), len(y)), EMAIL_BITS["damerauLevenshtein"])
    return _Level("different", 0.0, EMAIL_BITS["different"])


def _phones(a: MatchFields, b: MatchFields) -> _Level | None:
    if not a.phones or not b.phones:
        return None
    best = _Level("different", 0.0, PHONE_BITS["different"])
    for x, x_tail in zip(a.phones, a.phone_tails, strict=True):
        for y, y_tail in zip(b.phones, b.phone_tails, strict=True):
            level = _phone(x, y, same_tail=len(x_tail) == 8 and x_tail == y_tail)
            if level.bits > best.bits:
                best = level
    return best


def _phone(x: str, y: str, *, same_tail: bool) -> _Level:
    """`lastDigits` is one subscriber number under two country codes (a number typed with the wrong
    one, or a trunk prefix): within one country, two numbers sharing their last 8 digits differ in
    their area code, and are two lines. The countries are read only then (`phone_country` parses the
    number: a quarter of what normalising a profile's match fields cost when each one did)."""
    if x == y:
        return _Level("exact", 1.0, PHONE_BITS["exact"])
    if same_tail and not _one_country(x, y):
        return _Level("lastDigits", 0.9, PHONE_BITS["lastDigits"])
    if _one_edit_apart(x, y):
        return _Level("damerauLevenshtein", 1 - 1 / max(len(x), len(y)), PHONE_BITS["damerauLevenshtein"])
    return _Level("different", 0.0, PHONE_BITS["different"])


def _one_country(x: str, y: str) -> bool:
    country = phone_country(x)
    return country is not None and country == phone_country(y)


# -- addresses ------------------------------------------------------------------------------------
def _addresses(xs: tuple[MatchAddress, ...], ys: tuple[MatchAddress, ...], reasons: list[MatchReason]) -> float:
    if not xs or not ys:
        return 0.0
    best: tuple[float, list[MatchReason]] | None = None
    for x in xs:
        for y in ys:
            found = _address(x, y)
            if best is None or found[0] > best[0]:
                best = found
            if x.swapped is None or y.swapped is None or not _streets_differ(found[1]):
                continue
            # Either side's lines turned round (a house number written on the line without the
            # street goes with the street, so which side is turned can matter), read as one address
            # only when both lines then agree: a locality's name shared by neighbours is not enough.
            for swapped in (_address(x, y.swapped), _address(x.swapped, y)):
                if swapped[0] > best[0] and _both_lines_agree(swapped[1]):
                    best = (swapped[0], [*swapped[1], MatchReason("address.lines", "swapped", 1.0)])
    assert best is not None
    reasons.extend(best[1])
    return best[0]


def _streets_differ(straight: list[MatchReason]) -> bool:
    return any(r.field == "address.street" and r.similarity < CLOSE for r in straight)


def _both_lines_agree(parts: list[MatchReason]) -> bool:
    lines = [r.similarity for r in parts if r.field in ("address.street", "address.line2")]
    return len(lines) == 2 and min(lines) >= CLOSE


def _address(x: MatchAddress, y: MatchAddress) -> tuple[float, list[MatchReason]]:
    parts: list[MatchReason] = []
    same_postcode = bool(x.postcode) and x.postcode == y.postcode
    if x.postcode and y.postcode:
        parts.append(MatchReason("address.postcode", "exact", 1.0 if same_postcode else 0.0))
    street = _jaro_winkler(x.street, y.street) if x.street and y.street else None
    if street is not None:
        parts.append(MatchReason("address.street", "jaroWinkler", street))
    same_number = bool(x.number) and x.number == y.number
    if x.number and y.number:
        parts.append(MatchReason("address.streetNumber", "exact", 1.0 if same_number else 0.0))
    city = _jaro_winkler(x.city, y.city) if x.city and y.city else None
    if city is not None:
        parts.append(MatchReason("address.city", "jaroWinkler", city))
    line2 = _jaro_winkler(x.line2, y.line2) if x.line2 and y.line2 else None
    if line2 is not None:
        parts.append(MatchReason("address.line2", "jaroWinkler", line2))
    # A postcode typo is forgiven when the city agrees, and a misspelt city when the postcode does.
    place = same_postcode or (city is not None and city >= CLOSE)
    if street is not None and street >= CLOSE and place:
        if same_number:
            level = "sameAddress"
        elif x.number and y.number:
            level = "sameStreetOtherNumber"
        else:
            level = "sameStreet"
    elif same_postcode:
        level = "samePostcode"
    elif city is not None and city >= CLOSE:
        level = "sameCity"
    elif street is None and city is None and not (x.postcode and y.postcode):
        if line2 is None:
            return 0.0, parts  # nothing comparable: neither for nor against
        level = "secondLineOnly"
    else:
        level = "different"
    if level == "sameAddress" and _other_unit(x.line2, y.line2):
        level = "sameBuildingOtherUnit"
    bits = ADDRESS_BITS[level]
    if line2 is not None:
        bits += LINE2_BITS["same" if line2 >= CLOSE and not _other_unit(x.line2, y.line2) else "different"]
    similarity = sum(p.similarity for p in parts) / len(parts)
    return bits, [MatchReason("address", level, similarity), *parts]


def _other_unit(x: str, y: str) -> bool:
    """Both second lines number a flat, and not the same one ("apartment 3" and "apartment 5")."""
    xs, ys = _NUMBERS.findall(x), _NUMBERS.findall(y)
    return bool(xs) and bool(ys) and xs != ys
