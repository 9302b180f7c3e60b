"""Segments: definitions, batch membership, real-time re-evaluation and time-window exits.

- `create_segment` / `update_segment` evaluate the segment over the whole store with one query built
  from its validated tree, then apply the difference with the current members (idempotent: an
  interrupted evaluation is finished by running it again), reporting progress.
- `SegmentEngine.profiles_changed` listens to every profile change (app/services/profile_changes.py,
  wired in app/bootstrap.py); `changed(profile_ids, cause, event_types=…, paths=…)` re-evaluates
  only the segments whose dependencies the change touches, with the in-memory predicate of the same
  tree (an erased person's exits are recorded with the erasure and published here), and schedules a
  check at the instant an event would leave a window (`run_due_checks`), so exits happen without a
  new event and without a daily full scan.
- Each write of a profile also leaves, in its own transaction, a check of every segment due a little
  later (`EVERY_SEGMENT`), which its upkeep clears: a process stopped between a commit and its upkeep,
  or an upkeep that failed, leaves memberships that catch up when the check comes due.
- Every membership change is written with a `segment_events` record in the same transaction and
  published to subscribers once committed.
"""

from __future__ import annotations

import asyncio
import logging
import re
import uuid
from collections.abc import Awaitable, Callable, Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from app.domain import clock
from app.domain.errors import Conflict, InvalidInput, LimitExceeded, NotFound
from app.domain.pii_mask import refuse_personal_filter
from app.domain.privacy import check_purpose
from app.domain.profile import Interaction, Profile
from app.domain.segments.conditions import comparisons
from app.domain.segments.dependencies import timed_candidates
from app.domain.segments.parser import segment_references
from app.domain.segments.segment import (
    MembershipChange,
    Segment,
    SegmentEvent,
    checked_segment,
    event_time,
    new_event_id,
    parse_traits,
)
from app.domain.segments.upkeep import (
    EVERY_SEGMENT,
    CompiledSegment,
    Outcome,
    Recheck,
    Transition,
    compile_segment,
    counted_types,
    decide,
    dependants,
    history_needed,
    reschedule,
)
from app.off_loop import off_loop
from app.services.leases import hold_for
from app.services.ports import ProfileStore, StoreTransaction
from app.services.profile_changes import Cause, ProfilesChanged, uncancelled
from app.services.profile_reads import get_profile
from app.services.profile_writes import MAX_ATTEMPTS, MAX_MERGE_HOPS, with_retries
from app.services.segment_bus import SegmentBus

Progress = Callable[[int, int], None]  # (changes applied, changes to apply)
log = logging.getLogger("cdp.segments")
SEGMENT_ID = re.compile(r"^[A-Za-z0-9_-]{1,128}\Z")  # as an inSegment leaf accepts it
WRITE_BATCH = 200
READ_BATCH = 1000  # profiles read, evaluated and written together by a batch evaluation's scheduling
EVALUATION_GRACE = timedelta(minutes=2)  # before another process finishes an evaluation it deems unfinished
RETRY_CHECKS_AFTER = timedelta(minutes=1)  # when a due check that failed comes back
WINDOW_PASSED = "time window passed"  # the causes segment events record for the checks that came due
CAUGHT_UP = "upkeep caught up"  # a write's upkeep never ran (the process stopped) or failed
OFF_LOOP_FROM = 64  # profiles from which evaluating them is worth a worker thread, freeing the event loop
# ... or evaluations of a profile against a segment: one small write in a store of 1,000 segments held
# the loop 45 ms.
OFF_LOOP_EVALUATIONS = 512
# Every profile change is evaluated against each segment its change can affect: in a store of 1,000
# segments a 1-event ingest took 45 ms and a batch of 1,000 events 8.4 s (CDP_MAX_SEGMENTS).
MAX_SEGMENTS = 500


@dataclass(frozen=True, slots=True)
class Evaluation:
    segment: Segment
    entered: int
    exited: int
    members: int


# What `changed` is told of one change: the profile ids, the event types that landed, the paths written.
_Change = tuple[Iterable[str], Collection[str], Collection[str] | None]


