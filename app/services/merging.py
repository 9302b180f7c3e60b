"""Merges a steward asks for, and unmerges: undo a merge, however much happened since.

An unmerge restores the profiles as they were before the merge, then routes each interaction to
where the identifiers it carried point now that they are separated again, whatever merges and
unmerges moved it before: what a merged profile brought goes back to it, and what arrived since goes
to the person it named. Everything derived from history is rebuilt from the interactions each
profile ends with, names and consents that events set included (and the consent history with
them); what was set directly on the survivor after the merge stays there, but a consent given
through a merged-away profile's id goes back with that person. Merges into one profile
are undone newest first: a later merge saved the survivor with what the earlier one brought.
"""

from __future__ import annotations

import uuid
from collections import defaultdict
from collections.abc import Collection, Mapping, Sequence
from datetime import datetime
from typing import Any

from app.domain import clock
from app.domain.errors import Conflict, InvalidInput, LimitExceeded, NotFound
from app.domain.event_effects import IDENTITY_FIELDS, identify_fields
from app.domain.event_limits import is_valid_unicode
from app.domain.events import EventType
from app.domain.history_rebuild import rebuild_behaviour, replay_identity
from app.domain.identifiers import Identifier, strongest
from app.domain.matching.index import refresh_keys
from app.domain.merge import MergeRecord, MergeRefusal, MergeStatus
from app.domain.privacy import ConsentDecision
from app.domain.profile import Consent, Interaction, Profile
from app.domain.profile_bounds import merged_refusal
from app.domain.profile_change import provenance_key
from app.services.identity_policy import IdentityPolicy
from app.services.merge_steps import merge_in_transaction
from app.services.ports import ProfileStore, StoreTransaction
from app.services.profile_changes import UNHEARD, Cause, ProfileChanges, ProfilesChanged
from app.services.profile_reads import read_again
from app.services.profile_writes import MAX_MERGE_HOPS, live_profile, with_retries

MAX_REASON_LENGTH = 500
MAX_MERGED_AT_ONCE = 100  # a person's duplicates, not a catalogue: more is a mistake of the caller


async def merge_profiles(
    store: ProfileStore,
    survivor_id: str,
    merged_ids: Sequence[str],
    *,
    reason: str,
    actor: str,
    policy: IdentityPolicy,
    changes: ProfileChanges = UNHEARD,
    judged: Mapping[str, int] | None = None,
    automatic: bool = False,
) -> tuple[MergeRecord, Profile]:
    """Merge `merged_ids` into `survivor_id`. `judged`: the version of each profile as the caller
    judged them (an automatic merge: by score and merge protection); Conflict, nothing merged, when
    one has changed since, for a merge decided on what they no longer are. `automatic`: made by the
    server (a fuzzy match), not a steward, as its record says."""
    reason = reason.strip()
    if not reason or len(reason) > MAX_REASON_LENGTH:
        raise InvalidInput(f"give a reason of 1-{MAX_REASON_LENGTH} characters", field="reason")
    if not is_valid_unicode(reason):  # the merge record could not be stored: refused, as other text is
        raise InvalidInput("reason is not valid Unicode (it holds a lone surrogate)", field="reason")
    if not merged_ids:
        raise InvalidInput("name at least one profile to merge into the survivor", field="mergedIds")
    if len(merged_ids) > MAX_MERGED_AT_ONCE:
        # 999 at once held the writer for the merge, then made the person's erasure take 30 s.
        raise LimitExceeded(f"at most {MAX_MERGED_AT_ONCE} profiles merged at once", field="mergedIds")
    at = clock.now()

    async def work(tx: StoreTransaction) -> tuple[MergeRecord, Profile]:
        survivor = await live_profile(tx, survivor_id)
        if survivor is None:
            raise NotFound(f"no profile {survivor_id}", field="survivorId")
        others: dict[str, Profile] = {}
        for index, merged_id in enumerate(merged_ids):
            other = await live_profile(tx, merged_id)
            if other is None:
                raise NotFound(f"no profile {merged_id}", field=f"mergedIds[{index}]")
            if other.id == survivor.id:
                raise InvalidInput(
                    f"{merged_id} is the survivor (or already merged into it): a profile cannot merge with itself",
                    field=f"mergedIds[{index}]",
                )
            others[other.id] = other
        everyone = [survivor, *others.values()]
        if too_large := merged_refusal([p.traits for p in everyone], [p.qualitative.preferences for p in everyone]):
            raise InvalidInput(f"{too_large}: remove what the profiles no longer need first", field="mergedIds")
        if judged is not None and any(judged.get(p.id) != p.version for p in everyone):
            raise Conflict("the profiles changed after the merge was decided: it is not made")
        others_now = list(others.values())
        return await merge_in_transaction(
            tx, survivor, others_now, reason=reason, actor=actor, at=at, rules=policy.rules, automatic=automatic
        )

    async with store.batch():
        record, survivor = await with_retries(store, work)
    await changes.publish(ProfilesChanged.of(Cause.MERGE, [record.survivor_id, *record.merged_ids]))
    return record, (await read_again(store, [survivor]))[0]


