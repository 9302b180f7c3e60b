"""Fellegi-Sunter weights learned from a store's own candidate pairs by expectation-maximisation
(as `recordlinkage`'s ECM and Splink estimate them), instead of bits set by hand for one population.

A pair is described by its comparison vector: one agreement level per field, the levels the rules
scorer (`scoring.score_pair`) already names in its reasons (a missing value: no level, no evidence).
The model holds, per field and level, m (how often two records of one person compare so) and u (how
often two different people among the candidates do), and the share of candidate pairs that are
matches; a pair's score is the posterior probability of a match.

What the rules scorer guards against with fixed penalties is given to the model as evidence it
weighs: a given name that disagrees is read together with what else the two share (a home, a second
line, a landline, a mailbox, the birth date) as one level of the given name (`different+home+
birthDate`: siblings and twins), and a birth date that disagrees likewise as a level of the birth
date, whose m and u the data decide. The level stays one of that field's, so its m is a share of
every match compared on the field. (Kept as a field of its own that only contradicted pairs had, its
m was a share of the contradicted matches alone: another given name with a shared home read as +4.9
bits for a match, and on stores of our population other than the bench's, 1,500 and 3,000 people
through `bench/identity_api.py`, the model listed 39 and 165 wrong pairs beyond those no scorer
avoids; now 12 on the first (6 with the bound below), and the second's estimate does not separate,
so the rules answer.)

A level holding both contradictions (another given name and another birth date, with whatever the
two share) is bounded when a pair is scored: it says no more for a match than the same given-name
level without the birth date's contradiction (itself bounded, below), plus that contradiction's own
weight. The few pairs at
such a level are otherwise read by what else they share: on a store of our population (1,500 people,
seed 6) EM gave `different+otherBirthDate+home+mailbox` +3.2 bits and `different+otherBirthDate+
mailbox` +3.5, and listed members of one family (another name, born decades apart, one home and one
family mailbox) at 0.62-0.92. With the bound, through `bench/identity_api.py`: that store's wrong pairs
18 -> 12; FEBRL1 and FEBRL2 lose 2 and 7 of their 2,434 true pairs (duplicates whose given name and
birth date were both replaced); judged afterwards on the held-out FEBRL3 and FEBRL4: recall 0.977 ->
0.972 and 0.972 -> 0.967, FEBRL4's two wrong pairs (both of this kind) gone. Applied only when
scoring, not within EM, so what an estimate learns (and whether it `separates`) is unchanged: bounded
within EM too, the store of 3,000 people (seed 7), where the estimate does not separate and the rules
answer, got a model that separates and listed 34 wrong pairs (the rules: 6).

A given name that disagrees, read with what a household shares and no agreeing birth date
(`different+home`, `different+mailbox`, ...), is bounded likewise when a pair is scored: at most the
bare contradiction plus HOUSEHOLD_CONTACT_BITS, what the rules let a household's evidence count for.
On a store of our population (2,000 people, seed 4) EM gave `different+home` +1.2 bits (the bare
`different` -4.5), and the model listed 59 wrong pairs, 13 of them one family's members sharing a
surname and a home and nothing else; bounded, 25 (10 of them no scorer avoids), recall unchanged.
FEBRL2 loses 1 of its 1,934 true pairs; judged afterwards on the held-out sets, FEBRL3 loses 5 of
6,538 and FEBRL4 9 of 5,000 (duplicates whose given name was replaced and whose birth date one record
lacks), precision 1.000 on all. With the birth date agreeing too the estimate stands: FEBRL's
duplicates with a replaced given name share it (+5.4 bits there), as twins do.

A record naming the family's surname and no given name, beside a named one, with no birth dates to
compare, is any member of the household as much as the person: what a household shares is read
into a given-name level of its own (`missing+home`, `missing+mailbox`, ...) and bounded likewise, at
most HOUSEHOLD_CONTACT_BITS. EM had read the shared home of such pairs as a match's (+13 bits on a
store of our population's records, each its own profile), and one such record linked a family's
members to one another (`links`). On four such stores (1,500 to 5,000 people, seeds 6, 4, 7, 1) the
wrong pairs at the default threshold went 37 / 52 / 92 / 181 -> 25 / 36 / 72 / 146, the true ones
2,653 / 3,517 / 5,286 / 8,780 -> 2,651 / 3,517 / 5,286 / 8,775; FEBRL1 and FEBRL2 unchanged; judged
afterwards on the held-out sets, FEBRL3 and FEBRL4 lose 1 of 6,538 and 2 of 5,000 true pairs.

Agreeing on a name is weighed by how common the name is in the store (Splink's term-frequency
adjustment, `ValueFrequencies`): the model's level says two records share the surname, the frequency
says whether that is Martin or Quarante. Namesakes sharing only a common name were most of the
remaining wrong pairs on our population.

EM starts from the rules scorer's probabilities and is held near them by a prior (maximum a
posteriori EM): the rules scorer's reading of the same pairs (each pair a match with the probability
the rules give it) sets, per field, Dirichlet pseudo-counts worth `PRIOR_PAIRS` pairs for m and as
many for u. Plain EM maximises the likelihood of a two-class mixture, and on a store whose candidate
pairs are mostly households (the pairs sharing an email or a phone were merged on the spot), the
likeliest split is households against strangers: the "match" class took in every pair sharing a
surname and a home, and a different given name became evidence of nothing. Held by the prior, a
level's m can leave the rules' value only as far as the matches the data find for it outweigh
those pseudo-pairs, while on FEBRL a given name or birth date replaced in a duplicate is still
learned as the mild evidence it is there. Where EM still settles on households, the estimate fails
`separates` and the rules answer. Stronger priors kept more of the rules' mistakes (150 pairs: FEBRL1
F1 0.958; 1,000: 0.920); capping the look-alike levels at what the rules allow cost FEBRL2 F1 0.991
-> 0.957, since there a replaced given name with everything else shared is a duplicate. A third
class for households (as Winkler separated them) was tried: fewer wrong pairs on our population (3,
10 and 18 on the three stores), but it keeps FEBRL's duplicates with a replaced given name and a
shared address among households (FEBRL1 F1 0.963, FEBRL2 0.986, against 0.981 and 0.991 here).

Every count is also smoothed (`SMOOTHING`) so a level seen once does not decide alone; EM stops when
no pair's posterior moves by more than `TOLERANCE`. Pure Python: a store's candidate pairs collapse
to a few hundred distinct vectors.
"""

