"""A run of events ingested as one unit of work: the batch-native path of ingestion.

One transaction reads what the run needs in a few queries (processed message ids, suppressed
identifiers, identifier owners, the profiles they point at), applies every event in memory in
arrival order, exactly as one-at-a-time ingestion would, and writes each profile once, with the
identities, idempotency keys and interactions in bulk. The run stops before the first event that
needs more than that (its identifiers link two profiles: a merge, or merge protection's refusal;
new identifiers past a profile's limits; an identifier pointing at a profile that is gone): the
caller ingests that one alone on the per-event path, then starts a new run after it, which reads
the state that event left.

The unit of work has no effect outside its transaction, so a lost race re-runs it from its reads.
A run is computed (plan_run) then written (write_run): under the lock in one go (ingest_run), or
computed on a snapshot before it and written if what it read holds (app/services/planned_runs.py).
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from app.domain.event_effects import (
    change_for_event,
    consent_decision,
    event_traits_refusal,
    interaction_document,
    landed_as,
    reads_recent,
    stated_by,
)
from app.domain.events import Event, EventType
from app.domain.identifiers import Identifier
from app.domain.identity_resolution import resolve
from app.domain.matching.fields import MatchFields, match_fields
from app.domain.matching.index import stored_keys, touches_match_fields
from app.domain.matching.scoring import another_person, siblings_names
from app.domain.merge_protection import MergeProtection
from app.domain.privacy import ConsentDecision, kept_despite_erasure
from app.domain.profile import Profile, new_profile
from app.domain.profile_change import apply_change
from app.domain.stored_behaviour import StoredBehaviour
from app.services.identity_policy import Linking
from app.services.ports import MessageAlreadyProcessed, ProfileWrite, StoreTransaction, VersionConflict
from app.services.privacy import SUPPRESSED_REASON, suppressed_keys
from app.services.profile_writes import new_profile_id

# The in-memory apply gives the event loop a turn this often: a store whose I/O is asynchronous
# (MongoDB) runs this code on the loop, and no step may hold it for long.
YIELD_EVERY = 25
FIRST_READ = 32  # events read ahead first; each further read ahead covers twice as many


@dataclass(frozen=True, slots=True)
class Parsed:
    """An event that passed validation, with the identifiers that may link profiles."""

    index: int
    event: Event
    linking: Linking

    @property
    def usable(self) -> list[Identifier]:
        return self.linking.identifiers

    @property
    def crowded(self) -> bool:
        """More of a type than a profile holds: the per-event path decides (Linking.refuse_unless_own)."""
        return self.linking.crowded is not None


@dataclass(frozen=True, slots=True)
class Landed:
    """What the run decided for one event: ACCEPTED on `profile_id`, or a duplicate, or refused."""

    index: int
    profile_id: str | None = None
    duplicate: bool = False
    refused: str | None = None
    field: str = "identifiers"  # what a refusal names
    created: bool = False  # the event made the profile
    decided_on: str | None = None  # the profile the decision read or wrote (planned_runs.py checks it)


@dataclass(slots=True)
class Working:
    """A profile as the run has changed it so far: the document, in the store's own form, is
    current; what changes are computed from (Profile.for_change) is built from it only when an event
    of the run needs to read it: most events read only their behaviour's times (StoredBehaviour)."""

    document: dict[str, Any]
    version: int | None  # as read (None: created by this run)
    profile: Profile | None
    keys_moved: bool = False
    addresses_moved: bool = False
    pushed_out: list[tuple[str, Any]] = field(default_factory=list)  # (path, item) left out of capped lists

    def current(self) -> Profile:
        if self.profile is None:
            self.profile = Profile.for_change(self.document)
        return self.profile

    def basis(self, event: Event, *, whole: bool) -> Profile | StoredBehaviour:
        """What the next event's change is computed from: the profile when it needs more than its
        behaviour's times (`whole`) or is built already, else those times read off the document. A
        late visit reads the recent list, which the profile for a change is built without: then the
        whole document (rare: a late event that also brings identifiers or identifies)."""
        if not whole and self.profile is None:
            return StoredBehaviour.of(self.document)
        profile = self.current()  # its last visit read from the profile built anyway, not the document again
        return Profile.from_document(self.document) if reads_recent(event, profile.stats.last_visit_at) else profile


