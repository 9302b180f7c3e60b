"""Event ingestion: validate each event, drop replays, resolve the customer, apply the event.

Each event is judged alone: data past the event limits is refused before anything is written, and
one bad, duplicate or unstorable event never fails the others. A batch is stored as a batch (one
read and one write per profile, identities, idempotency keys and history in bulk: see
app/services/ingestion_batch.py); an event whose identifiers link profiles is stored alone, as its
own unit of work (a merge, or merge protection's refusal), between the runs before and after it, so
the results are those of one-at-a-time ingestion. Only what is not an event's fault (the store being
unavailable) fails the batch. The batch is made durable as a whole before the results are returned
(one commit in the embedded store), so ACCEPTED means stored.
"""

from __future__ import annotations

import asyncio
import logging
import time
import uuid
from collections.abc import Awaitable, Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from enum import StrEnum
from typing import TypeVar

from app.domain import clock
from app.domain.errors import DomainError, InvalidInput, LimitExceeded
from app.domain.event_effects import (
    change_for_event,
    consent_decision,
    event_traits_refusal,
    interaction_document,
    landed_as,
    stated_by,
)
from app.domain.event_limits import EventLimits, shown
from app.domain.events import MAX_FUTURE_SKEW, Event, EventType, RawEvent, parse_event
from app.domain.identifiers import Identifier
from app.domain.pii_mask import mask_text
from app.domain.privacy import check_purpose
from app.domain.profile import Profile
from app.domain.profile_change import ProfileChange
from app.off_loop import off_loop
from app.services.identity_policy import IdentityPolicy
from app.services.ingestion_batch import Landed, Parsed, RunPlan, held, ingest_run, plan_run, since_purge
from app.services.match_candidates import merge_lookalikes
from app.services.planned_runs import PlanOverlaps, commit_plan
from app.services.ports import (
    IdentityTaken,
    MessageAlreadyProcessed,
    ProfileStore,
    Snapshot,
    StoreTransaction,
    VersionConflict,
)
from app.services.privacy import without_suppressed
from app.services.profile_changes import UNHEARD, Cause, ProfileChanges, ProfilesChanged, events_landed, uncancelled
from app.services.profile_reads import get_profiles
from app.services.profile_writes import SYSTEM_ACTOR, with_retries, write_to_resolved_profile

log = logging.getLogger("cdp.ingestion")
T = TypeVar("T")
INLINE_EVENTS = 20  # events validated on the caller's thread; a larger batch goes to a worker thread
PLANNED_EVENTS = 20  # a batch of more valid events computes its first run before the write lock (_planned)
# How long a batch's transaction goes on taking events that go alone (merges: each replays the
# survivor's whole history) before it commits and the next one takes the rest. One transaction for a
# request of 100 merges into a profile of 5,000 events held every writer of every key for 47 s.
WRITER_HOLD_SECONDS = 0.25


class EventStatus(StrEnum):
    ACCEPTED = "ACCEPTED"
    DUPLICATE = "DUPLICATE"
    REJECTED = "REJECTED"


@dataclass(frozen=True, slots=True)
class EventOutcome:
    message_id: str
    status: EventStatus
    profile_id: str | None = None
    reason: str | None = None
    field: str | None = None
    merged: tuple[str, ...] = ()  # the profiles the event merged into `profile_id` (its identifiers linked them)
    created: bool = False  # the event made the profile (every segment may take it in, not only those of its paths)


@dataclass(frozen=True, slots=True)
class IngestionPolicy:
    max_batch_size: int = 1000
    idempotency_ttl: timedelta = timedelta(days=30)
    identity: IdentityPolicy = field(default_factory=IdentityPolicy)
    limits: EventLimits = field(default_factory=EventLimits)
    changes: ProfileChanges = UNHEARD  # told, once a batch is durable, which profiles it changed
    # The purposes a consent_update may name (CDP_CONSENT_PURPOSES, as setConsent); None: any well-formed one.
    consent_purposes: tuple[str, ...] | None = None
    # A shorter TTL some keys were written with, and until when keys it purged may be missed by the
    # TTL now (app/services/idempotency_ttl.py); None: the store was always run with this one or longer.
    purged_sooner: tuple[timedelta, datetime] | None = None
    # Whom the events are ingested for (the key's name): recorded on the merges they make.
    actor: str = SYSTEM_ACTOR