async def unmerge_profile(
    store: ProfileStore, merge_id: str, *, actor: str, changes: ProfileChanges = UNHEARD
) -> tuple[MergeRecord, list[Profile]]:
    at = clock.now()

    async def work(tx: StoreTransaction) -> tuple[MergeRecord, list[Profile]]:
        record = await tx.get_merge(merge_id)
        if record is None:
            raise NotFound(f"no merge {merge_id}", field="mergeId")
        if record.status is MergeStatus.UNMERGED:
            undone = clock.to_iso(record.unmerged_at) if record.unmerged_at else "an earlier time"
            raise Conflict(f"merge {merge_id} was already undone at {undone}", field="mergeId")
        survivor = await tx.get_profile(record.survivor_id)
        assert survivor is not None, "a merge's survivor is never deleted while the merge stands"
        merges = await tx.merges_of(survivor.id)
        # What must be undone first, all of it, newest first: the merge that took the survivor away, and
        # later merges into it (each saved the survivor with what this one brought).
        away = [m for m in merges if survivor.id in m.merged_ids and m.status == "MERGED"]
        first = sorted([*away, *_later_merges_into(record, merges)], key=lambda m: m.at, reverse=True)
        if first:
            why = " and ".join(
                [*(["was itself merged afterwards"] if away else []),
                 *(["took in later merges that still stand"] if len(first) > len(away) else [])]
            )  # fmt: skip
            raise Conflict(
                f"profile {survivor.id} {why} ({', '.join(m.id for m in first)}, newest first): "
                f"undo {'that merge' if len(first) == 1 else 'them'} first",
                field="mergeId",
            )
        tombstones = {}
        for merged_id in record.merged_ids:
            tomb = await tx.get_profile(merged_id)
            if tomb is None or tomb.merged_into != survivor.id:
                raise Conflict(f"profile {merged_id} is no longer merged into {survivor.id}", field="mergeId")
            tombstones[merged_id] = tomb
        restored = await _unmerge(tx, record, survivor, tombstones, at=at)
        record = record.model_copy(update={"status": MergeStatus.UNMERGED, "unmerged_at": at, "unmerged_by": actor})
        await tx.replace_merge(record)
        return record, restored

    async with store.batch():
        record, restored = await with_retries(store, work)
    await changes.publish(ProfilesChanged.of(Cause.UNMERGE, [p.id for p in restored]))
    return record, await read_again(store, restored)


def _later_merges_into(record: MergeRecord, merges: list[MergeRecord]) -> list[MergeRecord]:
    """Merges into the same survivor made after `record` and still standing, newest first.

    Each saved the survivor as it was, with what `record` brought: undoing `record` first would
    leave that copy for their own undo to restore, the merged person's data included.
    """
    version = record.survivor_version()
    later = [
        m
        for m in merges
        if m.survivor_id == record.survivor_id and m.status is MergeStatus.MERGED and m.survivor_version() > version
    ]
    return sorted(later, key=MergeRecord.survivor_version, reverse=True)


