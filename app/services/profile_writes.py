"""The write path every profile change shares: resolve identifiers to a profile inside a
transaction, create it or update it in one document write, and retry when a concurrent writer
claimed an identifier or moved the version first."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Awaitable, Callable
from datetime import datetime
from typing import TypeVar

from app.domain.errors import Conflict, StoreUnavailable
from app.domain.identifiers import Identifier, KnownIdentifierType
from app.domain.identity_resolution import Resolution, resolve, someone_else
from app.domain.matching.blocking import given_name_prefix
from app.domain.matching.fields import MatchFields, match_fields
from app.domain.matching.index import index_change, refresh_keys, touches_match_fields
from app.domain.matching.scoring import COMMON_GIVEN_NAME, another_person, score_pair, siblings_names
from app.domain.merge import MergeRefusal, MergeStatus
from app.domain.profile import Profile, new_profile
from app.domain.profile_change import ProfileChange, apply_change
from app.services.identity_policy import IdentityPolicy
from app.services.merge_steps import merge_in_transaction, refusal_id
from app.services.ports import IdentityTaken, ProfileStore, StoreTransaction, VersionConflict

T = TypeVar("T")
MAX_ATTEMPTS = 8
STORE_ATTEMPTS = 3
STORE_BACKOFF_SECONDS = 0.05
# A merged-away profile points at its survivor, which may have been merged away since, and so on:
# each hop is one read. 16 hops left the first ids of 19 profiles merged one into the next unfound
# (`profile`, an export or an erasure by an old id said NOT_FOUND). Merges never make a loop (a
# profile merges only into a live one); the bound guards against a store that says otherwise.
MAX_MERGE_HOPS = 10_000

# Builds the change for a profile, given the identifiers the write adds to it.
ChangeBuilder = Callable[[Profile, list[Identifier]], ProfileChange]

SYSTEM_ACTOR = "system"  # a merge no key asked for (a command, the demo data, the fuzzy matcher)
# How many of a profile's refusals (the newest) name its family's members kept apart from it, for a
# write to look for its own person's among (`_own_kept_apart`): a family has a few; a shared office
# mailbox may have hundreds, whose profiles a write would read each time.
MAX_KEPT_APART = 50
# Recorded (once per profiles) when a write goes apart from the profile an identifier it shares names.
ANOTHER_PERSON = (
    "another person's name and birth date (or a twin's given name): the identifiers they share do not join them"
)


def new_profile_id() -> str:
    return uuid.uuid4().hex


async def with_retries(store: ProfileStore, work: Callable[[StoreTransaction], Awaitable[T]]) -> T:
    """Run `work` in a transaction; a lost race on an identifier or a version is simply re-run, and so
    is a transaction the store could not complete (it rolled back whole, so re-running is safe), after
    a short backoff and at most STORE_ATTEMPTS times before STORE_UNAVAILABLE reaches the caller."""
    unavailable = 0
    for _ in range(MAX_ATTEMPTS + STORE_ATTEMPTS):
        try:
            return await store.run_in_transaction(work)
        except (IdentityTaken, VersionConflict):
            continue
        except StoreUnavailable:
            unavailable += 1
            if unavailable >= STORE_ATTEMPTS:
                raise
            await asyncio.sleep(STORE_BACKOFF_SECONDS * 2 ** (unavailable - 1))
    raise Conflict("the profile kept changing under this write; retry it")


async def live_profile(tx: StoreTransaction, profile_id: str) -> Profile | None:
    """The profile, following `mergedInto` from a merged-away one to the survivor."""
    for _ in range(MAX_MERGE_HOPS):
        profile = await tx.get_profile(profile_id)
        if profile is None or profile.merged_into is None:
            return profile
        profile_id = profile.merged_into
    return None


async def write_to_resolved_profile(
    tx: StoreTransaction,
    identifiers: list[Identifier],
    build: ChangeBuilder,
    *,
    at: datetime,
    policy: IdentityPolicy,
    message_id: str | None = None,
    actor: str = SYSTEM_ACTOR,
    written: bool = True,
    person: MatchFields | None = None,
) -> tuple[Profile, tuple[str, ...]]:
    """Resolve `identifiers` (merging the profiles they name when protection allows) and apply the
    change `build` makes; returns the profile as written and the profiles merged into it (their
    memberships change too: the caller reports them). `actor`: whom a merge it makes is recorded as
    made by (the key whose write it is), so a steward can find and undo what a key's writes merged.
    `written` False: a caller that reads only the profile's id (an event's) gets the profile as it
    was before a change that moves none of its match fields, not built again as written (~10% of a
    merging event's time). `person`: the write's own given name and birth date (`stated_person`):
    a profile whose own are another person's is neither joined nor merged through an identifier they
    share (`_other_people`): the write goes to its own person's profile kept apart from it before
    when nothing else it names has a profile (`_own_kept_apart`)."""
    owners = await tx.owners_of([i.key for i in identifiers])
    read: dict[str, Profile | None] = {}
    apart: list[str] = []
    own: Profile | None = None
    if person is not None and policy.protection.households_apart:
        apart = await _other_people(tx, identifiers, owners, person, read)
        kept = [i for i in identifiers if owners.get(i.key) not in apart]
        if apart and not any(i.key in owners for i in kept):
            own = await _own_kept_apart(tx, person, {p.id: p for owner in apart if (p := read[owner]) is not None})
        if kept or own is not None:
            identifiers = kept
        else:
            # Nothing of its own and no profile of its person kept apart before: it goes where its
            # identifiers say, as before. A profile of its own would split a customer whose name a CRM
            # corrected (the old name written again through the mailbox) as readily as a family.
            apart = []
    profile, merged_away = await _write_resolved(
        tx,
        identifiers,
        owners,
        build,
        read,
        at=at,
        policy=policy,
        message_id=message_id,
        actor=actor,
        written=written,
        person=person,
        own=own,
    )
    if apart:
        ids = sorted({profile.id} | {other.id for owner in apart if (other := read[owner]) is not None})
        await _record_refusal(tx, ids, ANOTHER_PERSON, at=at, message_id=message_id)
    return profile, merged_away


async def _other_people(
    tx: StoreTransaction,
    identifiers: list[Identifier],
    owners: dict[str, str],
    person: MatchFields,
    read: dict[str, Profile | None],
) -> list[str]:
    """The profiles (as `owners` names them) that the write's identifiers name but whose given name
    and birth date are another person's (`another_person`): a family's shared mailbox or landline put
    a partner's or a child's records on one profile, and merged their own profiles into it. A
    customerId names its customer whatever the names say (a name corrected in the CRM), and so does a
    profile a steward merged others into (`_made_by_a_steward`). `read` keeps each profile read, for
    the write."""
    for owner in sorted(set(owners.values())):  # an owner merged away since stands for its survivor
        read[owner] = await live_profile(tx, owner)
    live = {owner: held.id for owner, held in read.items() if held is not None}
    customer = {
        live.get(owners[i.key]) for i in identifiers if i.key in owners and i.type == KnownIdentifierType.CUSTOMER_ID
    }
    others: set[str] = set()
    for held in {held.id: held for held in read.values() if held is not None and held.id not in customer}.values():
        if await _anothers(tx, person, held):
            others.add(held.id)
    return [owner for owner, held_id in live.items() if held_id in others]


async def _own_kept_apart(tx: StoreTransaction, person: MatchFields, others: dict[str, Profile]) -> Profile | None:
    """The profile of the write's own person among those a write was kept apart from `others` by
    before (`ANOTHER_PERSON`): Max's, made when his first write through the family mailbox was kept
    off Anna's. His next writes through that mailbox go there too, rather than onto Anna's profile
    (one naming only the mailbox) or onto a new profile each (one naming a new record of his too).
    Of those whose names and birth date are not another person's than the write's (`_names_anothers`),
    the one they agree with best; None when there is none. Of each of `others`, the newest
    MAX_KEPT_APART refusals count (an office's shared mailbox), their profiles read in one read."""
    ids: dict[str, None] = {}
    for other_id in sorted(others):
        refusals = [r for r in await tx.refusals_of(other_id) if r.reason == ANOTHER_PERSON]
        for refusal in refusals[-MAX_KEPT_APART:]:
            ids.update(dict.fromkeys(i for i in refusal.profile_ids if i not in others))
    kept: dict[str, Profile] = {}
    for profile in (await tx.get_profiles(list(ids))).values():
        live = profile if profile.merged_into is None else await live_profile(tx, profile.id)
        if live is not None and live.id not in others:
            kept[live.id] = live
    mine = [p for p in kept.values() if not await _names_anothers(tx, person, match_fields(p))]
    return max(mine, key=lambda p: (_agreement(person, p), p.id), default=None)


async def _two_people(tx: StoreTransaction, target: Profile, others: dict[str, Profile]) -> list[str]:
    """The ids of those of `others` whose own given name and birth date are another person's than
    `target`'s (`another_person`), unless a steward made either profile: a write naming no one (a
    surname alone) through the family mailbox of one and the landline of the other merged two
    people the writes stating their names had kept apart."""
    person = match_fields(target)
    apart = [profile_id for profile_id, other in others.items() if await _anothers(tx, person, other)]
    if not apart or await _made_by_a_steward(tx, target):
        return []
    return apart


async def _anothers(tx: StoreTransaction, person: MatchFields, profile: Profile) -> bool:
    """Whether `profile`'s own given name and birth date are another person's than `person`'s
    (`another_person`, or siblings' near given names both common in the store: `_siblings`), a profile a
    steward merged others into excepted (`_made_by_a_steward`)."""
    if not await _names_anothers(tx, person, match_fields(profile)):
        return False
    return not await _made_by_a_steward(tx, profile)


async def _names_anothers(tx: StoreTransaction, person: MatchFields, theirs: MatchFields) -> bool:
    """Whether a profile's own names and birth date (`theirs`) are another person's than `person`'s
    (`another_person`, or siblings' near given names both common in the store: `_siblings`)."""
    return another_person(person, theirs) or await _siblings(tx, person, theirs)


async def _siblings(tx: StoreTransaction, person: MatchFields, theirs: MatchFields) -> bool:
    """Whether near given names on one birth date or two a slip apart, or one letter apart on any
    (`siblings_names`), are each held by COMMON_GIVEN_NAME profiles or more: two names people are
    given (Anna and Lena, Maria and Marta), not one mistyped. At most two bounded counts, asked only
    of such a pair."""
    names = siblings_names(person, theirs)
    if names is None:
        return False
    for name in names:
        held = await tx.profiles_holding_key_prefix(given_name_prefix(name), at_most=COMMON_GIVEN_NAME)
        if held < COMMON_GIVEN_NAME:
            return False
    return True


def _agreement(person: MatchFields, profile: Profile) -> float:
    """How far a write's stated names and birth date agree with a profile's (the matcher's score: the
    write states no contact point, so only names and birth dates count)."""
    return score_pair(person, match_fields(profile)).score


async def _made_by_a_steward(tx: StoreTransaction, profile: Profile) -> bool:
    """Whether a steward merged other profiles into this one (and has not undone it): they decided it
    is one person, whose records may carry each merged profile's names (Quin writing as Quentin
    through a phone of his, merged into Pat's profile). An automatic merge decided nothing of that."""
    return any(
        m.survivor_id == profile.id and not m.automatic and m.status is MergeStatus.MERGED
        for m in await tx.merges_of(profile.id)
    )


async def _write_resolved(
    tx: StoreTransaction,
    identifiers: list[Identifier],
    owners: dict[str, str],
    build: ChangeBuilder,
    read: dict[str, Profile | None],
    *,
    at: datetime,
    policy: IdentityPolicy,
    message_id: str | None,
    actor: str,
    written: bool,
    person: MatchFields | None,
    own: Profile | None = None,
) -> tuple[Profile, tuple[str, ...]]:
    """`write_to_resolved_profile` once the profiles it keeps apart are set aside; `own`: where a
    write its identifiers name no profile of goes (`_own_kept_apart`), instead of a new profile."""
    resolution = resolve(identifiers, owners)
    profile = own
    if resolution.profile_id is not None:
        found = read.get(resolution.profile_id)
        profile = found if found is not None else await live_profile(tx, resolution.profile_id)
    merged_away: tuple[str, ...] = ()
    if profile is not None and resolution.other_profiles and policy.protection.automatic_merges:
        profile, merged_away = await _merge_linked(
            tx, profile, resolution, at=at, policy=policy, message_id=message_id, actor=actor, person=person
        )
    if profile is None:
        return await _create(tx, identifiers, build, at=at), merged_away
    known = profile.identifier_keys()
    new = [i for i in resolution.unclaimed if i.key not in known]
    additions, crowded = policy.protection.within_limits(profile, new)
    if crowded is not None:
        # Past a type's limit, a stronger new identifier is another person's; past the size bound alone
        # it is not (a new profile for it took the person's identify off their own profile). Past both,
        # the type's limit decides (another customer signing in through a full profile's mailbox).
        apart = someone_else(policy.protection.past_type_limits(profile, new), resolution)
        created = await _create(tx, resolution.unclaimed, build, at=at) if apart else None
        apart_ids = [profile.id] + ([created.id] if created else [])
        await _record_refusal(tx, apart_ids, crowded, at=at, message_id=message_id)
        if created is not None:  # the stronger identifier's own profile, without the other's
            return created, merged_away
        # Else the identifiers past a limit stay nobody's, and the write lands without them.
    await tx.claim_identities(profile.id, additions, at)
    change = build(profile, additions)
    after = profile
    if written or touches_match_fields(change):  # the new blocking keys go into the change (index_change)
        after = index_change(Profile.from_document(apply_change(profile.to_document(), change)), change)
    await tx.update_profile(profile.id, change, expected_version=profile.version)
    return after, merged_away


async def _record_refusal(
    tx: StoreTransaction, profile_ids: list[str], reason: str, *, at: datetime, message_id: str | None
) -> None:
    """Why these profiles were kept apart, once for the same profiles and reason (`refusal_id`)."""
    await tx.record_refusal(
        MergeRefusal(
            _id=refusal_id(profile_ids, reason), at=at, profile_ids=profile_ids, reason=reason, message_id=message_id
        )
    )


async def _create(
    tx: StoreTransaction, identifiers: list[Identifier], build: ChangeBuilder, *, at: datetime
) -> Profile:
    """A new profile holding `identifiers`, with the write's change."""
    fresh = new_profile(new_profile_id(), at)
    document = apply_change(fresh.to_document(), build(fresh, identifiers))
    created = refresh_keys(Profile.from_document(document))
    await tx.claim_identities(created.id, identifiers, at)
    await tx.insert_profile(created)
    return created


async def _merge_linked(
    tx: StoreTransaction,
    target: Profile,
    resolution: Resolution,
    *,
    at: datetime,
    policy: IdentityPolicy,
    message_id: str | None,
    actor: str,
    person: MatchFields | None,
) -> tuple[Profile, tuple[str, ...]]:
    """The identifiers of one event or upsert belong to several profiles: they are one person.
    Returns the target as merged and the profiles merged into it (none when protection refused).
    Unless two of them are two people's (`_two_people`): the write then goes, unmerged, to the one
    its own names and birth date agree with best (`person`), else to the target."""
    others: dict[str, Profile] = {}
    for profile_id in sorted(resolution.other_profiles):
        other = await live_profile(tx, profile_id)
        if other is not None and other.id != target.id:
            others[other.id] = other
    if not others:
        return target, ()
    refusal = policy.protection.refusal([target, *others.values()], resolution.unclaimed)
    if refusal is not None:
        await _record_refusal(tx, [target.id, *others], refusal, at=at, message_id=message_id)
        return target, ()
    if policy.protection.households_apart and (apart := await _two_people(tx, target, others)):
        await _record_refusal(tx, [target.id, *apart], ANOTHER_PERSON, at=at, message_id=message_id)
        if person is not None:
            best = max([target, *(others[profile_id] for profile_id in apart)], key=lambda p: _agreement(person, p))
            if best is not target:
                return best, ()
        others = {profile_id: other for profile_id, other in others.items() if profile_id not in apart}
        if not others:
            return target, ()
    reason = "automatic: one " + ("event" if message_id else "write") + " named identifiers of each profile"
    _, merged = await merge_in_transaction(
        tx, target, list(others.values()), reason=reason, actor=actor, at=at, rules=policy.rules, automatic=True
    )
    return merged, tuple(others)
