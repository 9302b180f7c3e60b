"""Segments: definitions, batch membership, real-time re-evaluation and time-window exits.

- `create_segment` / `update_segment` evaluate the segment over the whole store with one query built
  from its validated tree, then apply the difference with the current members (idempotent: an
  interrupted evaluation is finished by running it again), reporting progress.
- `SegmentEngine.profiles_changed` listens to every profile change (app/services/profile_changes.py,
  wired in app/bootstrap.py); `changed(profile_ids, cause, event_types=…, paths=…)` re-evaluates
  only the segments whose dependencies the change touches, with the in-memory predicate of the same
  tree, an erased person leaves their segments, and schedules a check at the instant an event would leave a
  window (`run_due_checks`), so exits happen without a new event and without a daily full scan.
- Every membership change is written with a `segment_events` record in the same transaction and
  published to subscribers once committed.
"""

from __future__ import annotations

import asyncio
import logging
import re
import time
import uuid
from collections.abc import Awaitable, Callable, Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from app.domain import clock
from app.domain.errors import Conflict, InvalidInput, NotFound
from app.domain.pii_mask import refuse_personal_filter
from app.domain.profile import Interaction, Profile
from app.domain.profile_change import ProfileChange
from app.domain.profile_query import InteractionFilter, InteractionPosition
from app.domain.segments.conditions import Condition, compared_paths
from app.domain.segments.dependencies import Dependencies, dependencies, next_change
from app.domain.segments.predicate import Activity, ActivityTooShort, longest_window, predicate
from app.domain.segments.segment import MembershipChange, Segment, SegmentEvent, checked_segment, parse_traits
from app.services.ports import ProfileStore, StoreTransaction
from app.services.profile_changes import Cause, ProfilesChanged
from app.services.profile_writes import with_retries
from app.services.segment_bus import SegmentBus

Progress = Callable[[int, int], None]  # (changes applied, changes to apply)
log = logging.getLogger("cdp.segments")
SEGMENT_ID = re.compile(r"^[A-Za-z0-9_-]{1,128}$")  # as an inSegment leaf accepts it
WRITE_BATCH = 200
HISTORY_PAGE = 500


@dataclass(frozen=True, slots=True)
class Evaluation:
    segment: Segment
    entered: int
    exited: int
    members: int


@dataclass(frozen=True, slots=True)
class _Compiled:
    segment: Segment
    tree: Condition
    deps: Dependencies


def new_segment_id() -> str:
    return "seg_" + uuid.uuid4().hex[:16]