@dataclass(slots=True)
class Writes:
    form: Callable[[Any], Any]  # the store's document form (StoreTransaction.document_form)
    claims: list[tuple[Identifier, str]] = field(default_factory=list)
    messages: list[tuple[str, str]] = field(default_factory=list)
    interactions: list[tuple[str, dict[str, Any]]] = field(default_factory=list)
    consents: list[ConsentDecision] = field(default_factory=list)

    def without(self, profile_ids: set[str]) -> Writes:
        """These writes but those of `profile_ids`."""
        return Writes(
            self.form,
            [(identifier, owner) for identifier, owner in self.claims if owner not in profile_ids],
            [(message_id, owner) for message_id, owner in self.messages if owner not in profile_ids],
            [(owner, interaction) for owner, interaction in self.interactions if owner not in profile_ids],
            [decision for decision in self.consents if decision.profile_id not in profile_ids],
        )


async def ingest_run(
    tx: StoreTransaction,
    items: Sequence[Parsed],
    *,
    protection: MergeProtection,
    at: datetime,
    expires_at: datetime,
    replays_before: datetime | None = None,
) -> list[Landed]:
    """Ingest a prefix of `items` (all of them unless one needs the per-event path, which is then
    the first one not returned); nothing is written for the events not returned."""
    plan = await plan_run(tx, items, protection=protection, at=at, replays_before=replays_before)
    await write_run(tx, plan.profiles, plan.unchanged, plan.writes, at=at, expires_at=expires_at)
    return plan.landed


@dataclass(slots=True)
class RunPlan:
    """A run's events applied in memory (plan_run): what each decided, what the run read, and what
    it will write (write_run; planned_runs.py when it was computed on a snapshot)."""

    items: Sequence[Parsed]  # the run's events: those decided are items[: len(landed)]
    landed: list[Landed]
    read: RunReads
    writes: Writes
    profiles: list[ProfileWrite]  # each profile the run changed, finished and encoded (_finished)
    unchanged: list[str]  # the profiles it read and left as they were


async def plan_run(
    tx: StoreTransaction,
    items: Sequence[Parsed],
    *,
    protection: MergeProtection,
    at: datetime,
    replays_before: datetime | None = None,
) -> RunPlan:
    """What `ingest_run` writes, computed without writing: on the transaction that writes it, or on a
    snapshot taken before the write lock (commit_plan checks it there).

    What the events need is read ahead in windows that double (32, 64, … events): a run that stops
    early (a batch with merges stops once per merge) has read only about as much as it used, where
    reading for the whole rest every time read the demo data's profiles ~7 times over. Nothing the
    run does is written before its end, so what is read later is what would have been read first."""
    read = RunReads(replays_before=await since_purge(tx, replays_before, at))
    writes, landed = Writes(form=await tx.document_form()), []
    for count, parsed in enumerate(items, 1):
        if count > read.until:
            await read.ahead(tx, items, count - 1)
        decided = _apply(
            parsed, read.known, read.suppressed, read.owners, read.working, writes, protection=protection, at=at
        )
        if decided is None:
            break
        landed.append(decided)
        if count % YIELD_EVERY == 0:
            await asyncio.sleep(0)
    profiles, unchanged = _finished(read.working)
    return RunPlan(items, landed, read, writes, await tx.encoded(profiles), unchanged)