async def check_watched(store: ProfileStore, segment_id: str | None, profile_id: str | None) -> None:
    """What a membership subscription filters on exists: a mistyped segment or profile id is a
    NOT_FOUND error at once, not a subscription that never hears anything. A merged-away profile id is
    refused, naming its survivor: listening on it heard nothing (its changes are its survivor's now),
    and following it to the survivor kept the subscriber on the survivor, another person, once the
    merge was undone. A segment with no members yet exists."""
    if segment_id is not None and await store.get_segment(segment_id) is None:
        raise NotFound(f"no segment {segment_id}", field="segmentId")
    if profile_id is None:
        return
    profile = await store.get_profile(profile_id)
    if profile is None:
        raise NotFound(f"no profile {profile_id}", field="profileId")
    if profile.merged_into is not None:
        survivor = await get_profile(store, profile_id)
        now = survivor.id if survivor is not None else profile.merged_into
        raise InvalidInput(
            f"profile {profile_id} was merged into {now}: subscribe with {now} (a subscription does not follow "
            "merges; profile(id:) with the old id gives the current one)",
            field="profileId",
        )


async def membership_history(
    store: ProfileStore, *, segment_id: str | None, profile_id: str | None, limit: int, before: str | None
) -> list[SegmentEvent]:
    """Membership changes newest first. A merged-away profile id answers its own changes (those before
    its merge), and those of each profile it was merged into up to its survivor, the person's now: it
    answered none made since its merge (a frontend holding an id from before it)."""
    ids = None
    if profile_id is not None:
        ids = [profile_id]
        profile = await store.get_profile(profile_id)
        while profile is not None and profile.merged_into is not None and len(ids) <= MAX_MERGE_HOPS:
            ids.append(profile.merged_into)
            profile = await store.get_profile(profile.merged_into)
    return await store.segment_events(segment_id=segment_id, profile_ids=ids, limit=limit, before=before)


def new_segment_id() -> str:
    return "seg_" + uuid.uuid4().hex[:16]