from __future__ import annotations

import hashlib
import itertools
import math
from collections import Counter, defaultdict
from collections.abc import Container, Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime
from typing import Any

from app.domain.matching.candidates import Named
from app.domain.matching.fields import MatchFields, contacts_of
from app.domain.matching.scoring import (
    CLOSE,
    COMMON_GIVEN_NAME,
    DISAGREEING_NAMES,
    HOUSEHOLD_CONTACT_BITS,
    ONE_MAILBOX,
    READ_IN_EMAIL,
    MatchReason,
    MatchScore,
    address_reasons,
    contact_reasons,
    names_and_birth_date_reasons,
    point_reasons,
    read_apart,
    shown,
)

# A comparison vector: (field, level) for every field both records hold, in field order.
Vector = tuple[tuple[str, str], ...]

TOLERANCE = 1e-6
MAX_ITERATIONS = 500
SMOOTHING = 0.5  # pseudo-count added to every level's expected count, for matches and non-matches
# The weight of the rules scorer's reading of the pairs, in pairs, per field, for m and for u (the
# prior of MAP-EM, see above): 20 to 100 give the same figures on our population and FEBRL.
PRIOR_PAIRS = 50.0
MIN_MATCH_SHARE = 1e-4  # fewer matches than this among the candidate pairs: nothing to learn from
MAX_BITS = 20.0  # no single level says more than a million to one either way
# Two records agreeing on both names and the birth date, nothing else compared: a model used must read
# them as one person at least this clearly (`separates`). Non-matches among candidate pairs share a
# blocking key by construction, so on a store whose duplicates are noisy and few fields long, EM can
# read each agreement as little evidence (Splink's `fake_1000` through the API: the surname -0.07
# bits, the given name +0.36, the birth date +1.32, such a pair 0.50): it has learned the blocks,
# not the people. The models that separate on FEBRL1-4 and on 100,000 of our population's profiles
# read it at 0.985-0.998.
CLEAR_MATCH = 0.9
AGREED_IDENTITY: Vector = (("birthDate", "exact"), ("firstName", "exact"), ("lastName", "exact"))
# The part of a given-name level saying the birth dates disagree too (`comparison`); bounded in `bits`.
BOTH_CONTRADICTED = "otherBirthDate"
# The given-name level of a pair one of whose records names no given name, with no birth dates to
# compare, read with what a household shares (`missing+home`: `comparison`); bounded in `bits`.
NAMELESS = "missing"
_AGREEING_BIRTH_DATES = frozenset({"exact", "dayMonthSwap", "damerauLevenshtein"})
# The household evidence a disagreeing given name is read together with.
_HOME = frozenset({"sameAddress", "sameBuildingOtherUnit", "sameStreet"})
# Term frequencies: the fields whose exact agreement is weighed by how common the shared value is, the
# attribute compared, the most values a model keeps per field, and the most bits it moves a pair.
FREQUENCY_FIELDS = {"firstName": "first_joined", "lastName": "last_joined"}
MAX_KEPT_VALUES = 5000
MAX_FREQUENCY_BITS = 6.0
MAX_REMEMBERED = 1 << 16  # the most values whose frequency bits a model keeps once asked (`ValueFrequencies.bits`)
# The form of the comparison vectors; a model stored with another is not used (its levels are not
# the ones `comparison` forms now) until the next estimate replaces it. 3: a nameless record's
# household evidence read into a level of its own (`NAMELESS`). 4: a handle with digits at another
# provider is a level of its own (`localPartWithDigits`), as the rules weigh it.
FORM = 4