async def merge_history(store: ProfileStore, profile_id: str) -> list[MergeRecord]:
    return await store.merges_of(profile_id)


async def merge_refusals(store: ProfileStore, profile_id: str) -> list[MergeRefusal]:
    return await store.refusals_of(profile_id)


async def merge_histories(store: ProfileStore, profile_ids: Collection[str]) -> dict[str, list[MergeRecord]]:
    """`merge_history` for many profiles, in one store read."""
    return await store.merges_of_profiles(profile_ids)


async def merge_refusals_of(store: ProfileStore, profile_ids: Collection[str]) -> dict[str, list[MergeRefusal]]:
    """`merge_refusals` for many profiles, in one store read."""
    return await store.refusals_of_profiles(profile_ids)


async def _unmerge(
    tx: StoreTransaction, record: MergeRecord, survivor: Profile, tombstones: dict[str, Profile], *, at: datetime
) -> list[Profile]:
    survivor_keys = await tx.identities_of(survivor.id)
    history = await tx.history(survivor.id)
    owners, key_owners = await _route(tx, record, history, survivor_keys)

    # Identifiers go back where they came from; one first claimed after the merge to the person whose
    # event brought it (`_route`); one no event brought (an upsert's) stays with the survivor.
    by_previous_owner: dict[str, list[str]] = defaultdict(list)
    for key, previous in record.moved_identities.items():
        by_previous_owner[previous].append(key)
    for key, claimed_at in survivor_keys.items():
        if key not in record.moved_identities and claimed_at > record.at:
            owner = key_owners.get(key, survivor.id)
            if owner != survivor.id:
                by_previous_owner[owner].append(key)
    holders = dict.fromkeys(survivor_keys, survivor.id)  # who holds each identifier once this is undone
    for owner, keys in by_previous_owner.items():
        await tx.set_identity_owner(keys, owner)
        holders |= dict.fromkeys(keys, owner)
    leaving = {key for keys in by_previous_owner.values() for key in keys}
    history, rewrites = _as_their_owners_keep_them(history, owners, holders, {record.survivor_id, *record.merged_ids})

    moves = {mid: owner for mid, owner in owners.items() if owner != survivor.id}
    await tx.assign_history(survivor.id, moves, rewrites)
    history_of: dict[str, list[Interaction]] = defaultdict(list)
    for interaction in history:
        history_of[owners[interaction.message_id]].append(interaction)
    # A consent an event decided follows the event, in the consent history as on the profile.
    consent_events = {i.message_id for i in history if i.type == EventType.CONSENT_UPDATE}
    # A decision made directly since, naming a merged-away profile's id (an unsubscribe through the id
    # that person was known by), was that person's: it goes back with them. Kept by the survivor, an
    # opt-out was lost to the person who gave it once a steward undid the merge.
    decided = [
        d
        for d in await tx.consent_decisions(survivor.id)
        if d.message_id is None and (d.recorded_at or d.at) >= record.at
    ]
    theirs = {
        d.decision_id: member
        for d in decided
        if d.decision_id is not None
        and d.named_id is not None
        and (member := await _member_of(tx, d.named_id, record)) != survivor.id
    }
    await tx.assign_consents(
        survivor.id, {mid: owner for mid, owner in moves.items() if mid in consent_events}, direct=theirs
    )
    direct = [d for d in decided if d.decision_id not in theirs]
    # A refusal made directly through the survivor's id while merged may have been either person's: the
    # API answers the survivor's id for the merged person's identifiers, so their unsubscribe landed
    # there, and undoing the merge opted them in again. Both keep it (the stricter reading), each
    # with it in their consent history.
    shared_refusals = [d for d in direct if not d.granted]

    restored: list[Profile] = []
    for merged_id, tomb in tombstones.items():
        snapshot = record.snapshot_of(merged_id)
        own_keys = set(by_previous_owner[merged_id])
        extra = [r for r in survivor.identifiers if _key(r) in own_keys and _key(r) not in snapshot.identifier_keys()]
        copies = [
            d.model_copy(update={"profile_id": merged_id, "decision_id": uuid.uuid4().hex, "named_id": None})
            for d in shared_refusals
        ]
        for copy in copies:
            await tx.append_consent(copy)
        own_decisions = [d for d in decided if theirs.get(d.decision_id or "") == merged_id] + copies
        base = snapshot.model_copy(
            update={
                "identifiers": [*snapshot.identifiers, *extra],
                "consents": _decided(snapshot.consents, own_decisions),
                "updated_at": at,
            }
        )
        # Memberships stay as stored (the tombstone's) until re-evaluation records each change.
        profile = refresh_keys(
            rebuild_behaviour(replay_identity(base, history_of[merged_id]), history_of[merged_id]).model_copy(
                update={"version": tomb.version + 1, "segments": tomb.segments}
            )
        )
        await tx.replace_profile(profile, expected_version=tomb.version)
        restored.append(profile)

    others = [i for i in history if owners[i.message_id] != survivor.id]
    base = _survivor_base(record, survivor, leaving, others=others, direct=direct, at=at)
    own = history_of[survivor.id]
    profile = refresh_keys(
        rebuild_behaviour(replay_identity(base, own), own).model_copy(
            update={"version": survivor.version + 1, "segments": survivor.segments}
        )
    )
    await tx.replace_profile(profile, expected_version=survivor.version)
    return [profile, *restored]


