"""A segment's condition: a validated tree of `And` / `Or` / `Not` over typed leaves.

A tree is built only by `app.domain.segments.parser.parse_condition` (from the plain input a
GraphQL mutation carries) and holds no client text where a path or operator goes: each `Compare`
carries a `PathSpec` from the catalogue and an `Op` from a closed enum; values are typed and
normalised (aware UTC datetimes at millisecond precision, dates, tuples for `in`). The same tree
compiles to SQL (`app/store/sqlite/segment_query.py`), to a MongoDB pipeline
(`app/store/mongo/segment_query.py`) and to an in-memory predicate (`predicate.py`); the three agree
on every profile (tests/property/test_segment_agreement.py).

Semantics shared by all three:
- a comparison holds only when the value is present and of the path's type (a trait declared a
  number that holds "5" matches nothing); `ne` means "present and different", so `not eq` is the
  way to include profiles without the value; a missing counter reads as its default (0);
- on a list path (`addresses.city`) a comparison holds when any element satisfies it, and
  `exists: false` means no element has the field;
- `EventCount` counts the profile's interactions of one type (optionally one channel and one property
  condition) with `timestamp > now - within_days`; `atMost` includes zero.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from enum import StrEnum

from app.domain.events import Channel, EventType
from app.domain.segments.catalogue import PathSpec

MAX_DEPTH = 10
MAX_LEAVES = 100
MAX_WINDOW_DAYS = 730
MAX_IN_VALUES = 100
MAX_STRING_LENGTH = 256
MAX_EVENT_COUNT = 100_000

Scalar = str | int | float | bool | date | datetime
Value = Scalar | tuple[Scalar, ...]


class Op(StrEnum):
    EQ = "eq"
    NE = "ne"
    GT = "gt"
    GTE = "gte"
    LT = "lt"
    LTE = "lte"
    IN = "in"
    EXISTS = "exists"
    CONTAINS = "contains"
    STARTS_WITH = "startsWith"


ORDERED = frozenset({Op.GT, Op.GTE, Op.LT, Op.LTE})


@dataclass(frozen=True, slots=True)
class Compare:
    """`path op value`. For `exists`, `value` is a bool; for `in`, a non-empty tuple."""

    path: PathSpec
    op: Op
    value: Value


class CountBound(StrEnum):
    AT_LEAST = "atLeast"
    AT_MOST = "atMost"


@dataclass(frozen=True, slots=True)
class EventCount:
    """Did event `event_type` at least / at most `count` times in the last `within_days` days,
    optionally on one channel and where one property condition holds (a `Compare` on
    `properties.<name>` of the interaction)."""

    event_type: EventType
    bound: CountBound
    count: int
    within_days: int
    channel: Channel | None = None
    where: Compare | None = None

    @property
    def window(self) -> timedelta:
        return timedelta(days=self.within_days)

    def holds(self, matched: int) -> bool:
        return matched >= self.count if self.bound is CountBound.AT_LEAST else matched <= self.count


@dataclass(frozen=True, slots=True)
class HasIdentifier:
    type: str


@dataclass(frozen=True, slots=True)
class InSegment:
    segment_id: str


@dataclass(frozen=True, slots=True)
class ConsentGranted:
    """The consent for `purpose` is recorded and granted (no record is not consent)."""

    purpose: str


@dataclass(frozen=True, slots=True)
class And:
    children: tuple[Condition, ...]


@dataclass(frozen=True, slots=True)
class Or:
    children: tuple[Condition, ...]


@dataclass(frozen=True, slots=True)
class Not:
    child: Condition


Leaf = Compare | EventCount | HasIdentifier | InSegment | ConsentGranted
Condition = And | Or | Not | Leaf


def walk(tree: Condition) -> Iterator[Condition]:
    """Every node, depth first, parents before children."""
    yield tree
    if isinstance(tree, And | Or):
        for child in tree.children:
            yield from walk(child)
    elif isinstance(tree, Not):
        yield from walk(tree.child)


def event_leaves(tree: Condition) -> list[EventCount]:
    """The distinct event leaves, in tree order (equal leaves are computed once)."""
    return list(dict.fromkeys(node for node in walk(tree) if isinstance(node, EventCount)))


def comparisons(tree: Condition) -> list[tuple[str, str, Value]]:
    """Each document path the tree compares (profile paths and event properties), with the operator
    and the value it is compared to."""
    found: list[tuple[str, str, Value]] = []
    for node in walk(tree):
        if isinstance(node, Compare):
            found.append((node.path.path, node.op.value, node.value))
        elif isinstance(node, EventCount) and node.where is not None:
            found.append((node.where.path.path, node.where.op.value, node.where.value))
    return found
