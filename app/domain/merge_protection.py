"""Merge protection, as in Segment Unify: automatic merges never build a profile with more
identifiers of a type than a person plausibly has, and never link on a blocklisted value."""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field

from app.domain.identifiers import Identifier
from app.domain.profile import Profile

DEFAULT_LIMITS = {"customerId": 1, "email": 5, "phone": 5, "deviceId": 10}
DEFAULT_BLOCKLIST = frozenset({"test@test.com", "test@example.com", "noemail@example.com", "+10000000000"})


@dataclass(frozen=True, slots=True)
class MergeProtection:
    limits: dict[str, int] = field(default_factory=lambda: dict(DEFAULT_LIMITS))
    blocklist: frozenset[str] = DEFAULT_BLOCKLIST
    automatic_merges: bool = True

    def is_blocked(self, identifier: Identifier) -> bool:
        return identifier.value in self.blocklist or identifier.key in self.blocklist

    def refusal(self, profiles: Sequence[Profile], extra: Sequence[Identifier] = ()) -> str | None:
        """Why merging `profiles` (plus the identifiers an event brings) is refused, or None."""
        keys = {f"{r.type}:{r.value}": r.type for p in profiles for r in p.identifiers}
        keys.update({i.key: i.type for i in extra})
        counts = Counter(keys.values())
        for type_, limit in sorted(self.limits.items()):
            if counts[type_] > limit:
                return f"the merged profile would hold {counts[type_]} {type_} identifiers (limit {limit})"
        return None