def _as_their_owners_keep_them(
    history: list[Interaction], owners: dict[str, str], holders: dict[str, str], members: set[str]
) -> tuple[list[Interaction], dict[str, dict[str, Any]]]:
    """The history as each interaction's owner keeps it once the merge is undone, and message id → the
    fields rewritten, for those that change. An event that named both people goes to one of them:
    - it drops the identifiers another of the merge's profiles holds (`holders`: identifier key →
      that profile), which are not this person's data (nor does where it goes ever depend on them:
      it goes by its strongest identifier);
    - one that landed on the merged profile while they were one names as its `origin` the profile
      that stood for both: it names its owner now. (Once that other profile is erased, its id was
      all that was left of it here.)"""
    kept_history: list[Interaction] = []
    rewrites: dict[str, dict[str, Any]] = {}
    for interaction in history:
        owner = owners[interaction.message_id]
        rewrite: dict[str, Any] = {}
        kept = [key for key in interaction.identifiers if holders.get(key, owner) == owner]
        if len(kept) < len(interaction.identifiers):
            rewrite["identifiers"] = kept
        if interaction.origin in members and interaction.origin != owner:
            rewrite["origin"] = owner
        if rewrite:
            rewrites[interaction.message_id] = rewrite
            interaction = interaction.model_copy(update=rewrite)
        kept_history.append(interaction)
    return kept_history, rewrites


async def _member_of(tx: StoreTransaction, profile_id: str, record: MergeRecord) -> str:
    """The profile of `record` that `profile_id` is, or was merged into by an earlier merge; the
    survivor when it is none of them."""
    members = {record.survivor_id, *record.merged_ids}
    for _ in range(MAX_MERGE_HOPS):
        if profile_id in members:
            return profile_id
        profile = await tx.get_profile(profile_id)
        if profile is None or profile.merged_into is None:
            break
        profile_id = profile.merged_into
    return record.survivor_id


