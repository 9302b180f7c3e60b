"""Deterministic identity resolution: which profile a set of identifiers belongs to.

No match → a new profile; one profile → that one, plus the identifiers it lacks; several profiles →
the profile of the strongest identifier (customerId > email > phone > loyaltyId > deviceId >
anonymousId). Those others are reported so that merging (a later step) can act on them.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from app.domain.identifiers import Identifier, strongest


@dataclass(frozen=True, slots=True)
class Resolution:
    profile_id: str | None
    unclaimed: list[Identifier]
    other_profiles: frozenset[str] = field(default_factory=frozenset)


def resolve(identifiers: list[Identifier], owners: dict[str, str]) -> Resolution:
    unclaimed = [i for i in identifiers if i.key not in owners]
    claimed = [i for i in identifiers if i.key in owners]
    if not claimed:
        return Resolution(None, unclaimed)
    target = owners[strongest(claimed).key]
    others = frozenset(owners[i.key] for i in claimed) - {target}
    return Resolution(target, unclaimed, others)