# What a household shares, as a contradicted level names it (`comparison`): each with the field compared.
_HOUSEHOLD_CONTACTS = {"home": "address", "line2": "address.line2", "phone": "phone", "mailbox": "email"}
# A reason sharing each of those fields, as `MatchModel.ceiling` supposes a pair may.
_SHARING = {
    "address": MatchReason("address", "sameAddress", 1.0),
    "address.line2": MatchReason("address.line2", "jaroWinkler", 1.0),
    "phone": MatchReason("phone", "exact", 1.0),
    "email": MatchReason("email", "exact", 1.0),
}
# The contact fields a pair's bound supposes once its emails and phones are compared (`_scored_reaching`).
_ADDRESS = frozenset(("address", "address.line2"))
# The fields whose levels a bound is kept by (`MatchModel._ceiling_total`): each level it may know of.
_BOUNDED = frozenset(("firstName", "lastName", "birthDate", "email", "phone"))
# Past the probability's own clamp (`MatchModel._probability`: 60 bits either way from the prior).
_BISECTED_RANGE = 1e6
# How many `minScore`s a model keeps the fewest reaching bits of (`MatchModel._reaches`): a client
# asking for ever new ones must not grow it without end.
_REACHING_KEPT = 64


def _household_shares(contact: str, level: str | None) -> bool:
    """Whether a level of one of _HOUSEHOLD_CONTACTS' fields is one a household shares."""
    if contact == "address":
        return level in _HOME
    if contact == "address.line2":
        return level == "same"
    if contact == "phone":
        return level in ("exact", "lastDigits")
    return level in ONE_MAILBOX


def comparison(reasons: Iterable[MatchReason]) -> Vector:
    """The comparison vector of a pair, from the reasons `score_pair` gave for it."""
    levels: dict[str, str] = {}
    line2: float | None = None
    for reason in reasons:
        if reason.field in ("firstName", "lastName", "birthDate", "email", "phone", "address"):
            method = READ_IN_EMAIL.get((reason.field, reason.method), reason.method)
            if method is not None:  # what the rules read in an email: the field as it says alone
                levels[reason.field] = method
        elif reason.field == "address.line2":
            line2 = reason.similarity
    if line2 is not None:
        levels["address.line2"] = "same" if line2 >= CLOSE else "different"
    given, born = levels.get("firstName"), levels.get("birthDate")
    other_given = given if given in DISAGREEING_NAMES else None
    if _nameless(levels):
        # A record naming a surname and no given name, beside another of that surname, neither
        # birth date to compare: a member of the household as much as the person. What a household
        # shares is read into a given-name level of its own, bounded as a contradicted one is.
        if shared := _household_shared(levels):
            levels["firstName"] = "+".join([NAMELESS, *shared])
    elif _contradicted(levels):
        # What the two share is read together with the contradiction: siblings and twins share a home,
        # a landline, a birth date; a parent and child of one name a home. Those agreeing levels leave
        # the vector and join the contradicted field's level (the given name's, else the birth
        # date's), whose m and u the data decide. The level stays one of that field's, so its m is a
        # share of all matches compared on the field, not of the contradicted ones only.
        shared = _household_shared(levels)
        if other_given and born in _AGREEING_BIRTH_DATES:
            shared.append("birthDate")
            levels.pop("birthDate")
        if other_given:
            contradiction = [other_given]
            if born == "different":
                contradiction.append(BOTH_CONTRADICTED)
                del levels["birthDate"]
            levels["firstName"] = "+".join([*contradiction, *shared])
        else:
            levels["birthDate"] = "+".join(["different", *shared])
    return tuple(sorted(levels.items()))


def _contradicted(levels: Mapping[str, str]) -> bool:
    """Whether a pair's given names or birth dates disagree: `comparison` then reads what a
    household shares into the contradicted field's level (and `MatchModel.ceiling` bounds it so)."""
    return levels.get("firstName") in DISAGREEING_NAMES or levels.get("birthDate") == "different"


def _nameless(levels: Mapping[str, str]) -> bool:
    """Whether a pair's levels compare surnames but no given names (one record names none) and no
    birth dates (one record has none)."""
    return "lastName" in levels and "firstName" not in levels and "birthDate" not in levels


def _household_shared(levels: dict[str, str]) -> list[str]:
    """The household contacts (`_HOUSEHOLD_CONTACTS`) whose levels say the pair shares them, taken
    out of `levels` (they join a contradicted or nameless given name's level)."""
    shared = []
    for name, contact in _HOUSEHOLD_CONTACTS.items():
        if _household_shares(contact, levels.get(contact)):
            shared.append(name)
            levels.pop(contact)
    return shared