def _finished(working: dict[str, Working]) -> tuple[list[ProfileWrite], list[str]]:
    """Each changed profile's write, its document given its blocking keys in place (a plan is
    written once: written again, its moved keys would read as unmoved), and the ids of those read
    and never changed."""
    profiles: list[ProfileWrite] = []
    unchanged: list[str] = []
    for target in working.values():
        if target.version is not None and target.document["version"] == target.version:
            unchanged.append(target.document["_id"])
            continue
        if target.keys_moved:  # the keys of its fields as they are now (what each event's write left)
            keys = stored_keys(target.document)
            moved = keys != target.document.get("blockingKeys", [])
            target.document["blockingKeys"] = keys
        else:
            moved = False
        write = ProfileWrite(
            target.document,
            target.version,
            keys_moved=moved or target.version is None,
            addresses_moved=target.addresses_moved,
            matched_moved=target.keys_moved,  # its match fields touched (or it is new)
            pushed_out=[item for path, item in target.pushed_out if path == "recent"],
        )
        profiles.append(write)
    return profiles, unchanged


@dataclass(slots=True)
class RunReads:
    """What a run has read so far: processed messageIds, suppressed identifiers, identifier owners and
    their live profiles, for `items[:until]`; what the run applies is added to the same maps."""

    # Events older than this may be replays whose idempotency key was purged: their profiles' histories
    # are asked whether they hold them (None: nothing asked).
    replays_before: datetime | None = None
    until: int = 0
    window: int = FIRST_READ
    known: set[str] = field(default_factory=set)
    suppressed: set[str] = field(default_factory=set)
    owners: dict[str, str] = field(default_factory=dict)
    working: dict[str, Working] = field(default_factory=dict)
    looked_up: set[str] = field(default_factory=set)  # identifier keys asked about (owned or not)
    # As read, before the run's own events added to `known`, `suppressed` and `owners`.
    known_read: set[str] = field(default_factory=set)
    suppressed_read: set[str] = field(default_factory=set)
    owners_read: dict[str, str] = field(default_factory=dict)

    async def ahead(self, tx: StoreTransaction, items: Sequence[Parsed], start: int) -> None:
        chunk = items[start : start + self.window]
        self.until, self.window = start + len(chunk), self.window * 2
        known = await tx.known_messages({p.event.message_id for p in chunk} - self.known)
        keys = [k for k in dict.fromkeys(i.key for p in chunk for i in p.usable) if k not in self.looked_up]
        self.looked_up.update(keys)
        suppressed = await suppressed_keys(tx, keys)
        found = await tx.owners_of(keys)  # none claimed by this run: its claims are of keys it looked up
        self.owners.update(found)
        if self.replays_before is not None:
            known |= await held(tx, chunk, self.owners, self.known | known, self.replays_before)
        self.known |= known
        self.known_read |= known
        self.suppressed |= suppressed
        self.suppressed_read |= suppressed
        self.owners_read.update(found)
        unread = set(found.values()) - self.working.keys()
        for pid, document in (await tx.get_profile_documents(unread)).items():
            if document.get("mergedInto") is None:
                self.working[pid] = Working(document, document["version"], None)


async def since_purge(tx: StoreTransaction, replays_before: datetime | None, at: datetime) -> datetime | None:
    """`replays_before`, reckoned as if keys were purged until `at`, moved back to where the store's
    purges went: a key expiring after that is still recorded, so its replay is known as a duplicate
    without asking the history (None: the store never purged a key, and no event is asked)."""
    purged = await tx.keys_purged_through()
    if replays_before is None or purged is None:
        return None
    return replays_before - max(at - purged, timedelta(0))


async def held(
    tx: StoreTransaction, chunk: Sequence[Parsed], owners: dict[str, str], known: set[str], before: datetime
) -> set[str]:
    """The message ids of events older than the idempotency window that their profiles' histories
    hold already. Replayed after its key was purged, such an event counted in the stats again while
    the history, keyed by it, kept it once (a merge's replay of that history took it back out)."""
    asked = [
        (profile_id, parsed.event.timestamp, parsed.event.message_id)
        for parsed in chunk
        if parsed.event.timestamp < before and parsed.event.message_id not in known
        for profile_id in {owners[i.key] for i in parsed.usable if i.key in owners}
    ]
    return await tx.held_messages(asked) if asked else set()


