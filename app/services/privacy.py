"""Privacy rights: consent decisions, the export of everything held about a person, and erasure
that also keeps the person from coming back through late or replayed events."""

from __future__ import annotations

import asyncio
import logging
import uuid
from collections.abc import Collection, Sequence
from typing import Any

from pydantic import BaseModel

from app.domain import clock
from app.domain.clock import to_iso
from app.domain.errors import InvalidInput, NotFound, StoreUnavailable
from app.domain.identifiers import Identifier, former_keys
from app.domain.merge import MergeRecord, MergeRefusal, MergeStatus, held_only_by, merges_into
from app.domain.privacy import (
    ConsentDecision,
    Erasure,
    check_purpose,
    check_source,
    kept_despite_erasure,
    new_suppression_secret,
    record_consent,
    suppression_hash,
)
from app.domain.profile import Interaction, Profile
from app.domain.profile_change import ProfileChange
from app.domain.profile_query import InteractionFilter, InteractionPosition
from app.domain.segments.segment import SegmentEvent, erasure_exits, event_time
from app.domain.traits.computed import PROFILED_FIELDS
from app.off_loop import off_loop
from app.services import match_model
from app.services.ports import ProfileStore, StoreTransaction
from app.services.profile_changes import UNHEARD, Cause, ProfileChanges, ProfilesChanged
from app.services.profile_reads import get_profile, read_again
from app.services.profile_writes import live_profile, with_retries

log = logging.getLogger("cdp.privacy")
ERASURE_PREFIX = "era_"  # an erasure's id, which stands for the erased profile in the trails others keep

SUPPRESSION_SECRET = "suppressionSecret"
SUPPRESSED_REASON = "these identifiers belong to a person whose data was erased: nothing is recorded for them"
ERASED_REASON = "withheld: it was written about a person erased since"
EXPORT_PAGE = 1000
EXPORT_INLINE_ITEMS = 200  # interactions and segment changes an export's document is built with on the loop
# A person's membership changes, all read at once (a segment entered and left daily for years, in
# dozens of segments, is tens of thousands): the export cut them at EXPORT_PAGE, the newest only.
EXPORT_SEGMENT_EVENTS = 1_000_000


# -- consent ----------------------------------------------------------------------------------
async def set_consent(
    store: ProfileStore,
    profile_id: str,
    purpose: str,
    granted: bool,
    source: str,
    *,
    purposes: tuple[str, ...],
    changes: ProfileChanges = UNHEARD,
) -> Profile:
    """Record a consent decision (the current state per purpose, and the decision in the history).
    A purpose no longer configured can still be withdrawn where the profile holds it: taken out of
    CDP_CONSENT_PURPOSES, a grant given before stayed on the profile, and the person could not take
    it back."""
    if granted:
        check_purpose(purpose, purposes)
    check_source(source)
    at = clock.now()

    async def work(tx: StoreTransaction) -> Profile:
        profile = await live_profile(tx, profile_id)
        if profile is None:
            raise NotFound(f"no profile {profile_id}", field="profileId")
        if not granted and purpose not in profile.consents:
            check_purpose(purpose, purposes)
        # The newest decision wins, in a merge's replay as here: one recorded from an event dated a
        # little ahead (clocks may run up to MAX_FUTURE_SKEW fast) would have won back over this one,
        # made now, at the person's next merge. This one is the newest, so it is dated after it.
        current = profile.consents.get(purpose)
        decided = clock.dated_after(at, current.at if current is not None else None)
        change = ProfileChange()
        record_consent(change, purpose, granted=granted, source=source, at=decided)
        await tx.update_profile(profile.id, change.stamped(at), expected_version=profile.version)
        await tx.append_consent(
            ConsentDecision(
                profile_id=profile.id,
                purpose=purpose,
                granted=granted,
                source=source,
                at=decided,
                decision_id=uuid.uuid4().hex,
                named_id=profile_id if profile_id != profile.id else None,
            )
        )
        found = await tx.get_profile(profile.id)
        assert found is not None
        return found

    async with store.batch():
        profile = await with_retries(store, work)
    await changes.publish(ProfilesChanged.of(Cause.CONSENT, [profile.id], paths=["consents", *PROFILED_FIELDS]))
    return (await read_again(store, [profile]))[0]


async def consent_history(store: ProfileStore, profile: Profile) -> list[ConsentDecision]:
    """The profile's decisions and those of the profiles merged into it, newest first."""
    return await store.consent_history(await merged_family(store, profile.id))