@dataclass(frozen=True, slots=True)
class ValueFrequencies:
    """How common each value of a field is among the store's profiles (Splink's term-frequency
    adjustment): two records sharing a common name (Jack Patel, Marie Martin) say less about being
    one person than two sharing a rare one, and the comparison level alone cannot tell them apart."""

    # The commonest values (seen twice or more), each with its share of the profiles; keyed by
    # value_key, not by the names themselves: a name kept here outlived its holder's erasure, in the
    # stored model and in every backup of it, until the next estimate.
    shares: dict[str, float]
    floor: float  # the share of a value not kept
    agreement: float  # the chance two profiles drawn at random agree on the field: the sum of squared shares
    salt: str | None = None  # what the values are keyed with; None: a model stored keyed by the values
    profiles: int | None = None  # how many profiles were counted (what each share is of); None: unknown
    # `bits` of the values asked for (a keyed hash each): names repeat across the pairs scored.
    _bits: dict[str, float] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "_bits", {})

    def bits(self, value: str) -> float:
        """log2(agreement / share): 0 for a value of the usual frequency among agreeing pairs."""
        found = self._bits.get(value)
        if found is None:
            ratio = math.log2(self.agreement / self.shares.get(value_key(self.salt, value), self.floor))
            found = max(-MAX_FREQUENCY_BITS, min(MAX_FREQUENCY_BITS, ratio))
            if len(self._bits) < MAX_REMEMBERED:
                self._bits[value] = found
        return found

    def held_by(self, value: str) -> int:
        """How many of the profiles counted hold `value` (0: fewer than two, or a model stored without
        its count of profiles)."""
        share = self.shares.get(value_key(self.salt, value))
        return round(share * self.profiles) if share is not None and self.profiles else 0

    def without(self, values: Counter[str]) -> ValueFrequencies:
        """These frequencies with each of `values` counted that many times fewer (the names of erased
        profiles): a value left on fewer than two profiles is no longer kept. The salt is stored
        beside the keyed values, so an erased person's rare name kept here could be confirmed by
        hashing a list of names with it."""
        shares = dict(self.shares)
        for value, count in values.items():
            key = value_key(self.salt, value)
            if key not in shares:
                continue
            left = round(shares[key] * self.profiles) - count if self.profiles else 0
            if left >= 2 and self.profiles:
                shares[key] = left / self.profiles
            else:
                del shares[key]
        return replace(self, shares=shares)

    def to_document(self) -> dict[str, Any]:
        return {
            "shares": self.shares,
            "floor": self.floor,
            "agreement": self.agreement,
            "salt": self.salt,
            "profiles": self.profiles,
        }

    @classmethod
    def from_document(cls, document: Mapping[str, Any]) -> ValueFrequencies:
        shares, floor, agreement = dict(document["shares"]), float(document["floor"]), float(document["agreement"])
        profiles = document.get("profiles")
        if profiles is None and len(shares) < MAX_KEPT_VALUES and floor > 0:  # stored before the count was
            profiles = round(1 / floor)  # uncapped, the floor is one profile's share
        return cls(shares, floor, agreement, document.get("salt"), None if profiles is None else int(profiles))


def value_key(salt: str | None, value: str) -> str:
    """A value as frequencies are keyed: its keyed hash (80 bits: no two of the 5,000 kept collide in
    practice), so equal values still find their share and the scores are those of the values."""
    if salt is None:
        return value
    return hashlib.blake2b(value.encode(), key=salt.encode(), digest_size=10).hexdigest()


@dataclass(frozen=True, slots=True)
class _CommonNames:
    """The given names a model's frequencies count COMMON_GIVEN_NAME profiles or more for; each name
    asked about is hashed once (`value_key`), as `ValueFrequencies.bits` does."""

    frequencies: ValueFrequencies | None
    _asked: dict[str, bool] = field(default_factory=dict, repr=False, compare=False)

    def __contains__(self, name: object) -> bool:
        if self.frequencies is None or not isinstance(name, str):
            return False
        found = self._asked.get(name)
        if found is None:
            found = self.frequencies.held_by(name) >= COMMON_GIVEN_NAME
            if len(self._asked) < MAX_REMEMBERED:
                self._asked[name] = found
        return found


def value_frequencies(profiles: Iterable[MatchFields], *, salt: str) -> dict[str, ValueFrequencies]:
    """Each frequency field's value shares among these profiles, keyed with `salt` (value_key)."""
    counted: dict[str, Counter[str]] = {name: Counter() for name in FREQUENCY_FIELDS}
    for profile in profiles:
        for name, attribute in FREQUENCY_FIELDS.items():
            if value := getattr(profile, attribute):
                counted[name][value] += 1
    result: dict[str, ValueFrequencies] = {}
    for name, counter in counted.items():
        total = sum(counter.values())
        if not total:
            continue
        kept = {value: count for value, count in counter.most_common(MAX_KEPT_VALUES) if count >= 2}
        # A value left out is seen once, or (when the cap cut the list) at most as often as the last kept.
        floor = min(kept.values()) if kept and len(kept) == MAX_KEPT_VALUES else 1
        agreement = sum(count * count for count in counter.values()) / (total * total)
        shares = {value_key(salt, value): count / total for value, count in kept.items()}
        result[name] = ValueFrequencies(shares, floor / total, agreement, salt, total)
    return result


