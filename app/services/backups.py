"""Restoring a backup without bringing erased people back, nor revoked API keys.

A backup holds everyone as they were when it was taken, including people erased since. Before a
backup takes the current store's place, what the current store erased is made true in it again: its
suppression list (keyed hashes of the erased identifiers) and erasure receipts are carried over, and
every profile of the backup holding a suppressed identifier is erased the way `deleteProfile` erases
(with the profiles merged into it, their history, consents and merges), with a receipt of its own.
The hashes are keyed with the store's secret, which a backup of the same store shares; a backup of
another store cannot be matched to them and is refused rather than restored with its erased people.
"""

from __future__ import annotations

import logging
import uuid
from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime

from app.domain import clock
from app.domain.errors import DomainError, InvalidInput, NotFound
from app.domain.merge import MergeStatus
from app.domain.privacy import ConsentDecision, record_consent, supersedes, suppression_hash
from app.domain.profile import Profile
from app.domain.profile_change import ProfileChange
from app.domain.segments.upkeep import EVERY_SEGMENT
from app.services.merging import merge_history, unmerge_profile
from app.services.ports import ProfileStore, StoreTransaction
from app.services.privacy import SUPPRESSION_SECRET, delete_profile, merged_family
from app.services.profile_reads import get_profile
from app.services.profile_writes import live_profile, with_retries

log = logging.getLogger("cdp.backups")

IDENTITIES_PAGE = 5000
HASHES_PER_CALL = 500
ALL_RECEIPTS = 1_000_000_000
MAX_SPLIT_ROUNDS = 100  # rounds of undoing merges before erasing: a merge undone may reveal one it held


@dataclass(frozen=True, slots=True)
class CarriedErasures:
    suppressions: int  # suppressed identifiers the backup did not know of
    receipts: int  # erasure receipts the backup did not have
    erased: int  # people of the backup erased again (each with a receipt of this restore)
    split: int = 0  # merges of the backup undone first: one side erased here, the other not


async def carry_erasures(current: ProfileStore, restored: ProfileStore, *, actor: str) -> CarriedErasures:
    """Make every erasure of `current` true in `restored` (a backup about to take its place)."""
    secret = await current.read_meta(SUPPRESSION_SECRET)
    if secret is None:  # nobody was ever erased from the current store
        return CarriedErasures(0, 0, 0)
    theirs = await restored.read_meta(SUPPRESSION_SECRET)
    if theirs is None:  # taken before the first erasure
        await restored.write_meta(SUPPRESSION_SECRET, secret)
    elif theirs != secret:
        raise InvalidInput(
            "the backup is not one of this store (its erasure key differs), so the people erased here cannot "
            "be found in it: restore it as a new store (another CDP_DATABASE_URL), or restore a backup of this store",
            field="backup",
        )
    listed = await current.suppression_list()
    known: set[str] = set()
    hashes = list(listed)
    for start in range(0, len(hashes), HASHES_PER_CALL):
        known |= await _suppressed(restored, hashes[start : start + HASHES_PER_CALL])
    missing = [digest for digest in hashes if digest not in known]
    have = {receipt.id for receipt in await restored.erasures(limit=ALL_RECEIPTS)}
    receipts = [receipt for receipt in await current.erasures(limit=ALL_RECEIPTS) if receipt.id not in have]
    by_time: dict[datetime, list[str]] = defaultdict(list)
    for digest in missing:
        by_time[listed[digest]].append(digest)

    async def record(tx: StoreTransaction) -> None:
        for at, digests in by_time.items():
            await tx.suppress(digests, at)
        for receipt in receipts:
            await tx.record_erasure(receipt)

    async with restored.batch():
        await with_retries(restored, record)

    def suppressed(key: str) -> bool:
        return suppression_hash(secret, key) in listed

    erased = split = 0
    for _ in range(MAX_SPLIT_ROUNDS):
        holders = sorted(await _holding(restored, suppressed))
        # Merges standing in the backup that were undone here before one side was erased: undone
        # first, then the profiles holding suppressed identifiers are found again.
        undone = sum([await _split_the_unerased(restored, holder, suppressed, actor=actor) for holder in holders])
        if undone:
            split += undone
            continue
        for profile_id in holders:
            try:
                await delete_profile(restored, profile_id, actor=actor)
            except NotFound:  # erased already, with a profile it was merged into
                continue
            erased += 1
        break
    return CarriedErasures(len(missing), len(receipts), erased, split)


async def _split_the_unerased(
    store: ProfileStore, holder: str, suppressed: Callable[[str], bool], *, actor: str
) -> int:
    """Undo the merges into `holder` that joined a person erased here with one who was not: an
    erasure suppresses every identifier of the profile it erases, so a merge one side of which has
    suppressed identifiers and the other none was undone here before the erasure. Erasing the merged
    profile as it stands in the backup erased both people, and suppressed the other's identifiers for
    good. Returns the merges undone: the newest back to the oldest such one, since a merge is undone
    only once the later merges into its survivor are."""
    records = sorted(
        (r for r in await merge_history(store, holder) if r.status is MergeStatus.MERGED and r.survivor_id == holder),
        key=lambda r: r.at,
        reverse=True,
    )

    async def identities(tx: StoreTransaction) -> set[str]:
        return set(await tx.identities_of(holder))

    held = await store.run_in_transaction(identities)
    mixed = [
        position
        for position, record in enumerate(records)
        for member in record.merged_ids
        if (brought := {key for key, owner in record.moved_identities.items() if owner == member})
        and any(map(suppressed, brought)) != any(map(suppressed, held - brought))
    ]
    if not mixed:
        return 0
    undone = 0
    for record in records[: max(mixed) + 1]:
        try:
            await unmerge_profile(store, record.id, actor=actor)
        except DomainError as exc:  # erasing both, as before, rather than keeping the erased person
            log.warning("merge %s of the backup could not be undone before the erasure: %s", record.id, exc.message)
            break
        undone += 1
    return undone