async def merged_family(store: ProfileStore, profile_id: str) -> list[str]:
    """The profile and every profile merged into it, directly or through earlier merges."""
    family, queue, known = [profile_id], [profile_id], {profile_id}
    while queue:  # however many: a customer signing in from a thousand browsing sessions merged as many
        current = queue.pop()
        for record in await store.merges_of(current):
            if record.status is MergeStatus.MERGED and record.survivor_id == current:
                fresh = [i for i in record.merged_ids if i not in known]
                known.update(fresh)
                family += fresh
                queue += fresh
    return family


async def consent_histories(
    store: ProfileStore, profile_ids: Collection[str], *, last: int | None = None
) -> dict[str, list[ConsentDecision]]:
    """`consent_history` for many profiles: their families found together, then one read of the
    decisions of them all, shared out (each family's decisions stay newest first); with `last`, the
    newest `last` of each family, read as at most that many of each of its profiles."""
    families = await merged_families(store, profile_ids)
    members = list(dict.fromkeys(i for family in families.values() for i in family))
    decisions = await store.consent_history(members, limit=last)
    positions: dict[str, list[int]] = {}
    for position, decision in enumerate(decisions):
        positions.setdefault(decision.profile_id, []).append(position)
    return {
        profile_id: [decisions[n] for n in sorted(n for member in family for n in positions.get(member, ()))][:last]
        for profile_id, family in families.items()
    }


async def merged_families(store: ProfileStore, profile_ids: Collection[str]) -> dict[str, list[str]]:
    """`merged_family` for each of `profile_ids`, walked in step: each round takes the next profile of
    every walk still going and reads their merges together, so the walks cost as many store reads as
    the longest of them, and each visits what `merged_family` visits, in the same order."""
    walks = {profile_id: ([profile_id], [profile_id], {profile_id}) for profile_id in profile_ids}
    going = [profile_id for profile_id in walks]
    while going:
        current = {profile_id: walks[profile_id][1].pop() for profile_id in going}
        merges = await store.merges_of_profiles(set(current.values()))
        for profile_id, visited in current.items():
            family, queue, known = walks[profile_id]
            for record in merges.get(visited, []):
                if record.status is MergeStatus.MERGED and record.survivor_id == visited:
                    fresh = [i for i in record.merged_ids if i not in known]
                    known.update(fresh)
                    family += fresh
                    queue += fresh
        going = [p for p in going if walks[p][1]]
    return {profile_id: family for profile_id, (family, _, _) in walks.items()}


# -- export -----------------------------------------------------------------------------------
async def export_profile(store: ProfileStore, profile_id: str) -> dict[str, Any]:
    """Everything held about the person, as one JSON document (right of access, portability)."""
    profile = await get_profile(store, profile_id)
    if profile is None:
        raise NotFound(f"no profile {profile_id}", field="id")
    interactions: list[Interaction] = []
    before: InteractionPosition | None = None
    while page := await store.list_interactions(
        profile.id, before=before, where=InteractionFilter(), limit=EXPORT_PAGE
    ):
        interactions += page
        before = InteractionPosition(page[-1].timestamp, page[-1].message_id)
        if len(page) < EXPORT_PAGE:
            break
    family = await merged_family(store, profile.id)
    merges = {m.id: m for member in family for m in await store.merges_of(member)}
    refusals = {r.id: r for member in family for r in await store.refusals_of(member)}
    consents = await store.consent_history(family)
    segment_events = [
        e for member in family for e in await store.segment_events(profile_id=member, limit=EXPORT_SEGMENT_EVENTS)
    ]
    # A person with 20,000 events: ~0.2 s of building the document's JSON at a stretch, on a worker
    # thread rather than the loop.
    large = len(interactions) + len(segment_events) > EXPORT_INLINE_ITEMS
    return await off_loop(
        large,
        _export_document,
        profile,
        family,
        interactions,
        consents,
        list(merges.values()),
        list(refusals.values()),
        segment_events,
    )


def _export_document(
    profile: Profile,
    family: list[str],
    interactions: list[Interaction],
    consents: list[ConsentDecision],
    merges: list[MergeRecord],
    refusals: list[MergeRefusal],
    segment_events: list[SegmentEvent],
) -> dict[str, Any]:
    # A merge record saved the documents of everyone it joined: the export shows only those of the
    # person (the profile and those still merged into it), and the rest of an undone merge's record.
    into, members = merges_into(merges), set(family)
    # The recent list is a copy of the newest history (which follows in full); blocking keys are index data.
    document = _json(profile, exclude={"recent", "blocking_keys"})
    return {
        "exportedAt": to_iso(clock.now()),
        "profile": document,
        "mergedProfileIds": family[1:],
        "interactions": [_json(i) for i in interactions],
        "consentHistory": [_json(d) for d in consents],
        "merges": [_json(held_only_by(m, members.__contains__, into)) for m in merges],
        "mergeRefusals": [_json(r) for r in refusals],
        "segmentHistory": [_json(e) for e in segment_events],
    }


