"""Event ingestion: validate each event, drop replays, resolve the customer, apply the event.

Each event is judged alone: data past the event limits is refused before anything is written, and
each event is its own unit of work (a savepoint in the embedded store, a transaction in MongoDB), so
one bad, duplicate or unstorable event never fails the batch. Only what is not the event's fault (the
store being unavailable) fails the batch. The batch is made durable as a whole before the results
are returned, so ACCEPTED means stored.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from enum import StrEnum

from app.domain import clock
from app.domain.errors import DomainError, InvalidInput, LimitExceeded
from app.domain.event_effects import change_for_event, interaction_document
from app.domain.event_limits import EventLimits, shown
from app.domain.events import Event, EventType, RawEvent, parse_event
from app.domain.identifiers import Identifier
from app.domain.privacy import ConsentDecision
from app.domain.profile import Profile
from app.domain.profile_change import ProfileChange
from app.services.identity_policy import IdentityPolicy
from app.services.match_candidates import merge_lookalikes
from app.services.ports import MessageAlreadyProcessed, ProfileStore, StoreTransaction
from app.services.privacy import refuse_suppressed, suppression_secret
from app.services.profile_changes import UNHEARD, ProfileChanges, events_landed
from app.services.profile_writes import with_retries, write_to_resolved_profile

log = logging.getLogger("cdp.ingestion")


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


@dataclass(frozen=True, slots=True)
class IngestionPolicy:
    max_batch_size: int = 1000
    idempotency_ttl: timedelta = timedelta(days=30)
    identity: IdentityPolicy = field(default_factory=IdentityPolicy)
    limits: EventLimits = field(default_factory=EventLimits)
    changes: ProfileChanges = UNHEARD  # told, once a batch is durable, which profiles it changed


async def ingest_events(
    store: ProfileStore, raw_events: Sequence[RawEvent], policy: IngestionPolicy = IngestionPolicy()
) -> list[EventOutcome]:
    if len(raw_events) > policy.max_batch_size:
        raise LimitExceeded(
            f"a batch holds at most {policy.max_batch_size} events, got {len(raw_events)}", field="events"
        )
    at = clock.now()
    outcomes: list[EventOutcome] = []
    secret = await suppression_secret(store, create=False)  # None until someone is erased
    async with store.batch():
        for index, raw in enumerate(raw_events):
            outcomes.append(await _judge(store, raw, index, at, policy, secret))
    # After the batch is durable: an automatic fuzzy merge is a merge like any other, undoable.
    await merge_lookalikes(
        store, [o.profile_id for o in outcomes if o.profile_id], policy.identity, changes=policy.changes
    )
    landed: dict[str, set[str]] = {}
    for raw, outcome in zip(raw_events, outcomes, strict=True):
        if outcome.status is EventStatus.ACCEPTED and outcome.profile_id:
            landed.setdefault(outcome.profile_id, set()).add(raw.type)
    await policy.changes.publish(*events_landed(landed))  # listeners' failures are logged, never raised here
    return outcomes


async def _judge(
    store: ProfileStore, raw: RawEvent, index: int, at: datetime, policy: IngestionPolicy, secret: str | None
) -> EventOutcome:
    """The outcome of one event; whatever is wrong with this event alone is its own REJECTED."""
    try:
        try:
            event = parse_event(raw, now=at, limits=policy.limits)
            usable = policy.identity.usable(event.identifiers)
        except InvalidInput as exc:
            return _rejected(raw.message_id, exc, index)
        return await _ingest_one(store, event, usable, at, policy, secret)
    except DomainError:  # the store unavailable, a write that kept conflicting: not this event's fault
        raise
    except Exception:
        # A value the checks above missed, or a bug of ours: its unit of work rolled back whole, so
        # the event is refused alone; the traceback is logged under an id the client is given.
        error_id = uuid.uuid4().hex[:12]
        log.exception(
            "event %d (messageId %r) could not be stored: error id %s",
            index,
            shown(raw.message_id),
            error_id,
            extra={"errorId": error_id},
        )
        field = f"events[{index}]"
        reason = f"{field}: could not be stored (error id {error_id})"
        return EventOutcome(shown(raw.message_id), EventStatus.REJECTED, reason=reason, field=field)


def _rejected(message_id: str, exc: InvalidInput, index: int) -> EventOutcome:
    field = f"events[{index}].{exc.field}" if exc.field else f"events[{index}]"
    return EventOutcome(shown(message_id), EventStatus.REJECTED, reason=f"{field}: {exc.message}", field=field)


async def _ingest_one(
    store: ProfileStore,
    event: Event,
    identifiers: list[Identifier],
    at: datetime,
    policy: IngestionPolicy,
    secret: str | None,
) -> EventOutcome:
    async def work(tx: StoreTransaction) -> str:
        # A cheap read first: a replay then writes nothing (and aborts no MongoDB transaction).
        if await tx.message_seen(event.message_id):
            raise MessageAlreadyProcessed(event.message_id)
        await refuse_suppressed(tx, secret, identifiers)

        def build(profile: Profile, additions: list[Identifier]) -> ProfileChange:
            return change_for_event(profile, event, additions, at=at)

        profile, _ = await write_to_resolved_profile(
            tx, identifiers, build, at=at, policy=policy.identity, message_id=event.message_id
        )
        await tx.record_message(event.message_id, profile.id, at + policy.idempotency_ttl)
        await tx.append_interaction(profile.id, interaction_document(event, origin=profile.id, received_at=at))
        if event.type is EventType.CONSENT_UPDATE:
            props = event.properties
            await tx.append_consent(
                ConsentDecision(
                    profile_id=profile.id,
                    purpose=props["purpose"],
                    granted=props["granted"],
                    source=str(event.channel),
                    at=event.timestamp,
                    message_id=event.message_id,
                )
            )
        return profile.id

    try:
        profile_id = await with_retries(store, work)
    except MessageAlreadyProcessed:
        return EventOutcome(event.message_id, EventStatus.DUPLICATE, reason="messageId already processed")
    except InvalidInput as exc:  # an erased person's identifiers: dropped, nothing written
        return EventOutcome(event.message_id, EventStatus.REJECTED, reason=exc.message, field=exc.field)
    return EventOutcome(event.message_id, EventStatus.ACCEPTED, profile_id=profile_id)