async def ingest_events(
    store: ProfileStore,
    raw_events: Sequence[RawEvent],
    policy: IngestionPolicy = IngestionPolicy(),
    *,
    answer_once_committed: bool = False,
    place_duplicates: bool = True,
) -> list[EventOutcome]:
    """The outcome of each event, once the batch is durable. `answer_once_committed`: a caller
    cancelled after the commit (a request, when the server stops past its grace period) gets the
    outcomes all the same, its cancellation taken back; any other caller (a load, the demo seed, a
    command's Ctrl-C) is cancelled as asked. What follows the commit goes on either way.
    `place_duplicates`: answer each DUPLICATE's profile (a read; a load run again does not need it)."""
    if len(raw_events) > policy.max_batch_size:
        raise LimitExceeded(
            f"a batch holds at most {policy.max_batch_size} events, got {len(raw_events)}", field="events"
        )
    at = clock.now()
    # Validation is CPU work (a millisecond an event at worst): a worker thread does it for a batch; a
    # few events are validated at once, sooner than a busy loop would get back to them after a hop.
    judged = await off_loop(len(raw_events) > INLINE_EVENTS, _parse_all, raw_events, at, policy)
    outcomes: list[EventOutcome | None] = [j if isinstance(j, EventOutcome) else None for j in judged]
    parsed = [j for j in judged if isinstance(j, Parsed)]
    # A batch's first run computed before it waits for the writer (see _planned).
    plan = await _planned(store, parsed, at, policy) if len(parsed) > PLANNED_EVENTS else None
    position = 0
    while position < len(parsed):  # one transaction, unless events that go alone take too long

        async def rest(start: int = position, plan: Snapshot[RunPlan] | None = plan) -> int:
            return await _ingest_parsed(store, parsed, start, raw_events, outcomes, at, policy, plan)

        position, plan = await store.run_batch(rest), None
    done = [o for o in outcomes if o is not None]
    assert len(done) == len(raw_events)
    # The batch is durable, so its outcomes are a request's answer: a server stopping past its grace
    # period cancelled it, and it was answered 500 for a batch that was stored. What follows the commit
    # goes on (uncancelled; the shutdown waits for it before closing the store), then the duplicates'
    # profiles are read, a cancellation during either step taken back for such a caller.
    await _taken_back(uncancelled(_after_commit(store, raw_events, done, policy)), None, answer_once_committed)
    unplaced = [o.message_id for o in done if o.status is EventStatus.DUPLICATE and o.profile_id is None]
    if not place_duplicates or not unplaced:
        return done
    return await _taken_back(uncancelled(_duplicates_placed(store, done, unplaced)), done, answer_once_committed)


async def _taken_back(work: Awaitable[T], fallback: T, answer_once_committed: bool) -> T:
    """`work`'s result; `fallback` when the caller is cancelled meanwhile and answers all the same."""
    try:
        return await work
    except asyncio.CancelledError:
        if not answer_once_committed or (task := asyncio.current_task()) is None:
            raise
        task.uncancel()
        return fallback


async def _duplicates_placed(
    store: ProfileStore, done: list[EventOutcome], duplicates: list[str]
) -> list[EventOutcome]:
    """Each DUPLICATE with the profile its first delivery landed on, as it is now (its survivor once
    merged): a client sending a batch again after a timeout learns the profile ids it did not get.
    One read of `duplicates` (those yet without a profile), asked only for a batch with some; none
    for an event found in a profile's history after its key was purged (no key says where: its
    profileId stays null)."""
    try:
        recorded = await store.message_profiles(duplicates)
        now = await get_profiles(store, set(recorded.values()))
    except Exception:  # the batch is durable: its answer never fails on this read (a store closing, …)
        log.warning(
            "the profiles of %d duplicate events could not be read: answered without", len(duplicates), exc_info=True
        )
        return done
    placed = {m: found.id for m, p in recorded.items() if (found := now.get(p)) is not None}
    return [replace(o, profile_id=placed.get(o.message_id)) if o.status is EventStatus.DUPLICATE else o for o in done]