class SegmentEngine:
    """The segment services bound to one store and one bus (what the server holds)."""

    def __init__(self, store: ProfileStore, bus: SegmentBus) -> None:
        self.store = store
        self.bus = bus

    # -- definitions ---------------------------------------------------------------------------
    async def create(
        self,
        fields: dict[str, Any],
        progress: Progress | None = None,
        *,
        segment_id: str | None = None,
        personal_filters: bool = True,
    ) -> Evaluation:
        """A new segment; `segment_id` gives it a chosen id (the demo data's are readable).
        Without `personal_filters` (a key without read:pii) a condition comparing personal data is
        refused: the members' count would reveal it."""
        at = clock.now()
        if segment_id is not None and not SEGMENT_ID.match(segment_id):
            raise InvalidInput("id: 1-128 letters, digits, dashes or underscores", field="id")
        if segment_id is not None and await self.store.get_segment(segment_id) is not None:
            raise Conflict(f"segment {segment_id} exists already", field="id")
        segment = _segment(segment_id or new_segment_id(), fields, created_at=at, updated_at=at)
        if not personal_filters:
            refuse_personal_filter(compared_paths(segment.tree()), field="condition")
        await self._check(segment)
        await self.store.save_segment(segment)
        return await self.evaluate(segment, cause="segment created", progress=progress)

    async def update(
        self,
        segment_id: str,
        fields: dict[str, Any],
        progress: Progress | None = None,
        *,
        personal_filters: bool = True,
    ) -> Evaluation:
        current = await self._get(segment_id)
        segment = _segment(segment_id, fields, created_at=current.created_at, updated_at=clock.now())
        if not personal_filters:
            refuse_personal_filter(compared_paths(segment.tree()), field="condition")
        await self._check(segment)
        await self.store.save_segment(segment)
        return await self.evaluate(segment, cause="segment updated", progress=progress)

    async def delete(self, segment_id: str) -> int:
        """Members leave (EXITED, cause "segment deleted"), then the definition goes; returns how many left."""
        segment = await self._get(segment_id)
        users = [s.name for s in await self.store.list_segments() if segment_id in _compile(s).deps.segments]
        if users:
            raise Conflict(f"segments {', '.join(users)} use this segment: change them first", field="id")
        members = await self.store.member_ids(segment.id)
        await self._apply(segment.id, [], members, cause="segment deleted", progress=None)
        await self.store.delete_segment(segment.id)
        return len(members)

    async def _get(self, segment_id: str) -> Segment:
        segment = await self.store.get_segment(segment_id)
        if segment is None:
            raise NotFound(f"no segment {segment_id}", field="id")
        return segment

    async def _check(self, segment: Segment) -> None:
        """Referenced segments exist, and following them never leads back to this one."""
        known = {s.id: s for s in await self.store.list_segments()} | {segment.id: segment}
        seen: set[str] = set()
        stack = list(_compile(segment).deps.segments)
        while stack:
            current = stack.pop()
            if current == segment.id:
                raise InvalidInput("condition: a segment cannot contain itself, even through others", field="condition")
            if current in seen:
                continue
            seen.add(current)
            if current not in known:
                raise InvalidInput(f"condition: no segment {current}", field="condition")
            stack += _compile(known[current]).deps.segments

    # -- batch membership ----------------------------------------------------------------------
    async def evaluate(self, segment: Segment, *, cause: str, progress: Progress | None = None) -> Evaluation:
        at = clock.now()
        compiled = _compile(segment)
        matching = await self.store.matching_profile_ids(compiled.tree, now=at)
        current = await self.store.member_ids(segment.id)
        entered, exited = await self._apply(segment.id, matching, current, cause=cause, progress=progress)
        if compiled.deps.window is not None:
            for profile_id in matching:  # members whose events will age out: check them then
                await self._schedule(compiled, profile_id, at)
        segment = segment.model_copy(update={"evaluated_at": at})
        await self.store.save_segment(segment)
        return Evaluation(segment, entered, exited, len(matching))

    async def _apply(
        self,
        segment_id: str,
        matching: Collection[str],
        current: Collection[str],
        *,
        cause: str,
        progress: Progress | None,
    ) -> tuple[int, int]:
        wanted, held = set(matching), set(current)
        changes = [(p, True) for p in sorted(wanted - held)] + [(p, False) for p in sorted(held - wanted)]
        done = 0
        for start in range(0, len(changes), WRITE_BATCH):
            events: list[SegmentEvent] = []
            async with self.store.batch():
                for profile_id, member in changes[start : start + WRITE_BATCH]:
                    event = await with_retries(self.store, _transition(profile_id, segment_id, member, cause))
                    if event is not None:
                        events.append(event)
            self.bus.publish_committed(events)
            done += len(changes[start : start + WRITE_BATCH])
            if progress is not None:
                progress(done, len(changes))
        return len(wanted - held), len(held - wanted)

    # -- real time -----------------------------------------------------------------------------
    async def changed(
        self,
        profile_ids: Iterable[str],
        cause: str,
        *,
        event_types: Collection[str] = (),
        paths: Collection[str] | None = None,
    ) -> list[SegmentEvent]:
        """Re-evaluate the segments a change can affect (`paths` None: any field may have changed)."""
        segments = _ordered([_compile(s) for s in await self.store.list_segments()])
        if not segments:
            return []
        affected = [c for c in segments if paths is None or c.deps.affected_by([*paths, "segments"], event_types)]
        if not affected:
            return []
        events: list[SegmentEvent] = []
        async with self.store.batch():  # one commit for the whole change, whatever it touched
            for profile_id in dict.fromkeys(profile_ids):
                events += await self._reevaluate(profile_id, affected, cause)
        self.bus.publish_committed(events)
        return events

    async def profiles_changed(self, changes: Sequence[ProfilesChanged]) -> None:
        """The listener: memberships follow every committed profile change, whoever wrote it."""
        for change in changes:
            if change.cause is Cause.ERASURE:
                self.erased(change.left_segments)
            else:
                await self.changed(
                    change.profile_ids, change.cause.value, event_types=change.event_types, paths=change.paths
                )

    def erased(self, left_segments: Mapping[str, Iterable[str]]) -> list[SegmentEvent]:
        """Tell subscribers the erased person left their segments (erased profile id → its segments).
        Not recorded: the history of an erased person is deleted with them."""
        events = [
            SegmentEvent(
                _id=_event_id(),
                segment_id=segment_id,
                profile_id=profile_id,
                change=MembershipChange.EXITED,
                at=clock.now(),
                cause=Cause.ERASURE.value,
            )
            for profile_id, segment_ids in left_segments.items()
            for segment_id in segment_ids
        ]
        self.bus.publish_committed(events)
        return events

    async def run_due_checks(self, *, limit: int = 500) -> int:
        """Re-evaluate memberships whose time window moved on; returns how many checks ran."""
        at = clock.now()
        due = await self.store.due_checks(at, limit=limit)
        by_id = {s.id: _compile(s) for s in await self.store.list_segments()}
        events: list[SegmentEvent] = []
        async with self.store.batch():
            for profile_id, segment_id in due:
                compiled = by_id.get(segment_id)
                events += await self._reevaluate(
                    profile_id, [compiled] if compiled else [], "time window passed", clear=segment_id
                )
        self.bus.publish_committed(events)
        return len(due)

    async def _reevaluate(
        self, profile_id: str, segments: list[_Compiled], cause: str, *, clear: str | None = None
    ) -> list[SegmentEvent]:
        """The membership changes of one profile, written in the caller's batch; the caller publishes
        them once that batch committed."""
        at = clock.now()
        profile = await self.store.get_profile(profile_id)
        events: list[SegmentEvent] = []
        if profile is None:
            return events
        memberships = set(profile.segments)
        activity: Activity | None = None
        if clear is not None:
            await self.store.run_in_transaction(_unschedule(profile.id, clear))
        for compiled in segments:
            if profile.merged_into is not None:
                member = False  # a merged-away profile belongs to nothing: its survivor does
            else:
                activity = activity or await _activity(self.store, profile, compiled.tree, at)
                member, activity = await _holds(self.store, profile, compiled.tree, activity, memberships, at)
            if member != (compiled.segment.id in memberships):
                event = await with_retries(self.store, _transition(profile.id, compiled.segment.id, member, cause))
                if event is not None:
                    events.append(event)
                memberships.symmetric_difference_update({compiled.segment.id})
            if compiled.deps.window is not None and activity is not None and profile.merged_into is None:
                due = next_change(compiled.tree, activity, now=at)
                await self.store.run_in_transaction(_scheduler(profile.id, compiled.segment.id, due))
        return events

    async def _schedule(self, compiled: _Compiled, profile_id: str, at: datetime) -> None:
        profile = await self.store.get_profile(profile_id)
        if profile is None:
            return
        activity = await _activity(self.store, profile, compiled.tree, at)
        due = next_change(compiled.tree, activity, now=at)
        await self.store.run_in_transaction(_scheduler(profile_id, compiled.segment.id, due))