async def _route(
    tx: StoreTransaction, record: MergeRecord, history: list[Interaction], survivor_keys: dict[str, datetime]
) -> tuple[dict[str, str], dict[str, str]]:
    """(message id → the profile each interaction belongs to once the merge is undone, identifier key
    → the profile it belongs to then, for those the merge's profiles held or their events brought).

    Routed by the identifiers it carried, as ingestion would have placed it had nobody merged them,
    not by where it landed: after an earlier unmerge moved it, or a later merge took its profile in,
    the profile it landed on is no longer its owner. What each profile held before the merge is
    known; an identifier first claimed while merged had no owner then: it is the person's whose event
    first brought it (an event that also carried one known), and events carrying only it follow it.
    Before, it was taken for the survivor's, and so were the events it was the strongest of.
    """
    owner_of_key = {
        key: record.survivor_id for key, claimed_at in survivor_keys.items() if claimed_at <= record.at
    } | record.moved_identities
    resolved: dict[str, str] = {}

    owners: dict[str, str] = {}
    # In arrival order, again while an event's identifiers gave another event an owner: whichever order
    # the store lists a batch's events in, the one that brought an identifier gives it its owner first.
    pending = sorted(history, key=lambda i: (i.received_at or i.timestamp, i.timestamp))
    while pending:
        unknown = []
        for interaction in pending:
            owner = _owner_by_identifiers(interaction, owner_of_key)
            if owner is None:
                unknown.append(interaction)
                continue
            owners[interaction.message_id] = owner
            for key in interaction.identifiers:
                if key in survivor_keys:  # claimed while merged (one of someone else's never gets an owner here)
                    owner_of_key.setdefault(key, owner)
        if len(unknown) == len(pending):
            break
        pending = unknown
    for interaction in pending:  # stored before interactions kept their identifiers, or carrying none known
        origin = interaction.origin or record.survivor_id
        if origin not in resolved:
            resolved[origin] = await _member_of(tx, origin, record)
        owners[interaction.message_id] = resolved[origin]
    return owners, owner_of_key


def _owner_by_identifiers(interaction: Interaction, owner_of_key: dict[str, str]) -> str | None:
    """The owner of the strongest identifier the interaction carried, as ingestion chose where it
    landed; None when it carried none that the merge's profiles hold."""
    known = [Identifier(*key.split(":", 1)) for key in interaction.identifiers if key in owner_of_key]
    if not known:
        return None
    return owner_of_key[strongest(known).key]


def _key(record: Any) -> str:
    return f"{record.type}:{record.value}"


def _survivor_base(
    record: MergeRecord,
    current: Profile,
    leaving: set[str],
    *,
    others: Sequence[Interaction],
    direct: Sequence[ConsentDecision],
    at: datetime,
) -> Profile:
    """The survivor as it was before the merge, with what was decided on it directly since.

    Fields set after the merge stay, unless another person's identify event set them: that event
    goes to them and is replayed there. Consents are those given with setConsent since (`direct`);
    the survivor's own consent events apply on top when it is rebuilt. A direct change that another
    person's event then overwrote is no longer known: that field falls back to the survivor's value
    before the merge and its own events.
    """
    snapshot = record.snapshot_of(current.id)
    document = snapshot.to_document()
    now = current.to_document()
    set_by_others = {
        (provenance_key(path), i.timestamp, i.channel)
        for i in others
        if i.type == EventType.IDENTIFY
        for path in identify_fields(i.properties)
    }
    paths = [*IDENTITY_FIELDS, "addresses", *(f"traits.{name}" for name in current.traits)]
    for path in paths:
        key = provenance_key(path)
        changed_at = current.field_times.get(key)
        if changed_at is None or changed_at <= record.at:
            continue
        if (key, changed_at, current.field_sources.get(key)) in set_by_others:
            continue
        head, _, tail = path.partition(".")
        value = now.get(head, {}).get(tail) if tail else now.get(head)
        if tail:
            document.setdefault("traits", {})[tail] = value
        else:
            document[head] = value
        document.setdefault("fieldTimes", {})[key] = changed_at
        if key in current.field_sources:
            document.setdefault("fieldSources", {})[key] = current.field_sources[key]
    consents = _decided(snapshot.consents, direct)
    kept_identifiers = [r for r in current.identifiers if _key(r) not in leaving]
    base = Profile.from_document(document)
    return base.model_copy(
        update={"identifiers": kept_identifiers, "consents": consents, "updated_at": at, "merged_into": None}
    )


def _decided(consents: Mapping[str, Consent], decisions: Sequence[ConsentDecision]) -> dict[str, Consent]:
    """`consents` with the decisions made directly since applied, the newest of each purpose winning."""
    decided = dict(consents)
    for decision in sorted(decisions, key=lambda d: d.at):
        kept = decided.get(decision.purpose)
        if kept is None or decision.at >= kept.at:
            decided[decision.purpose] = Consent(granted=decision.granted, source=decision.source, at=decision.at)
    return decided