async def _after_commit(
    store: ProfileStore, raw_events: Sequence[RawEvent], done: Sequence[EventOutcome], policy: IngestionPolicy
) -> None:
    """What follows the durable batch, to its end whatever becomes of the request."""
    # What the batch changed, gone through on a worker thread for a batch, as its validation was.
    changes = await off_loop(len(raw_events) > INLINE_EVENTS, _landed, raw_events, done)
    # An automatic fuzzy merge is a merge like any other, undoable.
    await merge_lookalikes(store, [o.profile_id for o in done if o.profile_id], policy.identity, changes=policy.changes)
    await policy.changes.publish(*changes)  # listeners' failures are logged, never raised here


def _landed(raw_events: Sequence[RawEvent], done: Sequence[EventOutcome]) -> list[ProfilesChanged]:
    """The batch's changes for the listeners: each profile with the types of the events that landed on it."""
    landed: dict[str, set[str]] = {}
    merged: list[str] = []
    created: list[str] = []
    for raw, outcome in zip(raw_events, done, strict=True):
        if outcome.status is EventStatus.ACCEPTED and outcome.profile_id:
            landed.setdefault(outcome.profile_id, set()).add(raw.type)
            merged += outcome.merged
            if outcome.created:
                created.append(outcome.profile_id)
    return [*events_landed(landed, created), ProfilesChanged.of(Cause.MERGE, merged)]  # merged away: they leave theirs


async def ingest_each_alone(
    store: ProfileStore, raw_events: Sequence[RawEvent], policy: IngestionPolicy = IngestionPolicy()
) -> list[EventOutcome]:
    """Every event on the per-event path, its own unit of work: what the batch path must equal (the
    property test in tests/property/test_batch_ingestion.py holds it to that). Stores only."""
    at = clock.now()
    outcomes: list[EventOutcome] = []
    async with store.batch():
        for item in _parse_all(raw_events, at, policy):
            if isinstance(item, EventOutcome):
                outcomes.append(item)
            else:
                outcomes.append(await _one_by_one(store, item, raw_events, at, policy))
    return outcomes


def _parse_all(raw_events: Sequence[RawEvent], at: datetime, policy: IngestionPolicy) -> list[EventOutcome | Parsed]:
    """Each event judged alone: its own REJECTED when it is invalid, or ready to be stored."""
    judged: list[EventOutcome | Parsed] = []
    for index, raw in enumerate(raw_events):
        try:
            event = parse_event(raw, now=at, limits=policy.limits)
            _refuse_unknown_purpose(event, policy.consent_purposes)
            judged.append(Parsed(index, event, policy.identity.usable(event.identifiers)))
        except InvalidInput as exc:
            judged.append(_rejected(shown(raw.message_id), index, exc.field, exc.message))
        except Exception:  # a value the checks missed, or a bug of ours: this event alone is refused
            judged.append(_could_not_store(raw, index))
    return judged


def _refuse_unknown_purpose(event: Event, purposes: tuple[str, ...] | None) -> None:
    """A consent_update does what setConsent does (README), for the purposes it accepts: one for a
    purpose nobody configured was stored, and no segment or destination reads it. A withdrawal of a
    purpose taken out of the settings is refused too (the event cannot tell whether the profile holds
    it), saying how it is made."""
    if purposes is None or event.type is not EventType.CONSENT_UPDATE:
        return
    try:
        check_purpose(event.properties["purpose"], purposes, field="properties.purpose")
    except InvalidInput as exc:
        if event.properties["granted"]:
            raise
        raise InvalidInput(
            f"{exc.message}; a purpose taken out of CDP_CONSENT_PURPOSES is withdrawn with setConsent", field=exc.field
        ) from None


