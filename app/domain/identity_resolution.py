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
    linked_by: Identifier | None = None  # the strongest identifier that has a profile: it chose `profile_id`


def resolve(identifiers: list[Identifier], owners: dict[str, str]) -> Resolution:
    unclaimed = [i for i in identifiers if i.key not in owners]
    claimed = [i for i in identifiers if i.key in owners]
    if not claimed:
        return Resolution(None, unclaimed)
    linked_by = strongest(claimed)
    target = owners[linked_by.key]
    others = frozenset(owners[i.key] for i in claimed) - {target}
    return Resolution(target, unclaimed, others, linked_by)


def someone_else(refused: list[Identifier], resolution: Resolution) -> bool:
    """Whether new identifiers the resolved profile may not take (merge protection's limits) say the
    write is another person's: one of them is stronger than what linked it to that profile. An event
    bringing customerId C2 with an email of customer C1's profile is C2's (a shared family mailbox),
    as an event naming C2's profile and an email of C1's goes to C2's when their merge is refused;
    a sixth email arriving with C1's customerId stays C1's, without it."""
    assert resolution.linked_by is not None
    return bool(refused) and strongest(refused).strength < resolution.linked_by.strength