class SegmentEngine:
    """The segment services bound to one store and one bus (what the server holds)."""

    def __init__(
        self,
        store: ProfileStore,
        bus: SegmentBus,
        *,
        missed_writes: Callable[[Sequence[str]], Awaitable[object]] | None = None,
        purposes: tuple[str, ...] | None = None,
        max_segments: int = MAX_SEGMENTS,
    ) -> None:
        self.store = store
        self.bus = bus
        self.max_segments = max_segments
        # The consent purposes a segment may name (CDP_CONSENT_PURPOSES); None: any well-formed one.
        self.purposes = purposes
        # What else follows a write's commit, done for the profiles whose writes' upkeep never ran (a
        # process stopped after the commit): the composition root passes the automatic fuzzy merge,
        # which ingestion runs before the upkeep, so that the check left proves it never ran either.
        self.missed_writes = missed_writes

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
            refuse_personal_filter(comparisons(segment.tree()), field="condition")
        await self._check(segment)
        if len(await self.store.list_segments()) >= self.max_segments:
            raise LimitExceeded(
                f"the store holds {self.max_segments} segments, its most (CDP_MAX_SEGMENTS): delete one no longer "
                "used (deleteSegment)"
            )
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
        # What the update leaves out stays as it was (a purpose dropped that way let in everyone).
        kept = {"description": current.description, "purpose": current.purpose, "traits": dict(current.traits)}
        segment = _segment(segment_id, kept | fields, created_at=current.created_at, updated_at=clock.now())
        if not personal_filters:
            refuse_personal_filter(comparisons(segment.tree()), field="condition")
        await self._check(segment)
        await self.store.save_segment(segment)
        return await self.evaluate(segment, cause="segment updated", progress=progress)

    async def delete(self, segment_id: str) -> int:
        """Members leave (EXITED, cause "segment deleted"), then the definition goes; returns how many
        left. Once begun, it runs to its end even if the caller is cancelled (a WebSocket closed):
        stopped midway, it left a segment still defined with some of its members only."""
        return await uncancelled(self._delete(segment_id))

    async def _delete(self, segment_id: str) -> int:
        segment = await self._get(segment_id)
        users = [s.name for s in await self.store.list_segments() if segment_id in compile_segment(s).deps.segments]
        if users:
            raise Conflict(f"segments {', '.join(users)} use this segment: change them first", field="id")
        # Saved as being deleted (the definition unchanged): a deletion the server's stop cuts short is
        # finished by the schedule (finish_while_holding). A change saved meanwhile replaces the mark,
        # and this deletion then stops with CONFLICT, as before.
        segment = segment.model_copy(update={"deleting_since": clock.now()})
        await self.store.save_segment(segment)
        members = await self.store.member_ids(segment.id)
        try:
            await self._apply(segment, [], members, cause="segment deleted", progress=None)
        except _Redefined:
            raise Conflict(
                f"segment {segment_id} was changed while it was deleted: delete it again", field="id"
            ) from None
        await self.store.delete_segment(segment.id)
        # Members an evaluation wrote between the exits and the deletion: none can be written after it.
        late = await self.store.member_ids(segment.id)
        await self._apply(segment, [], late, cause="segment deleted", progress=None, defined=False)
        return len(members) + len(late)

    async def _get(self, segment_id: str) -> Segment:
        segment = await self.store.get_segment(segment_id)
        if segment is None:
            raise NotFound(f"no segment {segment_id}", field="id")
        return segment

    def _refuse_unknown_purposes(self, segment: Segment, paths: Collection[str]) -> None:
        """A purpose nobody can grant (not in CDP_CONSENT_PURPOSES: setConsent and consent_update events
        refuse it) would hold nobody, for ever: said at once, where the segment names it. `paths`: the
        paths the segment reads (its compiled dependencies)."""
        if self.purposes is None:
            return
        for purpose in sorted({path.split(".")[1] for path in paths if path.startswith("consents.")}):
            try:
                check_purpose(purpose, self.purposes)
            except InvalidInput as exc:
                field = "purpose" if purpose == segment.purpose else "condition"
                raise InvalidInput(f"{field}: {exc.message}", field=field) from None

    async def _check(self, segment: Segment) -> None:
        """Referenced segments exist and are not being deleted (a deletion the server's stop cut short
        would otherwise meet the new reference and never finish), and following them never leads back
        to this one."""
        deps = compile_segment(segment).deps
        self._refuse_unknown_purposes(segment, deps.paths)
        known = {s.id: s for s in await self.store.list_segments()} | {segment.id: segment}
        named_at = segment_references(segment.condition)  # where this segment's own tree names each
        seen: set[str] = set()
        stack = list(deps.segments)
        while stack:
            current = stack.pop()
            if current == segment.id:
                raise InvalidInput("condition: a segment cannot contain itself, even through others", field="condition")
            if current in seen:
                continue
            seen.add(current)
            if current not in known:
                where = named_at.get(current, "condition")  # "condition": named by a segment it refers to
                raise InvalidInput(f"{where}: no segment {current}", field=where)
            if current != segment.id and known[current].deleting_since is not None:
                raise Conflict(f"segment {current} is being deleted: it cannot be used", field="condition")
            stack += compile_segment(known[current]).deps.segments

    # -- batch membership ----------------------------------------------------------------------
    async def evaluate(self, segment: Segment, *, cause: str, progress: Progress | None = None) -> Evaluation:
        """Every profile against `segment` as defined (`Segment.definition`). Conflict when the segment is
        deleted or redefined before the evaluation is done: its writes stop there, and the evaluation
        of the newer definition (or the deletion) is what stands, not this one's."""
        try:
            return await self._evaluate(segment, cause=cause, progress=progress)
        except _Redefined:
            raise Conflict(
                f"segment {segment.id} was deleted or changed while it was evaluated: the newer change stands",
                field="id",
            ) from None

    async def _evaluate(self, segment: Segment, *, cause: str, progress: Progress | None) -> Evaluation:
        at = clock.now()
        compiled = compile_segment(segment)
        held = await self.store.member_versions(segment.id)  # before the scan: see _settle
        matching = await self.store.matching_versions(compiled.tree, now=at)
        entered, exited = await self._settle(compiled, matching, held, cause, progress)
        if compiled.deps.window is not None:  # whose events will age out, members or not: check them then
            timed = set(matching)
            if (active := timed_candidates(compiled.tree)) is not None:
                timed.update(await self.store.matching_versions(active, now=at))
            ids = sorted(timed)
            for start in range(0, len(ids), READ_BATCH):
                await self._reschedule([Recheck(p, (compiled,)) for p in ids[start : start + READ_BATCH]], cause)
        if not await self.store.mark_evaluated(segment, evaluated_at=at):
            raise _Redefined
        # Counted, not the scan's: a profile that changed meanwhile was decided on what it is now.
        members = await self.store.count_members(segment.id)
        return Evaluation(segment.model_copy(update={"evaluated_at": at}), entered, exited, members)

    async def _reschedule(self, rechecks: list[Recheck], cause: str) -> None:
        """The window checks of an evaluation's profiles, each decided on the version read; a profile
        written since is read again and decided on what it is now (its own upkeep looks only at the
        segments its change can move: the check of a segment being created was never made)."""
        for _ in range(MAX_ATTEMPTS):
            if not rechecks:
                return
            at = clock.now()
            profiles, histories, since = await self._read(rechecks, at)
            outcome = await off_loop(
                len(rechecks) >= OFF_LOOP_FROM, reschedule, rechecks, profiles, histories, since=since, now=at
            )
            _, moved = await with_retries(self.store, _write(outcome, cause))
            rechecks = [r for r in rechecks if r.profile_id in moved]
        if rechecks:
            log.warning(
                "the window checks of %d profiles that kept changing were left to their next write", len(rechecks)
            )

    async def _settle(
        self,
        compiled: CompiledSegment,
        matching: Mapping[str, int],
        held: Mapping[str, int],
        cause: str,
        progress: Progress | None,
    ) -> tuple[int, int]:
        """The scan's changes, each written only if its profile is still the version the verdict was
        made on (`matching`: as the scan read it; `held`: the members, read before the scan, for the
        exits). Written whatever the profile had become, a customer turned silver during the
        evaluation of "Gold" kept the scan's verdict over the one its own upkeep had made on the new
        version. A profile that moved, and every change when segments refer to this one (their
        `inSegment` reads the memberships this moves), is decided again on the profile as it is now.
        Returns (entered, exited)."""
        segment_id = compiled.segment.id
        changes = sorted(matching.keys() ^ held.keys())
        # Read whole when memberships decide: a segment naming others reads them, and a membership moves
        # without a new version (another segment's evaluation or window), which the version check misses.
        defined = _ordered([compile_segment(s) for s in await self.store.list_segments()])
        segments = (compiled, *dependants(defined, {segment_id}))
        referred = bool(compiled.deps.segments) or len(segments) > 1
        entered = exited = 0
        for start in range(0, len(changes), WRITE_BATCH):
            chunk = changes[start : start + WRITE_BATCH]
            if referred:
                events = await self._decide_again(segments, chunk, cause)
            else:
                outcome = Outcome(
                    transitions=[Transition(p, segment_id, p in matching) for p in chunk],
                    seen={p: (matching[p] if p in matching else held[p], None) for p in chunk},
                    definitions={segment_id: compiled.segment.definition()},
                )
                events, moved = await with_retries(self.store, _write(outcome, cause))
                self.bus.publish_committed(events)
                if moved:
                    events = events + await self._decide_again(segments, sorted(moved), cause)
            for event in events:
                if event.segment_id == segment_id:
                    entered += event.change is MembershipChange.ENTERED
                    exited += event.change is MembershipChange.EXITED
            if progress is not None:
                progress(start + len(chunk), len(changes))
        return entered, exited

    async def _decide_again(
        self, segments: tuple[CompiledSegment, ...], profile_ids: list[str], cause: str
    ) -> list[SegmentEvent]:
        """Profiles of `_settle` decided on what they are now against `segments` (the evaluated one
        first, then those referring to it), its own definition pinned: _Redefined when it was redefined
        or deleted meanwhile (one referring to it that changed is decided on its definition now)."""
        rechecks = [Recheck(p, segments) for p in profile_ids]
        events = await self._recheck(rechecks, cause, pinned=segments[0].segment)
        self.bus.publish_committed(events)
        return events

    async def _apply(
        self,
        segment: Segment,
        matching: Collection[str],
        current: Collection[str],
        *,
        cause: str,
        progress: Progress | None,
        defined: bool = True,
    ) -> tuple[int, int]:
        """The members' changes, in chunks, each written only while `segment` is still so defined
        (`defined`; False: a deleted segment's last exits)."""
        wanted, held = set(matching), set(current)
        changes = [(p, True) for p in sorted(wanted - held)] + [(p, False) for p in sorted(held - wanted)]
        done = 0
        for start in range(0, len(changes), WRITE_BATCH):
            chunk = changes[start : start + WRITE_BATCH]
            outcome = Outcome(
                transitions=[Transition(p, segment.id, member) for p, member in chunk],
                definitions={segment.id: segment.definition()} if defined else {},
            )
            events, _ = await with_retries(self.store, _write(outcome, cause))
            self.bus.publish_committed(events)
            done += len(chunk)
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
        return await self._changed([(profile_ids, event_types, paths)], cause)

    async def profiles_changed(self, changes: Sequence[ProfilesChanged]) -> None:
        """The listener: memberships follow every committed profile change, whoever wrote it. Changes
        of one cause in a row (an ingested batch's, one per set of event types) are kept up together:
        one read, one evaluation and one write for all their profiles."""
        together: list[ProfilesChanged] = []
        for change in changes:
            if together and change.cause is not together[0].cause:
                await self._changed(
                    [(c.profile_ids, c.event_types, c.paths) for c in together], together[0].cause.value
                )
                together = []
            if change.cause is Cause.ERASURE:  # the exits were recorded with the erasure (erasure_exits)
                self.bus.erased(change.profile_ids)  # the whole family: its exits name the live profile only
                self.bus.publish_committed(change.exits)
            else:
                together.append(change)
        if together:
            await self._changed([(c.profile_ids, c.event_types, c.paths) for c in together], together[0].cause.value)

    async def _changed(self, changes: Sequence[_Change], cause: str) -> list[SegmentEvent]:
        segments = _ordered([compile_segment(s) for s in await self.store.list_segments()])
        wanted: dict[str, set[str]] = {}  # profile id → the ids of the segments its changes can affect
        for profile_ids, event_types, paths in changes:
            affected = {
                c.segment.id for c in segments if paths is None or c.deps.affected_by([*paths, "segments"], event_types)
            }
            for profile_id in profile_ids:  # each, affected or not, for the check its write left
                wanted.setdefault(profile_id, set()).update(affected)
        # The check a write leaves stands for every write of the profile since the last upkeep, and
        # this upkeep clears it: when it stands for more than this change's (another write's upkeep
        # has yet to run, and may never if the process stops), every segment is evaluated.
        every = {c.segment.id for c in segments}
        pending = await self.store.pending_writes(list(wanted))
        for profile_id, writes in pending.items():
            if writes > 1:
                wanted[profile_id] = set(every)
        cleared = frozenset({EVERY_SEGMENT})
        rechecks = [
            Recheck(p, tuple(c for c in segments if c.segment.id in ids), clear=cleared)
            for p, ids in wanted.items()
            if ids
        ]
        # Those with no check to clear (none is left while no segment is defined) cost no write.
        settled = [p for p, ids in wanted.items() if not ids and p in pending]
        events = await self._recheck(rechecks, cause, settled=settled, pending=pending)
        self.bus.publish_committed(events)
        return events

    async def run_due_checks(self, *, limit: int = 500) -> int:
        """Re-evaluate memberships whose time window moved on, and those of profiles whose write's
        upkeep never cleared its check (of every segment); returns how many checks ran.

        The checks taken are first put off by RETRY_CHECKS_AFTER, and a group that fails is retried a
        profile at a time: a check that keeps failing (a profile some bug cannot evaluate) comes back
        later on its own, and holds up neither the others nor the next round's."""
        now = clock.now()
        due = await self.store.due_checks(now, limit=limit)
        if not due:
            return 0
        await with_retries(self.store, _put_off(due, now + RETRY_CHECKS_AFTER))
        segments = _ordered([compile_segment(s) for s in await self.store.list_segments()])
        by_profile: dict[str, set[str]] = {}
        for profile_id, segment_id in due:
            by_profile.setdefault(profile_id, set()).add(segment_id)
        if not segments:
            await self._cleared(due, [p for p, ids in by_profile.items() if EVERY_SEGMENT in ids])
            return len(due)
        for cause, missed in ((WINDOW_PASSED, False), (CAUGHT_UP, True)):
            # With the segments referring to those whose window passed: their members follow.
            rechecks = [
                Recheck(p, _with_dependants(segments, ids, every=missed), clear=frozenset(ids))
                for p, ids in by_profile.items()
                if (EVERY_SEGMENT in ids) is missed
            ]
            if missed and rechecks:
                log.warning("segment upkeep caught up with %d profiles whose writes it had missed", len(rechecks))
                await self._missed_writes([r.profile_id for r in rechecks])
            try:
                self.bus.publish_committed(await self._recheck(rechecks, cause))
            except Exception:
                log.exception("%d segment checks failed together: retried one profile at a time", len(rechecks))
                await self._recheck_each(rechecks, cause)
        return len(due)

    async def _cleared(self, due: Sequence[tuple[str, str]], missed: list[str]) -> None:
        """With no segment defined, there is no membership to catch up (a segment defined later is
        evaluated over every profile): the checks are cleared without their profiles being read.
        Read and evaluated against nothing, 100,000 of them (a bulk load's, with no server's upkeep
        running) held a core for ~14 s, 500 at a time, each round logging a warning."""
        if missed:  # first: the check stands for this work too until it is cleared (profiles.py)
            await self._missed_writes(missed)
        # Counted now, a check of every segment is cleared only if no write came since: a write
        # committed meanwhile (a segment defined meanwhile, its own upkeep not run yet) keeps its check.
        pending = await self.store.pending_writes(missed)
        await with_retries(self.store, _write(Outcome(checks=dict.fromkeys(due)), CAUGHT_UP, pending))
        log.debug("cleared the segment checks of %d profiles: no segment is defined", len({p for p, _ in due}))

    async def _missed_writes(self, profile_ids: list[str]) -> None:
        if self.missed_writes is None:
            return
        try:
            await self.missed_writes(profile_ids)
        except Exception:  # the memberships are caught up all the same
            log.exception("the after-commit work of %d missed writes failed", len(profile_ids))

    async def _recheck_each(self, rechecks: Sequence[Recheck], cause: str) -> None:
        for recheck in rechecks:
            try:
                self.bus.publish_committed(await self._recheck([recheck], cause))
            except Exception:
                log.exception(
                    "segment checks of profile %s failed: tried again in %s", recheck.profile_id, RETRY_CHECKS_AFTER
                )

    async def _recheck(
        self,
        rechecks: list[Recheck],
        cause: str,
        *,
        settled: Collection[str] = (),
        pending: Mapping[str, int] | None = None,
        pinned: Segment | None = None,
    ) -> list[SegmentEvent]:
        """Re-evaluate the profiles and write every change in one unit of work; the caller publishes
        the events once written. Nothing here holds the store's write lock but the write itself: the
        profiles are read on the store's readers and evaluated (off the loop when many) before it.
        A profile that moved since it was read is left out of the write, then read and evaluated
        again, so that a decision made on an old version never overwrites one made on the new; a
        segment deleted or redefined meanwhile has every decision made again on what is defined now.
        `settled`: profiles whose change can move no segment: the check their write left is cleared
        with the first write, and they are not read. `pending`: how many writes each profile's check
        of every segment stood for when the upkeep began: the check is cleared only if it stands for
        no more now (a write committed since it was counted is left to its own upkeep). `pinned`: a
        segment being evaluated, whose redefinition or deletion meanwhile stops this (_Redefined) rather
        than having it decided on what is defined now."""
        events: list[SegmentEvent] = []
        for _ in range(MAX_ATTEMPTS):
            if not rechecks and not settled:
                return events
            at = clock.now()
            profiles, histories, since = await self._read(rechecks, at) if rechecks else ({}, {}, None)
            heavy = len(rechecks) >= OFF_LOOP_FROM or sum(len(r.segments) for r in rechecks) >= OFF_LOOP_EVALUATIONS
            outcome = await off_loop(heavy, decide, rechecks, profiles, histories, since=since, now=at)
            outcome.checks |= {(profile_id, EVERY_SEGMENT): None for profile_id in settled}
            settled = ()
            try:
                written, moved = await with_retries(self.store, _write(outcome, cause, pending))
            except _Redefined:
                now = await self.store.get_segment(pinned.id) if pinned is not None else None
                if pinned is not None and (now is None or now.definition() != pinned.definition()):
                    raise
                rechecks = await self._as_defined_now(rechecks)
                continue
            events += written
            rechecks = [r for r in rechecks if r.profile_id in moved]
        if rechecks:  # each write that kept moving them reports its own change, which re-evaluates them
            log.warning("segment upkeep gave up on %d profiles that kept changing", len(rechecks))
        return events

    async def _as_defined_now(self, rechecks: Sequence[Recheck]) -> list[Recheck]:
        """The same rechecks against the segments' definitions as stored now (without those deleted)."""
        defined = {c.segment.id: c for c in _ordered([compile_segment(s) for s in await self.store.list_segments()])}
        found = []
        for recheck in rechecks:
            asked = {c.segment.id for c in recheck.segments}
            segments = tuple(c for segment_id, c in defined.items() if segment_id in asked)
            if segments or recheck.clear:
                found.append(Recheck(recheck.profile_id, segments, recheck.clear))
        return found

    async def _read(
        self, rechecks: Sequence[Recheck], at: datetime
    ) -> tuple[dict[str, Profile], dict[str, list[Interaction]], datetime | None]:
        """The profiles, and the history of those whose recent list falls short of their windows:
        two reads, whatever the number of profiles."""
        profiles = await self.store.get_profiles([r.profile_id for r in rechecks])
        since = history_needed(rechecks, profiles, now=at)
        if since is None:
            return profiles, {}, since
        # Only the event types the segments count: an "at risk" check of a profile past its recent
        # list's reach read every page view of 120 days to count its orders.
        histories = await self.store.interactions_since(list(profiles), since, counted_types(rechecks))
        return profiles, histories, since


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
        revision=uuid.uuid4().hex,
    )
    checked_segment(segment)
    return segment