async def _ingest_parsed(
    store: ProfileStore,
    parsed: Sequence[Parsed],
    position: int,
    raw_events: Sequence[RawEvent],
    outcomes: list[EventOutcome | None],
    at: datetime,
    policy: IngestionPolicy,
    plan: Snapshot[RunPlan] | None = None,
) -> int:
    """The events from `position` on, in the caller's transaction, up to where it should commit (the
    position returned). Runs of events go through the batch-native path (app/services/ingestion_batch.py);
    an event that links profiles goes alone through the per-event path, and the next run starts after
    it, unless the transaction has held the writer for WRITER_HOLD_SECONDS by then. `plan`: the first
    run, computed on a snapshot, written if what it read still holds (else computed again here)."""
    expires_at = at + policy.idempotency_ttl
    began = time.monotonic()
    while position < len(parsed):
        rest = parsed[position:]

        async def run(tx: StoreTransaction, rest: Sequence[Parsed] = rest) -> list[Landed]:
            return await ingest_run(
                tx,
                rest,
                protection=policy.identity.protection,
                at=at,
                expires_at=expires_at,
                replays_before=_replays_before(at, policy),
            )

        try:
            landed: list[Landed] = []  # a crowded event goes per event, below: a run would stop at it at
            if not rest[0].crowded:  # once, its reads ahead for nothing
                planned = await _as_planned(store, plan, at, policy) if plan is not None else None
                landed = planned if planned is not None else await with_retries(store, run)
            plan = None
        except DomainError:  # the store unavailable, a write that kept conflicting: not the events' fault
            raise
        except Exception:
            # Something in the run failed that the checks missed: it rolled back whole, and its events
            # go one by one, so that the faulty one is refused alone, with its traceback logged.
            log.exception("a run of %d events failed as a whole: ingesting them one by one", len(rest))
            for item in rest:
                outcomes[item.index] = await _one_by_one(store, item, raw_events, at, policy)
            return len(parsed)
        events = {item.index: item.event for item in rest[: len(landed)]}
        for decided in landed:
            outcomes[decided.index] = _outcome(events[decided.index], decided)
        position += len(landed)
        if position < len(parsed):
            item = parsed[position]
            outcomes[item.index] = await _one_by_one(store, item, raw_events, at, policy)
            position += 1
            if time.monotonic() - began >= WRITER_HOLD_SECONDS:
                return position  # committed now: other writers take their turn before the rest
    return position


async def _planned(
    store: ProfileStore, parsed: Sequence[Parsed], at: datetime, policy: IngestionPolicy
) -> Snapshot[RunPlan] | None:
    """The batch's first run, applied in memory on a snapshot of the store before the batch waits for
    the write lock, which it then holds only to check what it read and to write: the embedded
    store's worker processes then compute their batches side by side (app/store/sqlite/snapshots.py,
    app/services/planned_runs.py). None where the store offers no snapshot now, or when computing it
    failed (a store closing, …): then under the lock, which meets the same failure and says what it is."""

    async def plan(tx: StoreTransaction) -> RunPlan:
        return await plan_run(
            tx, parsed, protection=policy.identity.protection, at=at, replays_before=_replays_before(at, policy)
        )

    try:
        return await store.read_snapshot(plan)
    except Exception:
        log.debug("a batch's run could not be computed before the write lock: computed under it", exc_info=True)
        return None


async def _as_planned(
    store: ProfileStore, plan: Snapshot[RunPlan], at: datetime, policy: IngestionPolicy
) -> list[Landed] | None:
    """The planned run written (commit_plan), in the caller's transaction; None when it could not be
    (what some of its events read moved under others of them): the caller then runs it under the lock."""

    async def write(tx: StoreTransaction) -> list[Landed]:
        return await commit_plan(
            tx,
            plan,
            protection=policy.identity.protection,
            at=at,
            expires_at=at + policy.idempotency_ttl,
            replays_before=_replays_before(at, policy),
        )

    try:
        return await store.run_in_transaction(write)
    except (PlanOverlaps, VersionConflict, IdentityTaken):  # write_run reports a known messageId as a conflict
        return None  # the unit rolled back whole


def _outcome(event: Event, decided: Landed) -> EventOutcome:
    if decided.duplicate:
        return EventOutcome(event.message_id, EventStatus.DUPLICATE, reason="messageId already processed")
    if decided.refused is not None:
        return _rejected(event.message_id, decided.index, decided.field, decided.refused)
    return EventOutcome(event.message_id, EventStatus.ACCEPTED, profile_id=decided.profile_id, created=decided.created)


async def _one_by_one(
    store: ProfileStore,
    item: Parsed,
    raw_events: Sequence[RawEvent],
    at: datetime,
    policy: IngestionPolicy,
) -> EventOutcome:
    """The per-event path, for an event whatever is wrong with which is its own REJECTED."""
    try:
        return await _ingest_one(store, item, at, policy)
    except DomainError:  # the store unavailable, a write that kept conflicting: not this event's fault
        raise
    except Exception:
        # A value the checks above missed, or a bug of ours: its unit of work rolled back whole, so
        # the event is refused alone; the traceback is logged under an id the client is given.
        return _could_not_store(raw_events[item.index], item.index)


