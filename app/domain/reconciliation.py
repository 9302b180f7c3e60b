"""Which value a merged profile keeps for each identity and descriptive field.

Rules per field, configurable: MOST_RECENT (default: the value set last), OLDEST (set first),
SOURCE_PRIORITY (from the best-ranked source, e.g. the CRM before the web form), MOST_FREQUENT (the
value most of the profiles agree on) and UNION (lists: every distinct item, survivor's first).
Ties go to the survivor, then to the order the profiles were named in. A given name written as
the initials of another profile's (`abbreviates`) is not among the values a rule chooses from.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum
from typing import Any

import orjson

from app.domain.event_effects import IDENTITY_FIELDS
from app.domain.name_initials import abbreviates
from app.domain.profile import Profile
from app.domain.profile_change import provenance_key

# The fields a merge reconciles by a rule (traits besides: traits.* or traits.<name>).
RECONCILED_FIELDS = (*IDENTITY_FIELDS, "addresses")


class Rule(StrEnum):
    MOST_RECENT = "MOST_RECENT"
    OLDEST = "OLDEST"
    SOURCE_PRIORITY = "SOURCE_PRIORITY"
    MOST_FREQUENT = "MOST_FREQUENT"
    UNION = "UNION"


@dataclass(frozen=True, slots=True)
class ReconciliationRules:
    by_field: dict[str, Rule] = field(default_factory=lambda: {"addresses": Rule.UNION})
    default: Rule = Rule.MOST_RECENT
    source_priority: tuple[str, ...] = ("crm", "upsert", "store", "call_center", "customer_service", "web", "mobile")

    def rule_for(self, path: str) -> Rule:
        if path in self.by_field:
            return self.by_field[path]
        if path.startswith("traits.") and "traits.*" in self.by_field:
            return self.by_field["traits.*"]
        return self.default


@dataclass(frozen=True, slots=True)
class Candidate:
    value: Any
    at: datetime
    source: str | None
    rank: int  # position of the profile: 0 is the survivor


@dataclass(frozen=True, slots=True)
class Decision:
    value: Any
    at: datetime
    source: str | None


def reconciled_fields(profiles: Sequence[Profile], rules: ReconciliationRules) -> dict[str, Decision]:
    """Document path → kept value, for every field any of the profiles has (survivor first)."""
    paths = list(RECONCILED_FIELDS)
    trait_names = dict.fromkeys(name for p in profiles for name in p.traits)
    paths += [f"traits.{name}" for name in trait_names]
    documents = [p.to_document() for p in profiles]
    decisions: dict[str, Decision] = {}
    for path in paths:
        candidates = [
            c for rank, p in enumerate(profiles) if (c := _candidate(p, documents[rank], path, rank)) is not None
        ]
        if path == "firstName":  # "M." is no candidate beside the "Marie" it abbreviates, under any rule
            candidates = [c for c in candidates if not any(abbreviates(c.value, d.value) for d in candidates)]
        if candidates:
            decisions[path] = _decide(rules.rule_for(path), candidates, rules.source_priority)
    return decisions


def _candidate(profile: Profile, document: dict[str, Any], path: str, rank: int) -> Candidate | None:
    value: Any = document
    for part in path.split("."):
        value = value.get(part) if isinstance(value, dict) else None
    if value is None or value == []:
        return None
    key = provenance_key(path)
    at = profile.field_times.get(key, profile.updated_at)
    return Candidate(value, at, profile.field_sources.get(key), rank)


def _decide(rule: Rule, candidates: list[Candidate], priority: tuple[str, ...]) -> Decision:
    newest_first = sorted(candidates, key=lambda c: (-c.at.timestamp(), c.rank))
    match rule:
        case Rule.OLDEST:
            chosen = min(candidates, key=lambda c: (c.at, c.rank))
        case Rule.SOURCE_PRIORITY:
            ranked = {source: index for index, source in enumerate(priority)}
            chosen = min(newest_first, key=lambda c: ranked.get(c.source or "", len(priority)))
        case Rule.MOST_FREQUENT:
            counts: dict[bytes, int] = {}
            for c in candidates:
                counts[_fingerprint(c.value)] = counts.get(_fingerprint(c.value), 0) + 1
            chosen = max(newest_first, key=lambda c: counts[_fingerprint(c.value)])
        case Rule.UNION if all(isinstance(c.value, list) for c in candidates):
            merged: dict[bytes, Any] = {}
            for c in sorted(candidates, key=lambda c: c.rank):
                for item in c.value:
                    merged.setdefault(_fingerprint(item), item)
            newest = newest_first[0]
            return Decision(list(merged.values()), newest.at, newest.source)
        case _:
            chosen = newest_first[0]
    return Decision(chosen.value, chosen.at, chosen.source)


def _fingerprint(value: Any) -> bytes:
    return orjson.dumps(value, option=orjson.OPT_SORT_KEYS)
