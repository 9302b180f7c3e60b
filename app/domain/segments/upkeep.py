"""Real-time upkeep decisions for many profiles at once: given the profiles as read, their activity
and the segments each must be re-evaluated against, which memberships change and when each windowed
membership must be checked again. Pure, so that the segment service can run a large batch of it off
the event loop and have the store write the whole outcome in one unit of work.

    rechecks = [Recheck(profile_id, (compiled, ...), clear=frozenset(...)), ...]
    since = history_needed(rechecks, profiles, now=now)   # how far back the recent lists fall short
    outcome = decide(rechecks, profiles, histories, since=since, now=now)
"""

from __future__ import annotations

from collections.abc import Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta

import orjson

from app.domain.profile import Interaction, Profile
from app.domain.profile_change import ProfileChange
from app.domain.profile_query import InteractionFilter
from app.domain.segments.conditions import Condition
from app.domain.segments.dependencies import Dependencies, dependencies, next_change
from app.domain.segments.predicate import Activity, Predicate, predicate
from app.domain.segments.segment import Segment

EVERY_SEGMENT = "*"
"""The segment of a check of every segment (no segment's id can be "*"). Each write of a profile's own
data schedules one in its transaction, due UPKEEP_GRACE later, and the upkeep of that write clears it:
should the process stop between the commit and the upkeep, or the upkeep fail, the check comes due
and the profile's memberships catch up. The upkeep is then as durable as the write it follows."""

UPKEEP_GRACE = timedelta(seconds=30)  # far beyond an upkeep's usual few milliseconds, even under load

DERIVED_FIELDS = frozenset({"segments", "blockingKeys"})  # kept by the upkeep and the matcher themselves


def upkeep_due(written_at: datetime) -> datetime:
    """When the check of every segment a write schedules comes due, should its upkeep not clear it."""
    return written_at + UPKEEP_GRACE


def awaits_upkeep(change: ProfileChange) -> bool:
    """Whether a change can move memberships: it writes more than what is derived from the profile."""
    return not change.fields() <= DERIVED_FIELDS


@dataclass(frozen=True, slots=True)
class CompiledSegment:
    """A segment with its tree parsed, its dependencies and its predicate (built once per pass)."""

    segment: Segment
    tree: Condition
    deps: Dependencies
    holds: Predicate


# Every profile change re-reads the segments and compiled them all again (~0.3 ms for the demo's five,
# a few per cent of a small ingest): what compiling gives depends only on the condition, the declared
# traits and the purpose, so it is kept by those, as JSON text.
_COMPILED: dict[bytes, tuple[Condition, Dependencies, Predicate]] = {}
_COMPILED_MAX = 1024  # then forgotten all at once: a cache, never a growing map


def compile_segment(segment: Segment) -> CompiledSegment:
    key = orjson.dumps([segment.condition, segment.traits, segment.purpose], option=orjson.OPT_SORT_KEYS)
    parts = _COMPILED.get(key)
    if parts is None:
        tree = segment.tree()
        parts = (tree, dependencies(tree), predicate(tree))
        if len(_COMPILED) >= _COMPILED_MAX:
            _COMPILED.clear()
        _COMPILED[key] = parts
    return CompiledSegment(segment, *parts)


def dependants(segments: Sequence[CompiledSegment], ids: Collection[str]) -> tuple[CompiledSegment, ...]:
    """The segments of `segments` (in evaluation order: a segment after those it refers to) that refer
    to one of `ids`, directly or through others: an `inSegment` leaf reads those memberships, so what
    moves them moves these too."""
    reached, found = set(ids), []
    for compiled in segments:
        if compiled.segment.id not in reached and not compiled.deps.segments.isdisjoint(reached):
            reached.add(compiled.segment.id)
            found.append(compiled)
    return tuple(found)


@dataclass(frozen=True, slots=True)
class Recheck:
    """One profile to re-evaluate against `segments` (in evaluation order: those others refer to
    first); `clear`: the segments whose scheduled check this answers (removed unless rescheduled)."""

    profile_id: str
    segments: tuple[CompiledSegment, ...]
    clear: frozenset[str] = frozenset()


@dataclass(frozen=True, slots=True)
class Transition:
    profile_id: str
    segment_id: str
    member: bool


@dataclass(slots=True)
class Outcome:
    """What a pass wants written. `seen`: the (version, segments) each decision was made on, so the
    writer can tell a profile that moved since it was read (and have it re-read, not overwritten);
    `definitions`: when each segment decided on was last defined, so that the writer can tell one
    deleted or redefined since (and have it decided again on what is defined now)."""

    transitions: list[Transition] = field(default_factory=list)
    checks: dict[tuple[str, str], datetime | None] = field(default_factory=dict)  # None: no check needed
    seen: dict[str, tuple[int, tuple[str, ...] | None]] = field(default_factory=dict)  # None: the version alone
    definitions: dict[str, tuple[datetime, str | None]] = field(default_factory=dict)

    def profile_ids(self) -> list[str]:
        """The profiles something is written for, in the order decided."""
        ids = [t.profile_id for t in self.transitions] + [profile_id for profile_id, _ in self.checks]
        return list(dict.fromkeys(ids))