def _json(model: BaseModel, *, exclude: set[str] | None = None) -> dict[str, Any]:
    return model.model_dump(mode="json", by_alias=True, exclude_none=True, exclude=exclude)


# -- erasure ----------------------------------------------------------------------------------
async def suppression_secret(store: ProfileStore) -> str:
    """The key erased people's identifiers are hashed with, made by the store's first erasure and
    never replaced: two first erasures at once agree on one (each hashing with its own, one of them
    was lost, and that person's events were taken again)."""
    secret = await store.read_meta(SUPPRESSION_SECRET)
    return secret if secret is not None else await store.setdefault_meta(SUPPRESSION_SECRET, new_suppression_secret())


async def suppressed_keys(tx: StoreTransaction, keys: Sequence[str]) -> set[str]:
    """Those of the identifier `keys` that belong to an erased person. The key they are hashed with is
    read in the writing transaction: read before it, an erasure made in between (the store's first,
    which makes the key) let the person's waiting events bring them back. A key counts as suppressed
    also under the forms older versions stored it in (identifiers.former_keys): a person erased before
    a phone's extension was kept came back with their number sent with it."""
    if not keys:
        return set()
    secret = await tx.read_meta(SUPPRESSION_SECRET)
    if secret is None:  # nobody was ever erased
        return set()
    forms = {key: [key, *former_keys(key)] for key in keys}
    hashes = {form: suppression_hash(secret, form) for each in forms.values() for form in each}
    hit = await tx.suppressed(list(dict.fromkeys(hashes.values())))
    return {key for key, each in forms.items() if any(hashes[form] in hit for form in each)}


def suppression_hashes(secret: str, keys: Sequence[str]) -> list[str]:
    return [suppression_hash(secret, key) for key in keys]


async def delete_profile(
    store: ProfileStore, profile_id: str, *, actor: str, changes: ProfileChanges = UNHEARD
) -> Erasure:
    """Erase the person: the profile, the profiles merged into it, their identities, history,
    consents, merges; keep an audit record without personal data; suppress their identifiers.

    An undone merge with someone else is that person's audit trail too: it stays, without the erased
    person's saved documents and identifiers, their profile ids replaced by the erasure's id."""
    secret = await suppression_secret(store)
    at = clock.now()

    async def work(tx: StoreTransaction) -> tuple[Erasure, ProfilesChanged]:
        profile = await live_profile(tx, profile_id)
        if profile is None:
            raise NotFound(f"no profile {profile_id}", field="id")
        # Every profile merged in, however many and however deep: a walk that stopped at 1,000 left
        # the rest's consent decisions and merge records (their documents) after the erasure.
        # A level at a time, one read each (a read a profile held the writer for as many reads).
        family, level, known = [profile.id], [profile.id], {profile.id}
        while level:
            level = [tomb for tomb in await tx.tombstones_of(level) if tomb not in known]
            known.update(level)
            family += level
        keys = {f"{r.type}:{r.value}" for r in profile.identifiers} | await tx.identity_keys_of(family)
        await tx.suppress(suppression_hashes(secret, sorted(keys)), at)
        await match_model.forget_erased(tx, family)
        erasure_id = ERASURE_PREFIX + uuid.uuid4().hex
        trails, others = await _trails_of_others(tx, family, erasure_id)
        identifiers, interactions = await tx.erase(family)
        for record in trails:  # erase took every merge of the family; these come back without its data
            await tx.insert_merge(record)
        for record in others:
            await tx.replace_merge(record)
        erasure = Erasure(
            _id=erasure_id,
            at=at,
            actor=actor,
            profiles=len(family),
            identifiers=max(identifiers, len(keys)),
            interactions=interactions,
        )
        await tx.record_erasure(erasure)
        # Merged-away profiles belong to no segment: only the live one's memberships end. Recorded, so
        # that subscribers on every process hear them, even if this one stops right after the commit.
        exits_at = event_time(at, await tx.latest_segment_event_at()) if profile.segments else at
        exits = erasure_exits(profile.id, profile.segments, at=exits_at, cause=Cause.ERASURE.value)
        await tx.insert_segment_events(exits)
        return erasure, ProfilesChanged(Cause.ERASURE, tuple(family), exits=tuple(exits))

    async with store.batch():
        erasure, erased = await with_retries(store, work)
    await changes.publish(erased)
    try:
        await store.wipe_deleted()
    except StoreUnavailable:  # the erasure is committed, and its wipe owed: the schedule asks again
        log.warning("erasure %s committed, but the store's files could not be wiped now; retried", erasure.id)
    return erasure