def _replays_before(at: datetime, policy: IngestionPolicy) -> datetime:
    """Events dated before this may be replays whose idempotency key was purged: a key lives
    `idempotency_ttl` from its event's receipt (or a shorter TTL it was written with), and an event may
    be dated up to MAX_FUTURE_SKEW after it was received."""
    ttl = policy.idempotency_ttl
    if policy.purged_sooner is not None and at < policy.purged_sooner[1]:
        ttl = min(ttl, policy.purged_sooner[0])
    return at - ttl + MAX_FUTURE_SKEW


async def _replayed(tx: StoreTransaction, item: Parsed, at: datetime, policy: IngestionPolicy) -> bool:
    """An event older than the idempotency window whose profile's history holds it already: its key
    was purged, and it is a replay (ingestion_batch.held, as a run asks it)."""
    before = await since_purge(tx, _replays_before(at, policy), at)
    if before is None or item.event.timestamp >= before:
        return False
    return bool(await held(tx, [item], await tx.owners_of([i.key for i in item.usable]), set(), before))


def _could_not_store(raw: RawEvent, index: int) -> EventOutcome:
    error_id = uuid.uuid4().hex[:12]
    log.exception(
        "event %d (messageId %r) could not be stored: error id %s",
        index,
        mask_text(shown(raw.message_id)),  # as a key without read:pii reads it: logs are kept past an erasure
        error_id,
        extra={"errorId": error_id},
    )
    return _rejected(shown(raw.message_id), index, None, f"could not be stored (error id {error_id})")


def _rejected(message_id: str, index: int, field: str | None, message: str) -> EventOutcome:
    """REJECTED naming the event's field by its place in the batch, whether validation refused it or
    its write did (the traits bound, an erased person's identifiers)."""
    path = f"events[{index}].{field}" if field else f"events[{index}]"
    return EventOutcome(message_id, EventStatus.REJECTED, reason=f"{path}: {message}", field=path)


async def _ingest_one(store: ProfileStore, item: Parsed, at: datetime, policy: IngestionPolicy) -> EventOutcome:
    event, identifiers = item.event, item.usable

    async def work(tx: StoreTransaction) -> tuple[str, tuple[str, ...], bool]:
        # A cheap read first: a replay then writes nothing (and aborts no MongoDB transaction).
        if await tx.message_seen(event.message_id) or await _replayed(tx, item, at, policy):
            raise MessageAlreadyProcessed(event.message_id)
        await item.linking.refuse_unless_own(tx, policy.identity.protection)
        kept = await without_suppressed(tx, identifiers)
        # An erased person's identifiers among another's: kept by neither (privacy.kept_despite_erasure).
        arrived = landed_as(event, {i.key for i in identifiers} - {i.key for i in kept})
        landed, made = [arrived], [False]

        def build(profile: Profile, additions: list[Identifier]) -> ProfileChange:
            made[0] = profile.version == 0  # a new profile, this event's: never stored yet
            if (refusal := event_traits_refusal(profile, arrived)) is not None:
                raise refusal  # the unit rolls back: nothing of this event is written
            # Identifiers the profile does not hold now (merged in, or claimed by this event) are
            # another profile's, which protection kept apart from it: the event does not keep them.
            own = profile.identifier_keys() | {i.key for i in additions}
            landed[0] = landed_as(arrived, {i.key for i in kept} - own)
            return change_for_event(profile, landed[0], additions, at=at)

        profile, merged = await write_to_resolved_profile(
            tx,
            kept,
            build,
            at=at,
            policy=policy.identity,
            message_id=event.message_id,
            actor=policy.actor,
            written=False,  # only its id is answered
            person=stated_by(event),
        )
        await tx.record_message(event.message_id, profile.id, at + policy.idempotency_ttl)
        await tx.append_interaction(profile.id, interaction_document(landed[0], origin=profile.id, received_at=at))
        if (decision := consent_decision(event, profile.id, received_at=at)) is not None:
            await tx.append_consent(decision)
        return profile.id, merged, made[0]

    try:
        profile_id, merged, created = await with_retries(store, work)
    except MessageAlreadyProcessed:
        return EventOutcome(event.message_id, EventStatus.DUPLICATE, reason="messageId already processed")
    except InvalidInput as exc:  # an erased person's identifiers, the traits bound: nothing written
        return _rejected(event.message_id, item.index, exc.field, exc.message)
    return EventOutcome(event.message_id, EventStatus.ACCEPTED, profile_id=profile_id, merged=merged, created=created)