@dataclass(frozen=True, slots=True)
class MatchModel:
    version: int
    estimated_at: datetime
    pairs_used: int
    match_share: float  # the share of candidate pairs that are matches (the prior)
    m: dict[str, dict[str, float]]
    u: dict[str, dict[str, float]]
    iterations: int
    frequencies: dict[str, ValueFrequencies] = field(default_factory=dict)
    form: int = FORM
    name: str = field(init=False)
    # `ceiling`'s bits by the levels of a pair's names and birth dates (and emails and phones, once
    # compared) and the contact fields both hold: a few thousand distinct ones (2,880 after 3,000
    # lookups at 100,000 profiles).
    _ceilings: dict[tuple[Vector, frozenset[str]], float] = field(init=False, repr=False, compare=False)
    # `bits` of the levels asked for: a few hundred, each asked for by every pair scored.
    _level_bits: dict[tuple[str, str], float] = field(init=False, repr=False, compare=False)
    _prior_bits: float = field(init=False, repr=False, compare=False)  # the match share's, asked by every score
    # The fewest bits of a pair's `ceiling` that reach each `minScore` asked (`_reaches`).
    _reaching: dict[float, float] = field(init=False, repr=False, compare=False)
    # The given names its frequencies count COMMON_GIVEN_NAME profiles or more for (`scoring.read_apart`).
    _given_names: Container[str] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "name", f"fellegiSunter:v{self.version}")
        object.__setattr__(self, "_ceilings", {})
        object.__setattr__(self, "_level_bits", {})
        object.__setattr__(self, "_reaching", {})
        object.__setattr__(self, "_prior_bits", math.log2(self.match_share / (1 - self.match_share)))
        object.__setattr__(self, "_given_names", _CommonNames(self.frequencies.get("firstName")))

    def __call__(self, a: MatchFields, b: MatchFields) -> MatchScore:
        """The model as a pair scorer (`candidates.PairScorer`): `score`."""
        return self.score(a, b)

    def bits(self, field_name: str, level: str) -> float:
        """log2(m/u) of a level; 0 for a level the model never saw (no evidence either way). Two
        bounds on a contradicted given name's levels, applied when a pair is scored (see the
        module's docstring):

        - read with what a household shares (a home, a second line, a landline, a mailbox) and no
          agreeing birth date, it says at most the bare contradiction plus HOUSEHOLD_CONTACT_BITS, as
          the rules read a household (a name differing in its ending with one mailbox excepted: a
          typo there, for the rules too); a given name missing (`missing+…`, no birth dates to
          compare) likewise, at most HOUSEHOLD_CONTACT_BITS;
        - contradicted together with the birth date (`…+otherBirthDate+…`), it says at most the same
          level without that (as bounded) plus the birth date's own `different`: two contradictions
          read together are never better evidence of one person than each read alone."""
        found = self._level_bits.get((field_name, level))
        if found is None:
            found = self._level_bits[field_name, level] = self._bounded_bits(field_name, level)
        return found

    def _bounded_bits(self, field_name: str, level: str) -> float:
        bits = self._estimated_bits(field_name, level)
        if field_name != "firstName" or "+" not in level:
            return bits  # every other level, as estimated (scoring a pair asks for each of its levels)
        parts = level.split("+")
        if BOTH_CONTRADICTED in parts:
            alone = "+".join(part for part in parts if part != BOTH_CONTRADICTED)
            if alone not in self.m.get(field_name, {}):
                alone = parts[0]  # never seen without the other birth date: the bare contradiction
            return min(bits, self.bits(field_name, alone) + self._estimated_bits("birthDate", "different"))
        if "birthDate" in parts or (parts[0] == "variant" and "mailbox" in parts):
            return bits  # twins, or one person whose given name was replaced: the data decide
        bare = 0.0 if parts[0] == NAMELESS else self._estimated_bits(field_name, parts[0])  # no name: no evidence
        return min(bits, bare + HOUSEHOLD_CONTACT_BITS)

    def _estimated_bits(self, field_name: str, level: str) -> float:
        m, u = self.m.get(field_name, {}).get(level), self.u.get(field_name, {}).get(level)
        if m is None or u is None:
            return 0.0
        return max(-MAX_BITS, min(MAX_BITS, math.log2(m / u)))

    def probability(self, vector: Vector, rarity: float = 0.0) -> float:
        """A pair's match probability; `rarity` adds the bits of how rare its agreeing values are."""
        return self._probability(rarity + self._vector_bits(vector))

    def _probability(self, bits: float) -> float:
        total = self._prior_bits + bits
        total = max(-60.0, min(60.0, total))
        return 1.0 / (1.0 + math.pow(2.0, -total))

    def _vector_bits(self, vector: Vector) -> float:
        return sum(self.bits(f, level) for f, level in vector)

    def _rarity(self, a: MatchFields, vector: Iterable[tuple[str, str]]) -> float:
        """The bits of how rare the names a pair agrees on exactly are (`a`'s: they are the pair's)."""
        return sum(
            self.frequencies[f].bits(getattr(a, FREQUENCY_FIELDS[f]))
            for f, level in vector
            if level == "exact" and f in self.frequencies
        )

    def score(self, a: MatchFields, b: MatchFields) -> MatchScore:
        """The pair's posterior under this model; the reasons are the rules scorer's comparisons."""
        return self._scored(a, [*self._names_read(a, b), *contact_reasons(a, b)])

    def _scored(self, a: MatchFields, reasons: list[MatchReason]) -> MatchScore:
        vector = comparison(reasons)
        return MatchScore(shown(self.probability(vector, self._rarity(a, vector))), reasons, self.name)

    @property
    def counts_unique_names(self) -> bool:
        """No: the model weighs how common each name is by its own frequencies (`PairScorer`)."""
        return False

    def may_reach(self, a: Named, b: Named, min_score: float) -> bool:
        """Whether the pair's `ceiling`, given which contact fields both hold, reaches `min_score`."""
        names = a.names
        return self._reaches(
            self._ceiling_total(names, self._names_read(names, b.names), a.contacts & b.contacts), min_score
        )

    def score_lookalike(
        self, a: MatchFields, b: MatchFields, min_score: float, *, unique_names: bool = False
    ) -> MatchScore | None:
        """`score_reaching` of a pair `may_reach` kept: its names are not bounded again."""
        return self._scored_reaching(a, b, self._names_read(a, b), contacts_of(a) & contacts_of(b), min_score)

    def score_reaching(
        self, a: MatchFields, b: MatchFields, min_score: float, *, unique_names: bool = False
    ) -> MatchScore | None:
        """`score(a, b)`, or None when the pair's bound keeps it below `min_score`: first its names
        and birth dates with the contact fields both hold (`ceiling`), then those with its emails
        and phones compared, before its addresses are. The names are compared once, for all."""
        names, held = self._names_read(a, b), contacts_of(a) & contacts_of(b)
        if min_score > 0 and not self._reaches(self._ceiling_total(a, names, held), min_score):
            return None
        return self._scored_reaching(a, b, names, held, min_score)

    def _scored_reaching(
        self, a: MatchFields, b: MatchFields, names: Sequence[MatchReason], held: frozenset[str], min_score: float
    ) -> MatchScore | None:
        """The pair's score given its `names_and_birth_date_reasons` and the contact fields both hold,
        or None when, with its emails and phones compared, the most its addresses could add keeps it
        below `min_score` (at 100,000 profiles, 4 of 5 look-alikes a lookup's first bound kept)."""
        points = point_reasons(a, b)
        known = [*names, *points]
        if min_score > 0 and not self._reaches(self._ceiling_total(a, known, held & _ADDRESS), min_score):
            return None
        return self._scored(a, [*known, *address_reasons(a, b)])

    def ceiling(self, a: MatchFields, b: MatchFields, contacts: frozenset[str]) -> float:
        """The most a pair can score under this model, as shown, judged on its names and birth dates
        (`a` and `b` may hold nothing else: `fields.names_and_birth_date`) and `contacts`, the
        contact fields both hold (`fields.contacts_held`).

        The names and birth dates give their own levels; each contact field adds at most its best
        level's bits. When a contradiction reads what a household shares into its own level
        (`comparison`), each way of sharing the contact fields is tried: one shared is read into that
        level, one not shared adds at most its best level among those a household does not share. So
        the bound is the model's own: a level it weighs for a match (`different+mailbox`, a replaced
        given name with one mailbox) keeps such a pair, and one it reads as strong evidence against
        passes the pair over."""
        return shown(self._probability(self._ceiling_total(a, self._names_read(a, b), contacts)))

    def _names_read(self, a: MatchFields, b: MatchFields) -> Sequence[MatchReason]:
        """The pair's `names_and_birth_date_reasons`, its given names read as other names where they
        are one letter apart and its frequencies count both as names people are given
        (`scoring.read_apart`, as the rules read them)."""
        names = names_and_birth_date_reasons(a, b)
        return read_apart(a, b, names, self._given_names) or names

    def _ceiling_total(self, a: MatchFields, known: Sequence[MatchReason], contacts: frozenset[str]) -> float:
        """`ceiling` in bits (before the prior), given the pair's `names_and_birth_date_reasons`, and
        maybe its emails' and phones' reasons too (`known`: `contacts` names only fields not among them)."""
        read = tuple((r.field, r.method) for r in known if r.field in _BOUNDED)
        bits = self._ceilings.get((read, contacts))
        if bits is None:
            bits = self._ceilings[read, contacts] = self._ceiling_bits(known, contacts)
        # The names' exact levels are the vector's (a contradiction is read into a given name only
        # when it disagrees), so the rarity is the pair's own.
        return self._rarity(a, read) + bits

    def _reaches(self, bits: float, min_score: float) -> bool:
        """Whether a pair's ceiling of `bits` (`_ceiling_total`) reaches `min_score` as shown: compared
        with the fewest bits that do, found once for each `minScore` (the probability as shown never
        falls as the bits grow), where each look-alike's was a probability rounded to 4 decimals
        (1,000 lookups' 43,476 bounds replayed alone: 12.3 -> 9.9 us each, the same answers)."""
        least = self._reaching.get(min_score)
        if least is None:
            if len(self._reaching) >= _REACHING_KEPT:
                self._reaching.clear()
            least = self._reaching[min_score] = self._least_bits_reaching(min_score)
        return bits >= least

    def _least_bits_reaching(self, min_score: float) -> float:
        """The smallest float `bits` whose probability, as shown, is at least `min_score` (bisected to
        adjacent floats: every float below it falls short); -inf when every one reaches it (a
        `minScore` of 0), inf when none does."""

        def reaches(bits: float) -> bool:
            return shown(self._probability(bits)) >= min_score

        low, high = -_BISECTED_RANGE, _BISECTED_RANGE
        if reaches(low):
            return -math.inf
        if not reaches(high):
            return math.inf
        while True:
            middle = low + (high - low) / 2
            if middle in (low, high):
                return high
            if reaches(middle):
                high = middle
            else:
                low = middle

    def _ceiling_bits(self, known: Sequence[MatchReason], contacts: frozenset[str]) -> float:
        levels = {reason.field: reason.method for reason in known}
        held = [f for f in _SHARING if f in contacts]
        if not _contradicted(levels) and not _nameless(levels):
            # Nothing read into a contradiction: every field adds its own level's bits.
            return self._vector_bits(comparison(known)) + sum(self._best_bits(f) for f in held)
        best = -math.inf
        for shared in itertools.product((False, True), repeat=len(held)):
            sharing = dict(zip(held, shared, strict=True))
            supposed = [_SHARING[f] for f in held if sharing[f]]
            rest = sum(self._best_bits(f, unshared=True) for f in held if not sharing[f])
            best = max(best, self._vector_bits(comparison([*known, *supposed])) + rest)
        return best

    def _best_bits(self, field_name: str, *, unshared: bool = False) -> float:
        """The most bits a field's level adds (0: a value missing on one side); `unshared`: among the
        levels a household does not share (`_household_shares`)."""
        levels = [x for x in self.m.get(field_name, {}) if not (unshared and _household_shares(field_name, x))]
        return max([0.0, *(self.bits(field_name, level) for level in levels)])

    def separates(self) -> bool:
        """Whether the estimate reads as matches against non-matches (`why_not_used` says nothing
        against it)."""
        return self.why_not_used() is None

    def why_not_used(self) -> str | None:
        """What keeps the model from being used, or None: agreeing names and birth dates must count
        for a match, a different given name (with the least else shared) and birth date against,
        and both names and the birth date agreeing read as one person (`CLEAR_MATCH`). EM on too
        few or too alike pairs can settle on another split (households against strangers, or the
        blocks' shared keys); such a model is not used, nor one stored in an earlier form."""
        given, born = self.m.get("firstName", {}), self.m.get("birthDate", {})
        if self.form != FORM:
            return "it was estimated in an earlier form"
        # As estimated, not as bounded when scoring: the bound says nothing about what EM found.
        other_given = [
            self._estimated_bits("firstName", level) for level in given if level.split("+")[0] == "different"
        ]
        if not other_given or "exact" not in given or not {"exact", "different"} <= born.keys():
            return "its pairs never compare agreeing and different given names and birth dates"
        if not MIN_MATCH_SHARE < self.match_share < 0.9:
            return f"it reads {self.match_share:.2%} of the candidate pairs as matches"
        # The one with the least else shared: the bare level where the model has it. Splink's
        # historical figures (ten records a person, given names replaced by titles and other names)
        # gave it +7.5 bits, its household levels less than 0, and Angus beside Jean Davis, nothing
        # else shared, scored 0.98.
        if "different" in given:
            bare, other = self._estimated_bits("firstName", "different"), "a different given name alone"
        else:
            bare, other = min(other_given), "a different given name"
        checks = (
            (self.bits("firstName", "exact") > 0, "an agreeing given name does not count for a match"),
            (bare < 0, f"{other} counts for a match ({bare:+.1f} bits)"),
            (self.bits("birthDate", "exact") > 0, "an agreeing birth date does not count for a match"),
            (self.bits("birthDate", "different") < 0, "a different birth date does not count against a match"),
        )
        if failed := next((reason for passed, reason in checks if not passed), None):
            return failed
        agreed = self.probability(AGREED_IDENTITY)
        if agreed < CLEAR_MATCH:
            return f"two records agreeing on both names and the birth date read at {agreed:.2f}, under {CLEAR_MATCH}"
        return None

    def forgetting(self, erased: Iterable[MatchFields]) -> MatchModel | None:
        """The model without the names of these erased profiles in its value frequencies (None: it
        kept none of them)."""
        erased, frequencies = list(erased), dict(self.frequencies)
        for name, attribute in FREQUENCY_FIELDS.items():
            if (kept := frequencies.get(name)) is not None:
                frequencies[name] = kept.without(Counter(v for f in erased if (v := getattr(f, attribute))))
        return None if frequencies == self.frequencies else replace(self, frequencies=frequencies)

    def to_document(self) -> dict[str, Any]:
        return {
            "version": self.version,
            "estimatedAt": self.estimated_at.isoformat(),
            "pairsUsed": self.pairs_used,
            "matchShare": self.match_share,
            "m": self.m,
            "u": self.u,
            "iterations": self.iterations,
            "frequencies": {f: frequencies.to_document() for f, frequencies in self.frequencies.items()},
            "form": self.form,
        }

    @classmethod
    def from_document(cls, document: Mapping[str, Any]) -> MatchModel:
        return cls(
            version=int(document["version"]),
            estimated_at=datetime.fromisoformat(document["estimatedAt"]),
            pairs_used=int(document["pairsUsed"]),
            match_share=float(document["matchShare"]),
            m={f: dict(levels) for f, levels in document["m"].items()},
            u={f: dict(levels) for f, levels in document["u"].items()},
            iterations=int(document["iterations"]),
            frequencies={f: ValueFrequencies.from_document(d) for f, d in document.get("frequencies", {}).items()},
            form=int(document.get("form", 1)),
        )


