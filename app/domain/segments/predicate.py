"""A condition tree as an in-memory predicate: real-time evaluation of one profile after a change.

    evaluate = predicate(tree)                      # once per segment definition
    activity = Activity.from_recent(profile)        # or Activity.of(history) when recent is too short
    evaluate(profile, activity, set(profile.segments), now=now) -> bool

`now` is always passed in (no hidden clock), so time windows are testable. `memberships` is the set
of segment ids the profile belongs to as far as the caller knows (normally `profile.segments`, or
the results of segments evaluated earlier in the same pass). The activity must cover the longest
event window of the tree (`longest_window`); the predicate refuses one that does not rather than
undercount. The result equals the stores' batch queries on the same data.
"""

from __future__ import annotations

from collections.abc import Collection, Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from pydantic import BaseModel

from app.domain.profile import Interaction, Profile
from app.domain.segments.catalogue import ValueType
from app.domain.segments.comparison import as_text, compare, default_matches, is_present
from app.domain.segments.conditions import (
    And,
    Compare,
    Condition,
    ConsentGranted,
    EventCount,
    HasIdentifier,
    InSegment,
    Not,
    Op,
    Or,
    event_leaves,
)


class ActivityTooShort(ValueError):
    """The activity given does not reach back as far as an event window needs."""


@dataclass(frozen=True, slots=True)
class Activity:
    """A profile's interactions, complete for every timestamp after `complete_after` (None: the
    whole history). Event leaves count only interactions inside their window."""

    interactions: tuple[Interaction, ...]
    complete_after: datetime | None = None

    @classmethod
    def of(cls, interactions: Iterable[Interaction], *, complete_after: datetime | None = None) -> Activity:
        return cls(tuple(interactions), complete_after)

    @classmethod
    def from_recent(cls, profile: Profile) -> Activity:
        """The embedded `recent` list: the newest interactions, so complete after its oldest one
        (interactions at that very instant may have been cut), or whole if nothing was cut."""
        recent = tuple(profile.recent)
        if profile.stats.events_total <= len(recent):
            return cls(recent, None)
        if not recent:  # events counted but none embedded: only "after the last one" is known complete
            return cls(recent, profile.stats.last_seen_at or datetime.max.replace(tzinfo=UTC))
        return cls(recent, min(item.timestamp for item in recent))

    def covers(self, since: datetime) -> bool:
        return self.complete_after is None or self.complete_after <= since


def longest_window(tree: Condition) -> timedelta | None:
    """How far back the activity must reach for this tree; None when it has no event leaf."""
    windows = [leaf.window for leaf in event_leaves(tree)]
    return max(windows) if windows else None


def predicate(tree: Condition) -> Predicate:
    return Predicate(tree)


class Predicate:
    """`tree` as a callable; holds nothing but the tree, so one instance serves every profile."""

    def __init__(self, tree: Condition) -> None:
        self.tree = tree

    def __call__(self, profile: Profile, activity: Activity, memberships: Collection[str], *, now: datetime) -> bool:
        return _holds(self.tree, _Context(profile, activity, memberships, now))


@dataclass(frozen=True, slots=True)
class _Context:
    profile: Profile
    activity: Activity
    memberships: Collection[str]
    now: datetime


def _holds(node: Condition, context: _Context) -> bool:
    match node:
        case And(children):
            return all(_holds(child, context) for child in children)
        case Or(children):
            return any(_holds(child, context) for child in children)
        case Not(child):
            return not _holds(child, context)
        case Compare():
            return _compare_profile(node, context.profile)
        case EventCount():
            return node.holds(len(matching_interactions(node, context.activity, now=context.now)))
        case HasIdentifier(type_):
            return any(record.type == type_ for record in context.profile.identifiers)
        case InSegment(segment_id):
            return segment_id in context.memberships
        case ConsentGranted(purpose):
            consent = context.profile.consents.get(purpose)
            return consent is not None and consent.granted is True
    raise TypeError(f"not a condition: {node!r}")


def compare_value(leaf: Compare, stored: Any) -> bool:
    """One comparison on a value read from a document (None when absent), defaults applied."""
    if leaf.op is Op.EXISTS:
        return is_present(stored) == leaf.value
    if stored is None and leaf.path.default is not None:
        return default_matches(leaf.path.type, leaf.op, leaf.path.default, leaf.value)
    if leaf.path.text:
        return compare(ValueType.STRING, leaf.op, stored, as_text(leaf.value))
    return compare(leaf.path.type, leaf.op, stored, leaf.value)


def _compare_profile(leaf: Compare, profile: Profile) -> bool:
    spec = leaf.path
    if spec.array is None:
        return compare_value(leaf, read(profile, spec.keys))
    elements = read(profile, tuple(spec.array.split("."))) or []
    if leaf.op is Op.EXISTS:  # on a list: "some element has it" / "no element has it"
        some = any(is_present(read(element, spec.keys)) for element in elements)
        return some == leaf.value
    return any(compare_value(leaf, read(element, spec.keys)) for element in elements)


def matching_interactions(leaf: EventCount, activity: Activity, *, now: datetime) -> list[Interaction]:
    """The interactions an event leaf counts at `now`, oldest first."""
    since = now - leaf.window
    if not activity.covers(since):
        raise ActivityTooShort(f"activity is complete only after {activity.complete_after}, the window starts {since}")
    found = [
        item
        for item in activity.interactions
        if item.type == leaf.event_type
        and item.timestamp > since
        and (leaf.channel is None or item.channel == leaf.channel)
        and (leaf.where is None or compare_value(leaf.where, read(item, leaf.where.path.keys)))
    ]
    return sorted(found, key=lambda item: item.timestamp)


def read(source: Any, keys: Sequence[str]) -> Any:
    """The value at a document path, reading models by their stored (camelCase) keys."""
    value = source
    for key in keys:
        if isinstance(value, BaseModel):
            name = _attribute_names(type(value)).get(key)
            value = getattr(value, name) if name else None
        elif isinstance(value, dict):
            value = value.get(key)
        else:
            return None
    return value


_ATTRIBUTES: dict[type[BaseModel], dict[str, str]] = {}


def _attribute_names(model: type[BaseModel]) -> dict[str, str]:
    names = _ATTRIBUTES.get(model)
    if names is None:
        names = {field.alias or name: name for name, field in model.model_fields.items()}
        _ATTRIBUTES[model] = names
    return names