async def wipe_owed_files(store: ProfileStore) -> bool:
    """Wipe the store's files if an erasure's wipe is still owed; whether one was done."""
    return await store.wipe_owed() and await store.wipe_deleted()


async def forget_and_wipe(store: ProfileStore) -> bool:
    """Delete the erased people's exits whose time has come (erasure_exits), then do the wipe owed."""
    if forgotten := await store.forget_segment_events(now=clock.now()):
        log.info("forgot %d segment exits of erased people (delivered to subscribers by now)", forgotten)
    return await wipe_owed_files(store)


async def keep_wiping(store: ProfileStore, *, every_seconds: float) -> None:
    """Until cancelled, do the wipes still owed: what the server runs, from its start (a process killed
    between an erasure's commit and its wipe), every `every_seconds` (a wipe another connection held off,
    an erased person's exits come to be forgotten)."""
    while True:
        try:
            await forget_and_wipe(store)
        except Exception:  # a store hiccup must not end the schedule; the next round retries
            log.exception("wiping the store's files after an erasure failed; retrying in %.0f s", every_seconds)
        await asyncio.sleep(every_seconds)


async def _trails_of_others(
    tx: StoreTransaction, family: Sequence[str], erasure_id: str
) -> tuple[list[MergeRecord], list[MergeRecord]]:
    """The undone merges of the erased profiles with other people, as those people keep them: only
    the saved documents and moved identifiers that hold none of the erased profiles' data, and the
    erasure's id where an erased profile's id was. (A merge that stands joins only the family.)

    And the others' own undone merges whose saved documents held the erased profiles' data, without
    those documents: a merge saved its survivor, or a profile it took in, while an erased one was
    merged into it (Bea into Cal, then Dora into Cal: the second saved Cal holding Bea's email). Such
    a merge was undone before the erased one's could be, so nothing will need the documents again."""
    erased = set(family)

    def with_someone_left(record: MergeRecord) -> bool:
        # A member already erased stands in the record as its erasure's id: nobody is left to keep it.
        members = (record.survivor_id, *record.merged_ids)
        return any(m not in erased and not m.startswith(ERASURE_PREFIX) for m in members)

    shared = [
        record
        for record in await tx.merges_of_all(family)
        if record.status is MergeStatus.UNMERGED and with_someone_left(record)
    ]
    # Every merge the others took part in, whoever they were merged with since, at any depth: whose
    # data each of their saved documents held. A level of profiles at a time, one read each.
    known: dict[str, MergeRecord] = {}
    level = {i for record in shared for i in (record.survivor_id, *record.merged_ids) if i not in erased}
    seen: set[str] = set()
    while level:
        seen |= level
        for record in await tx.merges_of_all(level):
            known[record.id] = record
        level = {i for r in known.values() for i in (r.survivor_id, *r.merged_ids) if i not in erased} - seen
    into = merges_into(known.values())
    rewritten = []
    for record in known.values():
        if record.status is not MergeStatus.UNMERGED or not erased.isdisjoint((record.survivor_id, *record.merged_ids)):
            continue  # one that stands holds no erased profile's data; the family's own are trails or go
        kept = held_only_by(record, lambda profile_id: profile_id not in erased, into)
        if kept.snapshots != record.snapshots or kept.moved_identities != record.moved_identities:
            rewritten.append(kept)
    trails: dict[str, MergeRecord] = {}
    for record in shared:
        kept = held_only_by(record, lambda profile_id: profile_id not in erased, into)
        trails[record.id] = kept.model_copy(
            update={
                "survivor_id": erasure_id if kept.survivor_id in erased else kept.survivor_id,
                "merged_ids": [erasure_id if i in erased else i for i in kept.merged_ids],
                # A steward's words about both people ("ticket says <her email> is bob"): kept, they gave
                # the erased person's data to the other's history and export.
                "reason": ERASED_REASON,
            }
        )
    return list(trails.values()), rewritten


async def without_suppressed(tx: StoreTransaction, identifiers: Sequence[Identifier]) -> list[Identifier]:
    """The identifiers a write goes on with (kept_despite_erasure), or InvalidInput when it is an erased
    person's: their data never comes back."""
    keys = [i.key for i in identifiers]
    suppressed = await suppressed_keys(tx, keys)
    owned = await tx.owners_of(keys) if suppressed else {}
    kept = kept_despite_erasure(identifiers, suppressed, owned)
    if kept is None:
        raise InvalidInput(SUPPRESSED_REASON, field="identifiers")
    return kept