def _condition(raw: Any) -> dict[str, Any]:
    if not isinstance(raw, dict):
        raise InvalidInput('condition: an object such as {"compare": {…}} or {"and": […]}', field="condition")
    return raw


CHECKS_LEASE = "segmentChecks"
CHECKS_LEASE_ROUNDS = 3  # a holder whose lease was not renewed for this many rounds is taken over


class _Redefined(Exception):
    """A segment an outcome was decided on was deleted or redefined before it was written."""


def _ordered(segments: list[CompiledSegment]) -> list[CompiledSegment]:
    """Segments others refer to come first, so `inSegment` reads memberships already updated."""
    by_id = {c.segment.id: c for c in segments}
    done: list[CompiledSegment] = []
    seen: set[str] = set()
    for compiled in segments:
        _visit(compiled, by_id, seen, done)
    return done


def _visit(
    compiled: CompiledSegment, by_id: dict[str, CompiledSegment], seen: set[str], done: list[CompiledSegment]
) -> None:
    """A function of the module, not a closure: a closure that calls itself is a reference cycle,
    left for the collector after every upkeep."""
    if compiled.segment.id in seen:
        return
    seen.add(compiled.segment.id)
    for other in sorted(compiled.deps.segments):
        if other in by_id:
            _visit(by_id[other], by_id, seen, done)
    done.append(compiled)