# -- helpers ----------------------------------------------------------------------------------
def _segment(segment_id: str, fields: dict[str, Any], *, created_at: datetime, updated_at: datetime) -> Segment:
    segment = Segment(
        _id=segment_id,
        name=str(fields.get("name") or "").strip(),
        description=fields.get("description"),
        condition=_condition(fields.get("condition")),
        purpose=fields.get("purpose"),
        traits=parse_traits(fields.get("traits")),
        created_at=created_at,
        updated_at=updated_at,
    )
    checked_segment(segment)
    return segment


def _condition(raw: Any) -> dict[str, Any]:
    if not isinstance(raw, dict):
        raise InvalidInput('condition: an object such as {"compare": {…}} or {"and": […]}', field="condition")
    return raw


def _compile(segment: Segment) -> _Compiled:
    tree = segment.tree()
    return _Compiled(segment, tree, dependencies(tree))


def _ordered(segments: list[_Compiled]) -> list[_Compiled]:
    """Segments others refer to come first, so `inSegment` reads memberships already updated."""
    by_id = {c.segment.id: c for c in segments}
    done: list[_Compiled] = []
    seen: set[str] = set()

    def visit(compiled: _Compiled) -> None:
        if compiled.segment.id in seen:
            return
        seen.add(compiled.segment.id)
        for other in sorted(compiled.deps.segments):
            if other in by_id:
                visit(by_id[other])
        done.append(compiled)

    for compiled in segments:
        visit(compiled)
    return done


