"""The writes of one merge, inside the caller's transaction: shared by merges a steward asks for
and by automatic merges during ingestion. Being one transaction, a merge interrupted at any step
(error, crash, killed process) leaves nothing half-done: the backend rolls it back whole."""

from __future__ import annotations

import hashlib
import uuid
from collections.abc import Sequence
from datetime import datetime

from app.domain.history_rebuild import MergedHistory, absorbs_exactly, visit_windows
from app.domain.matching.index import refresh_keys
from app.domain.merge import MergeRecord, kept_whole, merged_profile, snapshot, tombstone
from app.domain.profile import Interaction, Profile
from app.domain.reconciliation import ReconciliationRules
from app.services.ports import StoreTransaction


def new_merge_id() -> str:
    return "mrg_" + uuid.uuid4().hex


def refusal_id(profile_ids: Sequence[str], reason: str) -> str:
    """One id for one refusal: the same profiles kept apart for the same reason are one record, its
    first time and event. By event, a family sharing a mailbox recorded a refusal with each event of
    the other customer, and `mergeRefusals` grew without bound."""
    digest = hashlib.sha256("\x00".join([*sorted(profile_ids), reason]).encode()).hexdigest()
    return "ref_" + digest[:32]


async def merge_in_transaction(
    tx: StoreTransaction,
    survivor: Profile,
    others: Sequence[Profile],
    *,
    reason: str,
    actor: str,
    at: datetime,
    rules: ReconciliationRules,
    automatic: bool,
) -> tuple[MergeRecord, Profile]:
    """`others` merged into `survivor`, all read whole (their recent lists: the merged profile keeps
    the newest of them). The history of the profile with the most events is not replayed, unless a
    rating or consent of the others falls at the very instant of one of its own (absorbs_exactly)."""
    everyone = [survivor, *others]
    kept = kept_whole(everyone)
    rest = [profile for profile in everyone if profile is not kept]
    absorbed: list[Interaction] = []
    for profile in rest:
        absorbed += await tx.history(profile.id)
    # A message that landed on two of them (sent again under other identifiers once its idempotency
    # key was purged) is one event: counted once, where kept counted it (the embedded store keeps one
    # copy of the history's row; both copies counted, the merged stats disagreed with it). A store
    # that never purged a key holds no such message.
    if absorbed and await tx.keys_purged_through() is not None:
        twice = await tx.held_messages([(kept.id, i.timestamp, i.message_id) for i in absorbed])
        absorbed = [interaction for interaction in absorbed if interaction.message_id not in twice]
    if absorbs_exactly(kept, rest, absorbed):
        history = MergedHistory(absorbed, kept, await tx.activity_between(kept.id, visit_windows(absorbed)))
    else:
        history = MergedHistory([*absorbed, *await tx.history(kept.id)])
    merged = refresh_keys(merged_profile(survivor, others, history, rules, at=at))
    other_ids = [o.id for o in others]
    moved = await tx.reassign_identities(other_ids, survivor.id)
    await tx.reassign_history(other_ids, survivor.id)
    for other in others:
        await tx.replace_profile(refresh_keys(tombstone(other, survivor.id, at=at)), expected_version=other.version)
    await tx.replace_profile(merged, expected_version=survivor.version)
    record = MergeRecord(
        _id=new_merge_id(),
        survivor_id=survivor.id,
        merged_ids=other_ids,
        at=at,
        reason=reason,
        actor=actor,
        automatic=automatic,
        snapshots=[snapshot(p) for p in everyone],
        moved_identities=moved,
    )
    await tx.insert_merge(record)
    return record, merged
