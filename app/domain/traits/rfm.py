"""RFM analysis: recency, frequency and monetary scores 1-5 (5 best) by quintiles over the customer
base, and the named segment the scores place a customer in.

The base is every live profile with at least one order. A profile without orders is a "Prospect"
with no scores. Equal values always get equal scores: a value scores by its mid-rank, the share of
the base below it plus half the share equal to it, so a base where everyone has one order scores
them all 3, and a lone customer is average rather than the best or the worst.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from app.domain.profile import Stats

PROSPECT = "Prospect"
QUINTILES = 5

# The named segment, from R and FM = the mean of F and M rounded up ((F + M + 1) // 2). Every one of
# the 125 (R, F, M) combinations matches exactly one row (tests/integration/test_traits.py checks).
#   segment              R       FM
SEGMENTS: tuple[tuple[str, frozenset[int], frozenset[int]], ...] = (
    ("Champions", frozenset({5}), frozenset({4, 5})),
    ("Loyal", frozenset({3, 4}), frozenset({4, 5})),
    ("Potential loyalist", frozenset({4, 5}), frozenset({2, 3})),
    ("New", frozenset({5}), frozenset({1})),
    ("Promising", frozenset({4}), frozenset({1})),
    ("Needs attention", frozenset({3}), frozenset({3})),
    ("About to sleep", frozenset({3}), frozenset({1, 2})),
    ("Cannot lose them", frozenset({1, 2}), frozenset({5})),
    ("At risk", frozenset({1, 2}), frozenset({3, 4})),
    ("Hibernating", frozenset({2}), frozenset({1, 2})),
    ("Lost", frozenset({1}), frozenset({1, 2})),
)


def segment_name(recency: int, frequency: int, monetary: int) -> str:
    fm = (frequency + monetary + 1) // 2
    for name, recencies, fms in SEGMENTS:
        if recency in recencies and fm in fms:
            return name
    raise ValueError(f"scores out of range: R{recency} F{frequency} M{monetary}")


@dataclass(frozen=True, slots=True)
class RfmValues:
    recency_days: int  # whole days from the last order to the analysis time
    frequency: int  # orders
    monetary_cents: int  # revenue minus returned amounts, never below 0


def rfm_values(stats: Stats, *, as_of: datetime) -> RfmValues | None:
    """The customer's raw R, F and M; None for a profile without orders."""
    if stats.orders < 1 or stats.last_order_at is None:
        return None
    return RfmValues(
        recency_days=max(0, (as_of - stats.last_order_at).days),
        frequency=stats.orders,
        monetary_cents=max(0, stats.revenue_cents - stats.returned_cents),
    )


@dataclass(frozen=True, slots=True)
class Quintiles:
    """Where scores 2, 3, 4 and 5 start. With `higher_is_better` a cut is the least value scoring at
    least that much; otherwise (recency in days) the greatest. None: no customer scores that high."""

    cuts: tuple[int | None, ...]
    higher_is_better: bool = True

    def score(self, value: int) -> int:
        if self.higher_is_better:
            return 1 + sum(1 for cut in self.cuts if cut is not None and value >= cut)
        return 1 + sum(1 for cut in self.cuts if cut is not None and value <= cut)

    @classmethod
    def of(cls, counts: Mapping[int, int], *, higher_is_better: bool = True) -> Quintiles:
        """Cuts from a distribution (value → how many customers have it)."""
        total = sum(counts.values())
        cuts: list[int | None] = [None] * (QUINTILES - 1)
        below = 0
        for value in sorted(counts, reverse=not higher_is_better):  # worst first
            equal = counts[value]
            # mid-rank percentile (below + equal/2) / total, in integers so that no edge is off by a float
            score = min(QUINTILES, QUINTILES * (2 * below + equal) // (2 * total) + 1)
            for rank in range(2, score + 1):
                if cuts[rank - 2] is None:
                    cuts[rank - 2] = value
            below += equal
        return cls(tuple(cuts), higher_is_better)


@dataclass(frozen=True, slots=True)
class RfmBoundaries:
    customers: int
    recency: Quintiles
    frequency: Quintiles
    monetary: Quintiles

    @classmethod
    def of(cls, values: Iterable[RfmValues]) -> RfmBoundaries:
        base = RfmBase()
        for item in values:
            base.add(item)
        return base.boundaries()

    def scores(self, values: RfmValues) -> tuple[int, int, int]:
        return (
            self.recency.score(values.recency_days),
            self.frequency.score(values.frequency),
            self.monetary.score(values.monetary_cents),
        )

    def monetary_amounts(self) -> list[float | None]:
        """The monetary cuts in currency units, as the API and the command line show them: cents are
        how amounts are counted, not how they are shown."""
        return [None if cut is None else cut / 100 for cut in self.monetary.cuts]

    def to_json(self) -> dict[str, Any]:
        return {
            "customers": self.customers,
            "recencyDays": list(self.recency.cuts),
            "frequency": list(self.frequency.cuts),
            "monetaryCents": list(self.monetary.cuts),
        }

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> RfmBoundaries:
        return cls(
            customers=int(data["customers"]),
            recency=Quintiles(tuple(data["recencyDays"]), higher_is_better=False),
            frequency=Quintiles(tuple(data["frequency"])),
            monetary=Quintiles(tuple(data["monetaryCents"])),
        )


@dataclass(slots=True)
class RfmBase:
    """The customer base's distributions, gathered one customer at a time (a count per distinct
    value, not a list of customers: memory grows with distinct values only)."""

    recency: dict[int, int] = field(default_factory=dict)
    frequency: dict[int, int] = field(default_factory=dict)
    monetary: dict[int, int] = field(default_factory=dict)
    customers: int = 0

    def add(self, values: RfmValues) -> None:
        self.customers += 1
        for counts, value in (
            (self.recency, values.recency_days),
            (self.frequency, values.frequency),
            (self.monetary, values.monetary_cents),
        ):
            counts[value] = counts.get(value, 0) + 1

    def boundaries(self) -> RfmBoundaries:
        return RfmBoundaries(
            customers=self.customers,
            recency=Quintiles.of(self.recency, higher_is_better=False),
            frequency=Quintiles.of(self.frequency),
            monetary=Quintiles.of(self.monetary),
        )
