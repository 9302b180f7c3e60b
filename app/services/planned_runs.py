"""A run computed on a snapshot of the store, written under the write lock if what it read holds.

A large batch's first run is applied in memory before the batch waits for the embedded store's
writer (ingestion._planned; app/store/sqlite/snapshots.py), so that another worker process's batch
holds the lock meanwhile. Under the lock the run's reads are read again: the profiles' documents
(their revisions), the owners and suppressions of every identifier it looked up, and its messageIds.
Events none of that changed for are written as planned; the others, each with every event sharing a
profile, an identifier or a messageId with it, are ingested again on what the store holds now. The
outcome is that of the run ingested under the lock after whatever committed in between (a property
test, tests/property/test_planned_batches.py, holds it to that).
"""

from __future__ import annotations

from datetime import datetime

from app.domain.merge_protection import MergeProtection
from app.services.ingestion_batch import Landed, RunPlan, ingest_run, write_run
from app.services.ports import Snapshot, StoreTransaction
from app.services.privacy import suppressed_keys

Mark = tuple[str, str]  # ("profile" | "key" | "message", its id): what an event's decision read


class PlanOverlaps(Exception):
    """Events of a plan computed again under the lock landed where the plan's other events did: the
    unit rolls back, and the caller ingests the run under the lock from the start."""


async def commit_plan(
    tx: StoreTransaction,
    snapshot: Snapshot[RunPlan],
    *,
    protection: MergeProtection,
    at: datetime,
    expires_at: datetime,
    replays_before: datetime | None = None,
) -> list[Landed]:
    """The run `snapshot` planned, under the write lock: written as planned where what its events
    read is unchanged; the events it changed for ingested again after the others (the two groups
    share nothing either reads). PlanOverlaps when an event ingested again lands on a profile of the
    others, or needs the per-event path."""
    plan = snapshot.value
    again = await _stale(tx, snapshot)
    if not again:
        await write_run(tx, plan.profiles, plan.unchanged, plan.writes, at=at, expires_at=expires_at)
        return plan.landed
    redone = {on for position in again if (on := plan.landed[position].decided_on) is not None}
    kept = {on for landed in plan.landed if (on := landed.decided_on) is not None} - redone
    await write_run(
        tx,
        [write for write in plan.profiles if write.document["_id"] not in redone],
        [profile_id for profile_id in plan.unchanged if profile_id not in redone],
        plan.writes.without(redone),
        at=at,
        expires_at=expires_at,
    )
    positions = sorted(again)
    landed = await ingest_run(
        tx,
        [plan.items[position] for position in positions],
        protection=protection,
        at=at,
        expires_at=expires_at,
        replays_before=replays_before,
    )
    if len(landed) < len(positions) or any(each.decided_on in kept for each in landed):
        raise PlanOverlaps()
    decided = list(plan.landed)
    for position, each in zip(positions, landed, strict=True):
        decided[position] = each
    return decided


async def _stale(tx: StoreTransaction, snapshot: Snapshot[RunPlan]) -> set[int]:
    """The positions of the plan's events whose reads changed since, with every event that shares a
    profile, an identifier key or a messageId with one of them. An event found already stored in its
    profile's history (an old replay, `held`) always counts as changed: nothing marks that read."""
    plan, read = snapshot.value, snapshot.value.read
    keys = list(read.looked_up)
    owners = await tx.owners_of(keys)
    moved = {key for key in keys if owners.get(key) != read.owners_read.get(key)}
    moved |= await suppressed_keys(tx, keys) ^ read.suppressed_read
    messages = {item.event.message_id for item in plan.items[: len(plan.landed)]}
    recorded = (await tx.known_messages(messages)) ^ (read.known_read & messages)
    tainted: set[Mark] = {("profile", profile_id) for profile_id in await tx.changed_since(snapshot)}
    tainted |= {("key", key) for key in moved} | {("message", message_id) for message_id in recorded}
    marks = [
        {("key", i.key) for i in item.usable}
        | {("message", item.event.message_id)}
        | ({("profile", landed.decided_on)} if landed.decided_on else set())
        for item, landed in zip(plan.items, plan.landed, strict=False)
    ]
    stale: set[int] = set()
    while True:  # until no event left shares a mark with one taken: each round takes at least one more
        taken = {position for position, each in enumerate(marks) if position not in stale and each & tainted}
        if not taken:
            return stale
        stale |= taken
        for position in taken:
            tainted |= marks[position]