def _with_dependants(
    segments: list[CompiledSegment], ids: Collection[str], *, every: bool
) -> tuple[CompiledSegment, ...]:
    """`segments` (in evaluation order) that are in `ids` or refer to one of them; all of them if `every`."""
    if every:
        return tuple(segments)
    wanted = set(ids) | {c.segment.id for c in dependants(segments, ids)}
    return tuple(c for c in segments if c.segment.id in wanted)


def _put_off(checks: Sequence[tuple[str, str]], until: datetime) -> Callable[[StoreTransaction], Awaitable[None]]:
    """The checks taken, due again at `until` unless their recheck clears or reschedules them first."""

    async def work(tx: StoreTransaction) -> None:
        await tx.schedule_checks([(profile_id, segment_id, until) for profile_id, segment_id in checks])

    return work


def _write(
    outcome: Outcome, cause: str, pending: Mapping[str, int] | None = None
) -> Callable[[StoreTransaction], Awaitable[tuple[list[SegmentEvent], set[str]]]]:
    """One unit of work for a whole outcome: the transitions (each recorded as a segment event),
    then the checks. Returns the events written and the profiles left out because they moved since
    the outcome was decided (its `seen` differs from what is stored now). Raises _Redefined, writing
    nothing, when a segment it was decided on is no longer defined as it was (deleted, or changed: the
    embedded store writes one transaction at a time; with MongoDB, as of the transaction's snapshot).
    `pending`: the writes each profile's check of every segment was counted for (see _recheck)."""

    async def work(tx: StoreTransaction) -> tuple[list[SegmentEvent], set[str]]:
        if outcome.definitions:
            defined = await tx.get_segments(outcome.definitions)
            if any(s not in defined or defined[s].definition() != d for s, d in outcome.definitions.items()):
                raise _Redefined
        # The memberships of what was decided or is put off: a profile whose check is only cleared
        # (settled: its change could move no segment) is not read, 980 of a batch of 1,000 without segments.
        read = [t.profile_id for t in outcome.transitions] + list(outcome.seen)
        read += [profile_id for (profile_id, _), due in outcome.checks.items() if due is not None]
        stored = await tx.segment_memberships(list(dict.fromkeys(read)))
        moved = {  # memberships compared as sets: a store may hold them in any order
            profile_id
            for profile_id, (version, segments) in outcome.seen.items()
            if profile_id in stored
            and (
                stored[profile_id][0] != version
                or (segments is not None and set(stored[profile_id][1]) != set(segments))
            )
        }
        held: dict[str, set[str]] = {}
        events: list[SegmentEvent] = []
        at = event_time(clock.now(), await tx.latest_segment_event_at()) if outcome.transitions else None
        for transition in outcome.transitions:
            profile_id = transition.profile_id
            if profile_id not in stored or profile_id in moved:
                continue
            segments = held.setdefault(profile_id, set(stored[profile_id][1]))
            if (transition.segment_id in segments) == transition.member:
                continue  # another writer made this very change first
            segments.symmetric_difference_update({transition.segment_id})
            events.append(
                SegmentEvent(
                    _id=new_event_id(),
                    segment_id=transition.segment_id,
                    profile_id=profile_id,
                    change=MembershipChange.ENTERED if transition.member else MembershipChange.EXITED,
                    at=at,
                    cause=cause,
                )
            )
        # Derived data: no version bump, so that concurrent writers of the profile never conflict on it.
        await tx.set_segments({p: sorted(segments) for p, segments in held.items() if segments != set(stored[p][1])})
        await tx.insert_segment_events(events)
        kept = [
            (profile_id, segment_id, due)
            for (profile_id, segment_id), due in outcome.checks.items()
            if profile_id not in moved and (due is None or profile_id in stored)
        ]
        counts = pending or {}
        counted = {p: counts[p] for p, s, due in kept if s == EVERY_SEGMENT and due is None and p in counts}
        await tx.schedule_checks([(p, s, due) for p, s, due in kept if not (s == EVERY_SEGMENT and p in counted)])
        await tx.clear_upkeep(counted)
        return events, moved

    return work