async def _activity(store: ProfileStore, profile: Profile, tree: Condition, at: datetime) -> Activity:
    """The embedded recent list, or the history as far back as the tree's longest window needs."""
    activity = Activity.from_recent(profile)
    window = longest_window(tree)
    if window is None or activity.covers(at - window):
        return activity
    since = at - window
    found: list[Interaction] = []
    before: InteractionPosition | None = None
    while page := await store.list_interactions(
        profile.id, before=before, where=InteractionFilter(), limit=HISTORY_PAGE
    ):
        found += page
        before = InteractionPosition(page[-1].timestamp, page[-1].message_id)
        if len(page) < HISTORY_PAGE or page[-1].timestamp <= since:
            return Activity.of(found, complete_after=None if len(page) < HISTORY_PAGE else page[-1].timestamp)
    return Activity.of(found)


async def _holds(
    store: ProfileStore, profile: Profile, tree: Condition, activity: Activity, memberships: set[str], at: datetime
) -> tuple[bool, Activity]:
    try:
        return predicate(tree)(profile, activity, memberships, now=at), activity
    except ActivityTooShort:
        longer = await _activity(store, profile.model_copy(update={"recent": []}), tree, at)
        return predicate(tree)(profile, longer, memberships, now=at), longer


def _transition(
    profile_id: str, segment_id: str, member: bool, cause: str
) -> Callable[[StoreTransaction], Awaitable[SegmentEvent | None]]:
    async def work(tx: StoreTransaction) -> SegmentEvent | None:
        profile = await tx.get_profile(profile_id)
        if profile is None or (segment_id in profile.segments) == member:
            return None
        held = set(profile.segments)
        segments = sorted(held | {segment_id}) if member else sorted(held - {segment_id})
        # Derived data: no version bump, so that concurrent writers of the profile never conflict on it.
        await tx.update_profile(profile_id, ProfileChange(set={"segments": segments}))
        event = SegmentEvent(
            _id=_event_id(),
            segment_id=segment_id,
            profile_id=profile_id,
            change=MembershipChange.ENTERED if member else MembershipChange.EXITED,
            at=clock.now(),
            cause=cause,
        )
        await tx.insert_segment_event(event)
        return event

    return work


def _event_id() -> str:
    """Ids that sort in the order events were made (the tie-break for events of one millisecond)."""
    return f"sev_{time.time_ns():020d}{uuid.uuid4().hex[:8]}"


def _scheduler(profile_id: str, segment_id: str, due: datetime | None) -> Callable[[StoreTransaction], Awaitable[None]]:
    async def work(tx: StoreTransaction) -> None:
        await tx.schedule_check(profile_id, segment_id, due)

    return work


def _unschedule(profile_id: str, segment_id: str) -> Callable[[StoreTransaction], Awaitable[None]]:
    return _scheduler(profile_id, segment_id, None)


async def keep_checking(engine: SegmentEngine, *, every_seconds: float) -> None:
    """Run due time-window checks until cancelled: what the server does in the background."""
    while True:
        try:
            while await engine.run_due_checks() > 0:
                pass
        except Exception:  # a store hiccup must not end the schedule; the next round retries
            log.exception("segment time-window checks failed; retrying in %.0f s", every_seconds)
        await asyncio.sleep(every_seconds)
