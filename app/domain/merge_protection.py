"""Merge protection, as in Segment Unify: no automatic write builds a profile with more identifiers
of a type than a person plausibly has (a merge, or new identifiers added to one profile), and no
blocklisted value links anyone."""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

from app.domain.errors import InvalidInput
from app.domain.identifiers import Identifier, KnownIdentifierType, is_identifier_type, normalise
from app.domain.profile import Profile
from app.domain.profile_bounds import merged_refusal

DEFAULT_LIMITS = {"customerId": 1, "email": 5, "phone": 5, "deviceId": 10}
# Identifiers of every type together: the types without a limit (anonymousId, a custom type) grew
# without end, 20 an event, and every write reads and writes its profile whole (past 16 MB, MongoDB
# refuses the document, and every later event of the person failed). Past it, a write's new
# identifiers stay nobody's, as past a type's limit; a new session's anonymousId of a customer
# holding a thousand is no longer theirs.
MAX_IDENTIFIERS = 1000
# (A phone number that is no number, +10000000000, was listed too: such a value is refused as an
# identifier before any blocklist is read.)
DEFAULT_BLOCKLIST = frozenset({"test@test.com", "test@example.com", "noemail@example.com"})


def blocklisted(values: Iterable[str]) -> frozenset[str]:
    """The blocklist as identifiers are held, which is how it is compared: `Shared@Family.com` and
    `+33 6 00 00 00 01` as written in a setting matched nothing (identifiers are normalised: lower
    case, E.164). A `type:value` entry is normalised as that type; a bare value holding an `@` as an
    email, one starting with `+` as a phone; any other (a junk device id such as `null`), and one no
    identifier of its type can be (refused before any blocklist is read), as it is. An entry whose
    part before a colon may be a custom type is held both ways: `shopifyId: none` as written matched
    no identifier (their keys are `shopifyId:none`)."""
    held = set()
    for raw in values:
        value = raw.strip()
        type_, colon, rest = value.partition(":")
        try:
            if colon and type_.strip() in set(KnownIdentifierType):
                value = normalise(type_.strip(), rest, field="").key
            elif colon and is_identifier_type(type_.strip()):  # a custom type's (`shopifyId: none`), or a
                held.add(normalise(type_.strip(), rest, field="").key)  # value holding a colon: both
            elif "@" in value:
                value = normalise("email", value, field="").value
            elif value.startswith("+"):
                value = normalise("phone", value, field="").value
        except InvalidInput:
            pass  # a list copied from an older default (+10000000000) still starts the server
        held.add(value)
    return frozenset(held)