def window_of(segments: Iterable[CompiledSegment]) -> timedelta | None:
    """The longest event window of these segments (None: none counts events)."""
    return max((c.deps.window for c in segments if c.deps.window is not None), default=None)


def counted_types(rechecks: Sequence[Recheck]) -> InteractionFilter:
    """The interactions a history read for these rechecks needs: those of the event types their
    segments count (an event leaf names its type; a history is read for nothing else)."""
    return InteractionFilter(types=frozenset(t for r in rechecks for c in r.segments for t in c.deps.event_types))


def history_needed(rechecks: Sequence[Recheck], profiles: Mapping[str, Profile], *, now: datetime) -> datetime | None:
    """The earliest instant the history must be read from for the profiles whose embedded recent
    list does not cover their segments' windows (None: every recent list suffices)."""
    since: datetime | None = None
    for recheck in rechecks:
        profile = profiles.get(recheck.profile_id)
        window = window_of(recheck.segments)
        if profile is None or profile.merged_into is not None or window is None:
            continue
        if not Activity.from_recent(profile).covers(now - window):
            since = now - window if since is None else min(since, now - window)
    return since


def decide(
    rechecks: Sequence[Recheck],
    profiles: Mapping[str, Profile],
    histories: Mapping[str, Sequence[Interaction]],
    *,
    since: datetime | None,
    now: datetime,
) -> Outcome:
    """The transitions and checks of every recheck. `histories`: the interactions at or after `since`
    of the profiles `history_needed` reported (each complete from `since` on); the others are
    evaluated on their embedded recent list."""
    outcome = Outcome()
    for recheck in rechecks:
        outcome.definitions |= {c.segment.id: c.segment.definition() for c in recheck.segments}
        for segment_id in sorted(recheck.clear):
            outcome.checks[(recheck.profile_id, segment_id)] = None
        profile = profiles.get(recheck.profile_id)
        if profile is None:
            continue
        outcome.seen[profile.id] = (profile.version, tuple(profile.segments))
        activity = _activity(profile, recheck, histories, since=since, now=now)
        _decide_one(profile, activity, recheck.segments, outcome, now=now)
    return outcome


def reschedule(
    rechecks: Sequence[Recheck],
    profiles: Mapping[str, Profile],
    histories: Mapping[str, Sequence[Interaction]],
    *,
    since: datetime | None,
    now: datetime,
) -> Outcome:
    """Only the checks of `decide`: when each windowed membership must be looked at again (after a
    batch evaluation, whose store query decided the memberships themselves). Each made on the version
    read (`seen`): a profile written since is left out of the write, to be read and decided again,
    rather than have checks decided on what it was replace those made on what it is."""
    outcome = Outcome()
    for recheck in rechecks:
        outcome.definitions |= {c.segment.id: c.segment.definition() for c in recheck.segments}
        profile = profiles.get(recheck.profile_id)
        if profile is None or profile.merged_into is not None:
            continue
        outcome.seen[profile.id] = (profile.version, None)
        activity = _activity(profile, recheck, histories, since=since, now=now)
        for compiled in recheck.segments:
            if compiled.deps.window is not None:
                outcome.checks[(profile.id, compiled.segment.id)] = next_change(compiled.tree, activity, now=now)
    return outcome


def _activity(
    profile: Profile,
    recheck: Recheck,
    histories: Mapping[str, Sequence[Interaction]],
    *,
    since: datetime | None,
    now: datetime,
) -> Activity:
    """The embedded recent list when it covers the segments' windows, else the history read from `since`."""
    if since is not None and not _recent_covers(profile, recheck, now):
        return Activity.of(histories.get(profile.id, ()), complete_after=since)
    return Activity.from_recent(profile)


def _recent_covers(profile: Profile, recheck: Recheck, now: datetime) -> bool:
    window = window_of(recheck.segments)
    return profile.merged_into is not None or window is None or Activity.from_recent(profile).covers(now - window)


def _decide_one(
    profile: Profile, activity: Activity, segments: Sequence[CompiledSegment], outcome: Outcome, *, now: datetime
) -> None:
    memberships = set(profile.segments)  # updated as segments are decided: `inSegment` reads the new ones
    for compiled in segments:
        segment_id = compiled.segment.id
        # A merged-away profile belongs to nothing: its survivor does.
        member = profile.merged_into is None and compiled.holds(profile, activity, memberships, now=now)
        if member != (segment_id in memberships):
            outcome.transitions.append(Transition(profile.id, segment_id, member))
            memberships.symmetric_difference_update({segment_id})
        if compiled.deps.window is not None and profile.merged_into is None:
            outcome.checks[(profile.id, segment_id)] = next_change(compiled.tree, activity, now=now)