def estimate(
    vectors: Mapping[Vector, tuple[int, float]],
    *,
    version: int,
    at: datetime,
    frequencies: Mapping[str, ValueFrequencies] | None = None,
) -> MatchModel:
    """MAP-EM over distinct comparison vectors, each with its count and the rules scorer's probability
    (the starting point, and the prior). Deterministic: the same vectors give the same model.
    `frequencies` are kept with it and weigh agreeing names when a pair is scored (not while
    estimating, as Splink does)."""
    patterns = sorted(vectors.items())
    counts = [count for _, (count, _) in patterns]
    posterior = [start for _, (_, start) in patterns]
    total = sum(counts)
    levels: dict[str, set[str]] = {}
    for vector, _ in patterns:
        for f, level in vector:
            levels.setdefault(f, set()).add(level)
    _, rules_m, rules_u = _expected(patterns, counts, posterior, levels)
    prior_m, prior_u = _prior(rules_m, levels), _prior(rules_u, levels)
    share = 0.5
    m: dict[str, dict[str, float]] = {}
    u: dict[str, dict[str, float]] = {}
    iterations = 0
    for iterations in range(1, MAX_ITERATIONS + 1):  # noqa: B007 (the count is kept)
        expected_matches, matched, unmatched = _expected(patterns, counts, posterior, levels)
        share = min(max(expected_matches / total, 1e-6), 1 - 1e-6)
        m, u = _normalised(matched, prior_m, levels), _normalised(unmatched, prior_u, levels)
        updated = [_posterior(vector, share, m, u) for vector, _ in patterns]
        moved = max((abs(x - y) for x, y in zip(updated, posterior, strict=True)), default=0.0)
        posterior = updated
        if moved < TOLERANCE:
            break
    return MatchModel(version=version, estimated_at=at, pairs_used=total, match_share=share, m=m, u=u,
                      iterations=iterations, frequencies=dict(frequencies or {}))  # fmt: skip