@dataclass(frozen=True, slots=True)
class MergeProtection:
    limits: dict[str, int] = field(default_factory=lambda: dict(DEFAULT_LIMITS))
    blocklist: frozenset[str] = DEFAULT_BLOCKLIST
    automatic_merges: bool = True
    max_identifiers: int = MAX_IDENTIFIERS
    # A write stating a given name and a birth date both another person's than those of a profile one
    # of its identifiers names (a family mailbox, a landline) neither joins nor merges that profile
    # (`matching.scoring.another_person`; profile_writes._other_people).
    households_apart: bool = True

    def is_blocked(self, identifier: Identifier) -> bool:
        return identifier.value in self.blocklist or identifier.key in self.blocklist

    def refusal(self, profiles: Sequence[Profile], extra: Sequence[Identifier] = ()) -> str | None:
        """Why merging `profiles` (plus the identifiers an event brings) is refused, or None: past a
        limit on identifiers, or on the free-form data one profile may hold (profile_bounds.py)."""
        keys = {f"{r.type}:{r.value}": r.type for p in profiles for r in p.identifiers}
        keys.update({i.key: i.type for i in extra})
        # Past a type's limit only as far as one of the profiles is already (a steward's merge, a limit
        # lowered since): counted across them all, an anonymous visitor's profile, holding no
        # customerId, could never join the customer a steward gave two.
        held: Counter[str] = Counter()
        for profile in profiles:
            held |= Counter(r.type for r in profile.identifiers)
        over = self._past_limits(Counter(keys.values()), held)
        if over:
            return f"the merged profile would hold {over[0]}"
        return merged_refusal([p.traits for p in profiles], [p.qualitative.preferences for p in profiles])

    def crowding(self, identifiers: Sequence[Identifier]) -> str | None:
        """Why one write's identifiers cannot all be one profile's, or None: an event or upsert that
        names two customerIds says it is two customers (their profiles would be refused a merge).
        Asked of every event: no more identifiers than the lowest limit (the usual one or two) pass
        no limit, without counting them by type (5 µs an event)."""
        if len(identifiers) <= min([self.max_identifiers, *self.limits.values()]):
            return None
        over = self._past_limits(Counter({i.key: i.type for i in identifiers}.values()))
        return f"names {over[0]}, more than one profile may hold (CDP_MERGE_LIMITS)" if over else None

    def crowded(self, identifiers: Sequence[Identifier]) -> list[Identifier]:
        """Those of one write's `identifiers` that `crowding` counts past a limit: each of a type
        named more times than its limit, or all of them past the bound on all types together."""
        counts = Counter({i.key: i.type for i in identifiers}.values())
        if counts.total() > self.max_identifiers:
            return list(identifiers)
        return [i for i in identifiers if counts[i.type] > self.limits.get(i.type, counts[i.type])]

    def within_limits(self, profile: Profile, additions: Sequence[Identifier]) -> tuple[list[Identifier], str | None]:
        """The new identifiers `profile` may take, and why the others may not (None: all fit). A type
        whose new values would take the profile past its limit adds none of them: which of them, if
        any, is this person's, no rule can say."""
        if not additions:
            return [], None
        totals = self._type_totals(profile, additions)
        if self.past_total(profile, additions):  # a type's limit first: it says whose they are
            size = f"{_size_with(profile, additions)} identifiers (limit {self.max_identifiers})"
            return [], f"the profile would hold {'; '.join([*self._past_limits(totals, total=False), size])}"
        over = self._past_limits(totals)
        if not over:
            return list(additions), None
        refused = self._over_type_limits(additions, totals)
        return [i for i in additions if i not in refused], f"the profile would hold {'; '.join(over)}"

    def past_type_limits(self, profile: Profile, additions: Sequence[Identifier]) -> list[Identifier]:
        """Those of `additions` whose type `profile` may not hold that many of (a type's limit)."""
        return self._over_type_limits(additions, self._type_totals(profile, additions))

    @staticmethod
    def _type_totals(profile: Profile, additions: Sequence[Identifier]) -> Counter[str]:
        """Per type of `additions`, how many `profile` would hold with them."""
        new = Counter({i.key: i.type for i in additions}.values())
        return new + Counter(r.type for r in profile.identifiers if r.type in new)

    def _over_type_limits(self, additions: Sequence[Identifier], totals: Counter[str]) -> list[Identifier]:
        return [i for i in additions if totals[i.type] > self.limits.get(i.type, totals[i.type])]

    def past_total(self, profile: Profile, additions: Sequence[Identifier]) -> bool:
        """Whether `additions` would take `profile` past the identifiers one profile may hold in all:
        a bound on its size, which says nothing of whose they are (a type's limit does)."""
        return _size_with(profile, additions) > self.max_identifiers

    def _past_limits(self, counts: Counter[str], held: Counter[str] | None = None, *, total: bool = True) -> list[str]:
        """What passes a limit in these counts of identifiers by type, as a refusal says it; `held`: a
        type's count one profile holds already, which its limit is taken to be when higher; `total`:
        the bound on all of them too."""
        held = held or Counter()
        over = [
            f"{counts[type_]} {type_} identifiers (limit {limit})"
            for type_, limit in sorted(self.limits.items())
            if counts[type_] > max(limit, held[type_])
        ]
        if total and (count := counts.total()) > self.max_identifiers:
            over.append(f"{count} identifiers (limit {self.max_identifiers})")
        return over


def _size_with(profile: Profile, additions: Sequence[Identifier]) -> int:
    """The identifiers `profile` would hold with `additions` (new ones, each once)."""
    return len(profile.identifiers) + len({i.key for i in additions})