def _apply(
    parsed: Parsed,
    known: set[str],
    suppressed: set[str],
    owners: dict[str, str],
    working: dict[str, Working],
    writes: Writes,
    *,
    protection: MergeProtection,
    at: datetime,
) -> Landed | None:
    """The event applied in memory, or None when it needs the per-event path."""
    event, identifiers = parsed.event, parsed.usable
    if parsed.crowded:
        return None  # refused unless one profile holds them all: read per event (Linking.refuse_unless_own)
    if event.message_id in known:
        return Landed(parsed.index, duplicate=True)
    kept = kept_despite_erasure(identifiers, suppressed, owners)
    if kept is None:
        return Landed(parsed.index, refused=SUPPRESSED_REASON)
    if len(kept) < len(identifiers):  # an erased person's among another's: kept by neither
        event, identifiers = landed_as(event, suppressed), kept
    resolution = resolve(identifiers, {i.key: owners[i.key] for i in identifiers if i.key in owners})
    if resolution.other_profiles:
        return None  # a merge, or a refusal to merge: the per-event path decides
    if resolution.profile_id is None:
        fresh = new_profile(new_profile_id(), at)
        target = Working(writes.form(fresh.to_document()), None, fresh)
        additions = identifiers
    else:
        found = working.get(resolution.profile_id)
        if found is None:
            return None  # an identifier pointing at a merged-away or vanished profile: rare, per event
        target = found
        held = target.current().identifier_keys() if resolution.unclaimed else set()
        additions = [i for i in resolution.unclaimed if i.key not in held]
        if additions and protection.within_limits(target.current(), additions)[1] is not None:
            return None  # more identifiers of a type than a profile holds: refused, per event
        if (
            protection.households_apart
            and (person := stated_by(event))
            and _maybe_another(person, match_fields(target.current()))
        ):
            return None  # another person's, sharing an identifier with the profile: per event
    profile = target.basis(event, whole=bool(additions) or event.type is EventType.IDENTIFY)
    refusal = event_traits_refusal(profile, event) if isinstance(profile, Profile) else None  # whole for identify
    if refusal is not None:
        field = refusal.field or "properties.traits"
        return Landed(parsed.index, refused=refusal.message, field=field, decided_on=profile.id)
    change = change_for_event(profile, event, additions, at=at)
    apply_change(target.document, change.with_values(writes.form), pushed_out=target.pushed_out)
    target.profile = None
    target.keys_moved = target.keys_moved or target.version is None or touches_match_fields(change)
    target.addresses_moved = target.addresses_moved or target.version is None or change.touches("addresses")
    working[profile.id] = target
    for identifier in additions:
        owners[identifier.key] = profile.id
        writes.claims.append((identifier, profile.id))
    known.add(event.message_id)
    writes.messages.append((event.message_id, profile.id))
    writes.interactions.append((profile.id, interaction_document(event, origin=profile.id, received_at=at)))
    if (decision := consent_decision(event, profile.id, received_at=at)) is not None:
        writes.consents.append(decision)
    return Landed(parsed.index, profile_id=profile.id, created=resolution.profile_id is None, decided_on=profile.id)


def _maybe_another(person: MatchFields, theirs: MatchFields) -> bool:
    """Whether a write may be another person's than the profile it names (`another_person`, or
    siblings' near given names, which the per-event path judges by how common each is in the store:
    `profile_writes._siblings`)."""
    return another_person(person, theirs) or siblings_names(person, theirs) is not None


async def write_run(
    tx: StoreTransaction,
    profiles: Sequence[ProfileWrite],
    unchanged: Sequence[str],
    writes: Writes,
    *,
    at: datetime,
    expires_at: datetime,
) -> None:
    """What a run's events changed, written: each profile once (as plan_run finished it), identities,
    idempotency keys, interactions and consents in bulk."""
    await tx.claim_identity_keys(writes.claims, at)
    await tx.write_profiles(profiles)
    await tx.unchanged(unchanged)
    try:
        await tx.record_messages(writes.messages, expires_at)
    except MessageAlreadyProcessed as exc:
        # Another writer recorded one of these messages since they were read: run again, and it
        # reads as the duplicate it now is.
        raise VersionConflict(exc.message_id) from exc
    await tx.append_interactions(writes.interactions)
    for decision in writes.consents:
        await tx.append_consent(decision)