async def carry_revocations(current: ProfileStore, restored: ProfileStore) -> int:
    """Revoke in `restored` every API key `current` revoked: a key revoked after the backup (one that
    leaked) must not be accepted again once the backup is restored. Returns how many were revoked."""
    revoked = {key.id: key.revoked_at for key in await current.list_api_keys() if key.revoked_at is not None}
    carried = 0
    for key in await restored.list_api_keys():
        at = revoked.get(key.id)
        if at is not None and key.revoked_at is None and await restored.revoke_api_key(key.id, at):
            carried += 1
    return carried


async def carry_withdrawals(current: ProfileStore, restored: ProfileStore) -> int:
    """Make every consent withdrawal still in effect in `current` hold in `restored` (a backup about to
    take its place): restored as it was, the backup opted back in everyone who had unsubscribed since.
    Chosen by what the backup holds, not by when the backup was taken: an unsubscribe clicked before
    the backup but received after it (an email provider's sync, an offline app) is dated before it.

    A withdrawal goes to the person who made it: the profile named when it was made through a
    merged-away id, otherwise every profile of the family it was made on (the backup may hold them
    apart, merged since; the stricter reading, as an unmerge gives a refusal made while merged to
    both). It applies where it is newer than the decision the backup holds, as a decision made
    directly (an unmerge in the restored store keeps it), and leaves the profile's segment check,
    which the server catches up on at its start (due at once). Grants are never carried: a restore never makes
    anyone consent, and a withdrawal taken back since (the person granted again) is not carried
    either. Returns how many profiles had a consent withdrawn."""
    carried = 0
    people = _People(current)
    for decision in await current.consent_refusals():
        for person in await people.withdrawn_by(decision):

            async def work(tx: StoreTransaction, person: str = person, decision: ConsentDecision = decision) -> bool:
                profile = await live_profile(tx, person)
                if profile is None:
                    return False
                held = profile.consents.get(decision.purpose)
                if held is not None and not held.granted and held.at == decision.at:
                    return False  # the backup holds this very withdrawal (or a restore carried it already)
                if not supersedes(decision.at, False, held):
                    return False
                change = ProfileChange()
                record_consent(change, decision.purpose, granted=False, source=decision.source, at=decision.at)
                now = clock.now()
                await tx.update_profile(profile.id, change.stamped(now), expected_version=profile.version)
                # Its segments decided at the server's first round of checks, not UPKEEP_GRACE later: a
                # segment the purpose gates listed the person meanwhile (30 s after the start).
                await tx.schedule_check(profile.id, EVERY_SEGMENT, now)
                made_directly = {"profile_id": profile.id, "message_id": None, "named_id": None, "recorded_at": now}
                await tx.append_consent(decision.model_copy(update={**made_directly, "decision_id": uuid.uuid4().hex}))
                return True

            async with restored.batch():
                carried += await with_retries(restored, work)
    return carried


@dataclass(slots=True)
class _People:
    """The current store's live profile for each id decisions name, and each survivor's family, read
    once: a person's refusals (a banner's, one a visit) share them."""

    store: ProfileStore
    survivors: dict[str, Profile | None] = field(default_factory=dict)
    families: dict[str, list[str]] = field(default_factory=dict)

    async def withdrawn_by(self, decision: ConsentDecision) -> list[str]:
        """The profiles of the person who made `decision` (none when the person has granted the
        purpose again since, or is gone)."""
        named = decision.named_id or decision.profile_id
        if named not in self.survivors:
            self.survivors[named] = await get_profile(self.store, named)
        survivor = self.survivors[named]
        now_held = survivor.consents.get(decision.purpose) if survivor is not None else None
        if survivor is None or now_held is None or now_held.granted:
            return []
        if decision.named_id:
            return [decision.named_id]
        if survivor.id not in self.families:
            self.families[survivor.id] = await merged_family(self.store, survivor.id)
        return self.families[survivor.id]


async def _suppressed(store: ProfileStore, hashes: list[str]) -> set[str]:
    async def read(tx: StoreTransaction) -> set[str]:
        return await tx.suppressed(hashes)

    return await store.run_in_transaction(read)


async def _holding(store: ProfileStore, suppressed: Callable[[str], bool]) -> set[str]:
    """The profiles owning a suppressed identifier."""
    owners: set[str] = set()
    after: str | None = None
    while page := await store.identity_owners(after=after, limit=IDENTITIES_PAGE):
        owners |= {owner for key, owner in page if suppressed(key)}
        if len(page) < IDENTITIES_PAGE:
            break
        after = page[-1][0]
    return owners
