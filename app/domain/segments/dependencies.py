"""What can change a segment's result: which profile fields and event types it reads (so a change
re-evaluates only the segments it can affect), and when time alone will change it (an event leaving a
window, so an exit can be scheduled).

    deps = dependencies(tree)
    deps.affected_by(change_paths, event_types)   # e.g. ProfileChange paths + the ingested event type
    next_change(tree, activity, now=now)          # datetime to re-evaluate at, or None
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta

from app.domain.events import EventType
from app.domain.segments.conditions import (
    Compare,
    Condition,
    ConsentGranted,
    CountBound,
    EventCount,
    HasIdentifier,
    InSegment,
    Or,
    walk,
)
from app.domain.segments.predicate import Activity, matching_interactions


@dataclass(frozen=True, slots=True)
class Dependencies:
    """`paths` are document paths (`stats.orders`, `traits.tier`, `addresses`, `identifiers`,
    `segments`, `consents.email.granted`); `segments` the ids the tree refers to (for cycle checks
    and evaluation order); `window` the longest event window (None: time alone never changes it)."""

    paths: frozenset[str]
    event_types: frozenset[EventType]
    segments: frozenset[str]
    window: timedelta | None

    def affected_by(self, changed_paths: Iterable[str] = (), event_types: Iterable[str] = ()) -> bool:
        """Whether a write touching `changed_paths` (a parent or a child path counts) or adding
        events of `event_types` can change the result."""
        if any(event_type in self.event_types for event_type in event_types):
            return True
        return any(_overlap(changed, path) for changed in changed_paths for path in self.paths)


def _overlap(a: str, b: str) -> bool:
    return a == b or a.startswith(b + ".") or b.startswith(a + ".")


def dependencies(tree: Condition) -> Dependencies:
    paths: set[str] = set()
    event_types: set[EventType] = set()
    segments: set[str] = set()
    windows: list[timedelta] = []
    for node in walk(tree):
        match node:
            case Compare(path=spec):
                paths.add(spec.array or spec.path)
            case EventCount():
                event_types.add(node.event_type)
                windows.append(node.window)
            case HasIdentifier():
                paths.add("identifiers")
            case InSegment(segment_id):
                paths.add("segments")
                segments.add(segment_id)
            case ConsentGranted(purpose):
                paths.add(f"consents.{purpose}.granted")
    return Dependencies(frozenset(paths), frozenset(event_types), frozenset(segments), max(windows, default=None))


def next_change(tree: Condition, activity: Activity, *, now: datetime) -> datetime | None:
    """The earliest instant after `now` at which an event leaf of `tree` flips by time alone (a
    counted interaction leaves its window), or None. The tree's result may stay the same then (the
    leaf may not decide it): re-evaluate at that instant and ask again."""
    instants = [
        instant
        for leaf in dict.fromkeys(node for node in walk(tree) if isinstance(node, EventCount))
        if (instant := _leaf_flip(leaf, activity, now)) is not None
    ]
    return min(instants, default=None)


def timed_candidates(tree: Condition) -> Condition | None:
    """Who time alone can move into or out of `tree`: the profiles with an interaction some event leaf
    counts within its window (each leaf read as "at least one"), or None when no leaf counts events.
    A batch evaluation schedules their checks, members or not: an "at risk" segment (ordered, but not
    within the last day) gains its members as their last order leaves the window, with no new event."""
    counted = tuple(
        dict.fromkeys(
            EventCount(leaf.event_type, CountBound.AT_LEAST, 1, leaf.within_days, leaf.channel, leaf.where)
            for leaf in walk(tree)
            if isinstance(leaf, EventCount)
        )
    )
    if not counted:
        return None
    return counted[0] if len(counted) == 1 else Or(counted)


def _leaf_flip(leaf: EventCount, activity: Activity, now: datetime) -> datetime | None:
    # Counted interactions leave the window oldest first, each at `timestamp + window`; the leaf
    # flips when the count falls to `target` (below atLeast, or down to atMost).
    counted = matching_interactions(leaf, activity, now=now)
    target = leaf.count - 1 if leaf.bound is CountBound.AT_LEAST else leaf.count
    leaving = len(counted) - target
    if leaving <= 0:
        return None
    return counted[leaving - 1].timestamp + leaf.window