Counts = dict[str, dict[str, float]]


def _expected(
    patterns: list[tuple[Vector, tuple[int, float]]],
    counts: list[int],
    posterior: list[float],
    levels: dict[str, set[str]],
) -> tuple[float, Counts, Counts]:
    """The E-step's expected counts: matches, and per field and level among matches and non-matches."""
    matched: Counts = {f: defaultdict(float) for f in levels}
    unmatched: Counts = {f: defaultdict(float) for f in levels}
    expected_matches = 0.0
    for (vector, _), count, p in zip(patterns, counts, posterior, strict=True):
        expected_matches += count * p
        for f, level in vector:
            matched[f][level] += count * p
            unmatched[f][level] += count * (1 - p)
    return expected_matches, matched, unmatched


def _prior(found: Counts, levels: dict[str, set[str]]) -> Counts:
    """Pseudo-counts worth `PRIOR_PAIRS` pairs per field, spread over its levels as `found` (the
    rules scorer's expected counts) spreads them."""
    prior: Counts = {}
    for f, names in levels.items():
        total = sum(found[f].get(level, 0.0) for level in names)
        prior[f] = {level: PRIOR_PAIRS * found[f].get(level, 0.0) / total if total else 0.0 for level in names}
    return prior


def _normalised(found: Counts, prior: Counts, levels: dict[str, set[str]]) -> Counts:
    result: Counts = {}
    for f, names in levels.items():
        pseudo = {level: prior[f][level] + SMOOTHING for level in names}
        total = sum(found[f].values()) + sum(pseudo.values())
        result[f] = {level: (found[f].get(level, 0.0) + pseudo[level]) / total for level in sorted(names)}
    return result


def _posterior(vector: Vector, share: float, m: dict[str, dict[str, float]], u: dict[str, dict[str, float]]) -> float:
    weights = [math.log2(m[f][level] / u[f][level]) for f, level in vector]
    total = math.log2(share / (1 - share)) + sum(weights)
    total = max(-60.0, min(60.0, total))
    return 1.0 / (1.0 + math.pow(2.0, -total))