async def keep_checking(engine: SegmentEngine, *, every_seconds: float) -> None:
    """Run due time-window checks, and finish evaluations left unfinished, until cancelled: what the
    server does in the background."""
    holder = uuid.uuid4().hex  # this process's schedule
    while True:
        try:
            await check_while_holding(engine, holder, every_seconds=every_seconds)
            await finish_while_holding(engine, holder, every_seconds=every_seconds)
        except Exception:  # a store hiccup must not end the schedule; the next round retries
            log.exception("segment time-window checks failed; retrying in %.0f s", every_seconds)
        await asyncio.sleep(every_seconds)


async def finish_while_holding(engine: SegmentEngine, holder: str, *, every_seconds: float) -> int:
    """Finish, under the checks' lease, each segment deletion a stopped process left midway, and
    evaluate again each segment whose last evaluation over the store did not finish: the process
    stopped during it, or the request that ran it was cancelled (a WebSocket closed), which left the
    members of part of the store only. Work under way is given EVALUATION_GRACE first; were it still
    running, the two would write each change once all the same. Returns how many were finished."""
    now = clock.now()
    segments = await engine.store.list_segments()
    owed = [s for s in segments if s.evaluation_unfinished() and s.updated_at <= now - EVALUATION_GRACE]
    doomed = [s for s in segments if s.deleting_since is not None and s.deleting_since <= now - EVALUATION_GRACE]
    if not (owed or doomed) or not await hold_for(
        engine.store, CHECKS_LEASE, holder, timedelta(seconds=every_seconds * CHECKS_LEASE_ROUNDS)
    ):
        return 0
    finished = 0
    for segment in doomed:
        try:
            left = await engine.delete(segment.id)
        except (Conflict, NotFound) as exc:  # changed, used by another or deleted meanwhile
            log.warning("segment %s: its unfinished deletion is not done: %s", segment.id, exc)
            continue
        finished += 1
        log.warning("segment %s: its unfinished deletion is done (%d left)", segment.id, left)
    for segment in (c.segment for c in _ordered([compile_segment(s) for s in owed])):  # those they use first
        cause = "segment created" if segment.created_at == segment.updated_at else "segment updated"
        try:
            evaluation = await engine.evaluate(segment, cause=cause)
        except Conflict:  # deleted or redefined meanwhile: that change and its own evaluation stand
            continue
        finished += 1
        log.warning(
            "segment %s: its unfinished evaluation is done (%d entered, %d left)",
            segment.id,
            evaluation.entered,
            evaluation.exited,
        )
    return finished


async def check_while_holding(engine: SegmentEngine, holder: str, *, every_seconds: float) -> int:
    """Run the due checks if this process's schedule holds the checks' lease (taken, or renewed,
    before each batch of them): every worker process runs the schedule, and each checked the same due
    profiles every round. The holder keeps it round after round; another takes over once it has not
    been renewed for a few rounds (its process stopped). Returns how many checks ran. Nothing is
    written while nothing is due (an idle server writes nothing)."""
    ran = 0
    while True:
        due = await engine.store.next_check_at()
        if due is None or due > clock.now():
            return ran
        if not await hold_for(
            engine.store, CHECKS_LEASE, holder, timedelta(seconds=every_seconds * CHECKS_LEASE_ROUNDS)
        ):
            return ran
        done = await engine.run_due_checks()
        ran += done
        if done == 0:
            return ran
