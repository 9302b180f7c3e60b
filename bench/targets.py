"""A benchmark target as one printed row: the measure, its value, the target, the floor measured in
the same run, their ratio, and whether the target is met (never asserted: a benchmark reports)."""

from __future__ import annotations

import math
from dataclasses import dataclass

from bench.common import table
from bench.wrk import WrkResult


@dataclass(frozen=True, slots=True)
class Row:
    measure: str
    value: str
    target: str
    floor: str
    ratio: str
    met: bool | None  # None: not measured, or no target to meet

    @classmethod
    def skipped(cls, measure: str, target: str, why: str) -> Row:
        return cls(measure, f"not measured: {why}", target, "-", "-", None)


def print_rows(rows: list[Row]) -> None:
    table(
        ["measure", "value", "target", "floor", "ratio", "met"],
        [
            [r.measure, r.value, r.target, r.floor, r.ratio, "-" if r.met is None else ("yes" if r.met else "NO")]
            for r in rows
        ],
        align="llllrl",
    )


def times(value: float, floor: float) -> str:
    """value / floor, as "3.2x" (how many times the floor)."""
    return f"{value / floor:.2f}x" if floor > 0 and math.isfinite(value) else "-"


def ms(value: float) -> str:
    return f"{value:,.1f} ms" if math.isfinite(value) else "no answer"


def p99_ms(result: WrkResult) -> float:
    """The p99 of a wrk run, infinite when nothing was answered (wrk would say 0)."""
    return result.p99_ms if result.requests else math.inf


def p50_ms(result: WrkResult) -> float:
    return result.p50_ms if result.requests else math.inf
