"""Fuzzy merge candidates: profiles that probably belong to one person although they share no
identifier. Look-alikes are found through the blocking-key index the stores keep on every write
(never by comparing all pairs), then scored by `app.domain.matching`.

- `candidates_for_profile`: one profile against the profiles sharing one of its keys, then against
  theirs, for the profiles linked to it through one of its candidates (milliseconds);
- the whole store's pairs, a steward's review list: `app.services.review_list`;
- `merge_lookalikes`: the optional automatic merge above `IdentityPolicy.fuzzy_merge_score`.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
from collections.abc import Collection, Sequence
from dataclasses import dataclass

from app.domain.errors import DomainError, InvalidInput, NotFound
from app.domain.matching import (
    DEFAULT_MIN_SCORE,
    Candidate,
    MatchFields,
    PairScorer,
    candidates_for,
    match_fields,
    with_links,
)
from app.domain.matching.blocking import GIVEN_NAME_KEY, given_name_alone, lookup_keys, names_key
from app.domain.matching.index import MatchView
from app.domain.matching.links import MIN_LINK_STEP
from app.domain.merge import MergeRefusal, kept_apart
from app.domain.profile import Profile
from app.services.identity_policy import IdentityPolicy
from app.services.match_model import current_scorer
from app.services.merge_steps import refusal_id
from app.services.merging import merge_profiles
from app.services.ports import ProfileStore, StoreTransaction
from app.services.profile_changes import UNHEARD, ProfileChanges
from app.services.profile_reads import get_profile
from app.services.profile_writes import with_retries

# One profile's lookup passes over the keys shared by more than MAX_LOOKUP_BLOCK profiles (the review
# list compares those up to MAX_BLOCK_SIZE pair by pair, see blocking.py), and a profile is compared
# with at most MAX_LOOKALIKES others: the cost stays bounded whatever the data. At 100,000 generated
# profiles, 33 of 84,261 true pairs share only keys held by more than 100 (19 more than 150), one of
# them scoring the default threshold, while those keys made the slowest lookups twice as long.
MAX_LOOKUP_BLOCK = 100
MAX_LOOKALIKES = 1000
MAX_CANDIDATES = 1000
# Links are followed through a profile's best candidates only, one lookup each, and only through the
# narrow keys of each (held by at most MAX_LINK_BLOCK profiles: a birth date, a mailbox, a phone, an
# address, a rare name): the wide name blocks were read for the profile itself, and a candidate's
# candidate mostly shares more than a name with it. The review list (`review_list`) follows every
# key, so it may list a few links more. At 100,000 generated profiles, links through keys held by 26
# to 50 profiles changed one candidate of 33,188 (20,000 lookups; a wrong pair) and cost a tenth of
# a lookup's time, a sixth of its p99.
MAX_LINKED_THROUGH = 10
MAX_LINK_BLOCK = 25

log = logging.getLogger("cdp.matching")


def check_min_score(min_score: float) -> None:
    if not 0.0 <= min_score <= 1.0:
        raise InvalidInput(f"minScore must be in [0, 1], got {min_score}", field="minScore")


def check_request(min_score: float, first: int) -> None:
    check_min_score(min_score)
    if not 1 <= first <= MAX_CANDIDATES:
        raise InvalidInput(f"first must be between 1 and {MAX_CANDIDATES}, got {first}", field="first")


async def candidates_for_profile(
    store: ProfileStore, profile_id: str, *, min_score: float = DEFAULT_MIN_SCORE, first: int = 20
) -> list[Candidate]:
    """The best look-alikes of one profile (a merged-away id stands for its survivor), best first:
    those sharing a key with it, and those linked to it through one of them."""
    check_request(min_score, first)
    profile = await _target(store, profile_id)
    score = await current_scorer(store)
    keys: dict[str, Sequence[str]] = {profile.id: profile.blocking_keys}
    fields = {profile.id: profile.fields}
    read: dict[str, MatchView] = {}
    lookup = _Lookup(store, score, keys, fields, read)
    (found,) = await lookup.lookalikes([profile.id], min_score, MAX_LOOKUP_BLOCK)
    step_score = max(min_score, MIN_LINK_STEP)  # links go through no weaker resemblance
    # Best first: those past the first weaker than a step are weaker still.
    linked = list(itertools.takewhile(lambda c: c.score >= step_score, found[:MAX_LINKED_THROUGH]))
    # What a link's lookup need not score: `with_links` lists nothing through it that the profile
    # resembles at least as much as the link (a product is never above the link's own score).
    unlisted = [{profile.id, *(c.b for c in found if c.score >= link.score)} for link in linked]
    neighbours = {profile.id: found}
    links = [link.b for link in linked]
    neighbours.update(zip(links, await lookup.lookalikes(links, step_score, MAX_LINK_BLOCK, unlisted), strict=True))
    return with_links(profile.id, neighbours, fields, min_score, score)[:first]


async def _target(store: ProfileStore, profile_id: str) -> MatchView:
    """The profile asked about, as the matcher reads it: a live profile's match view (its few match
    fields, where reading the whole profile decoded its history too), or a merged-away id's survivor,
    read whole through its merges."""
    found = await store.match_views([profile_id])
    if found:
        return found[0]
    profile = await _live(store, profile_id)
    return MatchView(profile.id, tuple(profile.blocking_keys), match_fields(profile))


@dataclass(frozen=True, slots=True)
class _Lookup:
    """One request's lookups: the keys and match fields of the profiles compared so far, and every
    look-alike read (compared or passed over), so that a link's lookup reads only those no lookup
    before it read (at 100,000 profiles, 82% of a link's look-alikes were read already)."""

    store: ProfileStore
    score: PairScorer
    keys: dict[str, Sequence[str]]
    fields: dict[str, MatchFields]
    read: dict[str, MatchView]

    async def lookalikes(
        self,
        profile_ids: Sequence[str],
        min_score: float,
        max_block: int,
        unlisted: Sequence[Collection[str]] | None = None,
    ) -> list[list[Candidate]]:
        """The candidates of each of `profile_ids` (each in `keys` and `fields`) among the profiles
        sharing one of its keys held by at most `max_block` profiles, but those of `unlisted` (one
        collection of ids for each: compared already, not to be listed); those compared are added to
        `keys` and `fields`. Their reads are made together (a link's lookup waited for the one
        before it, read after read): the ids sharing each one's keys at once, the look-alikes no
        lookup read before in one read, then the sole namesakes' confirmations at once. What each
        finds does not depend on the others: a look-alike compared for one is scored in full for
        the next, which its bound would have let through or left below `min_score` anyway. The loop
        is let go between two profiles' judging and between two profiles' scoring: a request
        arriving meanwhile (a frontend's profile read) waits for one link's work, not for all ten
        (through a server, beside two connections of lookups: its p99 4.47 -> 4.14 ms, medians of
        five rounds, the lookups as fast; one after another in process, the same within 2%)."""
        keys = [lookup_keys(self.fields[profile_id], self.keys[profile_id]) for profile_id in profile_ids]
        ids = await self._read(keys, max_block)
        left_out = unlisted or [()] * len(profile_ids)
        others: list[list[tuple[str, MatchFields]]] = []
        for judged in zip(profile_ids, keys, ids, left_out, strict=True):
            if others:
                await asyncio.sleep(0)  # requests waiting for the loop go between two profiles' judging
            others.append(self._kept(*judged, min_score))
        unique = await asyncio.gather(*map(self._sole_namesake, profile_ids, ids))
        found: list[list[Candidate]] = []
        for profile_id, kept, sole in zip(profile_ids, others, unique, strict=True):
            if found:
                await asyncio.sleep(0)
            found.append(candidates_for(self.fields[profile_id], profile_id, kept, min_score, self.score, sole))
        return found

    def _kept(
        self, profile_id: str, keys: Sequence[str], ids: Sequence[str], unlisted: Collection[str], min_score: float
    ) -> list[tuple[str, MatchFields]]:
        """The look-alikes `ids` of `profile_id` worth scoring, but `unlisted`. One whose names and
        birth date alone cap it below `min_score` (most of them: another birth date, another given
        name; for a learned model, with the contact fields both hold: `PairScorer.may_reach`) is
        passed over before its other fields are normalised, and so is one sharing only the
        given-name key under another surname, whichever scorer answers (that key is read for a
        surname typo: `blocking.given_name_alone`)."""
        target = MatchView(profile_id, tuple(self.keys[profile_id]), self.fields[profile_id])
        names = target.names
        given_name_lookup = None  # the keys read, when one is the given-name key
        if any(key.startswith(GIVEN_NAME_KEY) for key in keys):
            given_name_lookup = frozenset(keys)
        others: list[tuple[str, MatchFields]] = []
        for other_id in ids:
            if other_id in unlisted:
                continue
            if given_name_lookup is not None and self._given_name_alone(names, given_name_lookup, other_id):
                continue
            if other_id not in self.fields:
                other = self.read.get(other_id)
                if other is None or not self.score.may_reach(target, other, min_score):
                    continue  # gone since its id was read, or passed over
                self.keys[other_id] = other.blocking_keys
                self.fields[other_id] = other.fields
            others.append((other_id, self.fields[other_id]))
        return others

    def _given_name_alone(self, names: MatchFields, lookup: frozenset[str], other_id: str) -> bool:
        """`blocking.given_name_alone` of the look-alike `other_id` and a profile of `names` (its
        names: a view keeps them for `may_reach`, which asks next)."""
        other = self.fields.get(other_id)
        if other is None:
            view = self.read.get(other_id)
            if view is None:
                return False  # gone since its id was read: the loop passes it over
            other = view.names
        return given_name_alone(lookup, names, self._keys_of(other_id), other)

    async def _sole_namesake(self, profile_id: str, ids: Sequence[str]) -> tuple[str, ...]:
        """The look-alike whose names key only it and `profile_id` hold, if any: one read holding it,
        confirmed by the store (the key's block may be one the lookup passed over)."""
        key = names_key(self.keys[profile_id])
        if key is None:
            return ()
        holders = [i for i in ids if i != profile_id and key in self._keys_of(i)]
        if len(holders) != 1:
            return ()
        held = await self.store.profile_ids_sharing_keys([key], max_block=2, limit=2)
        return tuple(holders) if sorted(held) == sorted((profile_id, holders[0])) else ()

    def _keys_of(self, profile_id: str) -> Sequence[str]:
        if profile_id in self.keys:
            return self.keys[profile_id]
        view = self.read.get(profile_id)
        return view.blocking_keys if view is not None else ()

    async def _read(self, keys: Sequence[Sequence[str]], max_block: int) -> list[list[str]]:
        """For each of `keys`, the ids of the profiles sharing one of them held by at most
        `max_block`; those not read yet are read into `read`. The first lookup reads them in one go;
        later ones their ids first (side by side), then the views none read before in one read."""
        if not self.read and len(keys) == 1:
            found = await self.store.profiles_sharing_keys(keys[0], max_block=max_block, limit=MAX_LOOKALIKES)
            self.read.update((view.id, view) for view in found)
            return [[view.id for view in found]]
        ids = await asyncio.gather(
            *(self.store.profile_ids_sharing_keys(each, max_block=max_block, limit=MAX_LOOKALIKES) for each in keys)
        )
        missing = [i for i in dict.fromkeys(itertools.chain(*ids)) if i not in self.read and i not in self.fields]
        if missing:
            self.read.update((view.id, view) for view in await self.store.match_views(missing))
        return list(ids)


async def merge_lookalikes(
    store: ProfileStore, profile_ids: Sequence[str], policy: IdentityPolicy, *, changes: ProfileChanges = UNHEARD
) -> int:
    """Merge each profile with the look-alikes scoring at least `policy.fuzzy_merge_score` (when set):
    the oldest profile survives; merge protection applies as to any automatic merge. Returns merges."""
    threshold = policy.fuzzy_merge_score
    if threshold is None or not policy.protection.automatic_merges:  # CDP_AUTO_MERGE=false: none at all
        return 0
    merges = 0
    for profile_id in dict.fromkeys(profile_ids):
        try:
            merges += await _merge_with_lookalikes(store, profile_id, policy, threshold, changes)
        except DomainError as exc:
            # The write that asked is committed, and answers as such: a merge that cannot be made now
            # (a look-alike erased or merged meanwhile, the store out of reach) waits for the next write.
            log.warning("automatic fuzzy merge of profile %s not made: %s", profile_id, exc.message)
    return merges


async def _merge_with_lookalikes(
    store: ProfileStore, profile_id: str, policy: IdentityPolicy, threshold: float, changes: ProfileChanges
) -> int:
    try:
        found = await candidates_for_profile(store, profile_id, min_score=threshold, first=MAX_CANDIDATES)
    except NotFound:  # merged away by an earlier iteration
        return 0
    if not found:
        return 0
    group = [await _live(store, profile_id), *[await _live(store, c.b) for c in found]]
    members = await _not_kept_apart(store, list({p.id: p for p in group}.values()))
    if len(members) < 2 or await _refused(store, members, policy):
        return 0
    survivor, *others = sorted(members, key=lambda p: (p.created_at, p.id))
    best = max(found, key=lambda c: c.score)
    await merge_profiles(
        store,
        survivor.id,
        [o.id for o in others],
        reason=f"automatic: fuzzy match (score {best.score:.3f} >= {threshold}, {best.scorer})",
        actor="system",
        policy=policy,
        changes=changes,
        judged={p.id: p.version for p in members},  # as scored and checked against merge protection
        automatic=True,
    )
    return 1


async def _not_kept_apart(store: ProfileStore, group: list[Profile]) -> list[Profile]:
    """The group without those a steward separated from a profile before them in it (`kept_apart`)."""
    records = await store.merges_of_profiles([p.id for p in group])
    apart = kept_apart(r for held in records.values() for r in held)
    members: list[Profile] = []
    for profile in group:
        if not any(frozenset((kept.id, profile.id)) in apart for kept in members):
            members.append(profile)
    return members


async def _refused(store: ProfileStore, members: list[Profile], policy: IdentityPolicy) -> bool:
    refusal = policy.protection.refusal(members, [])
    if refusal is None:
        return False
    at = max(p.updated_at for p in members)

    async def record(tx: StoreTransaction) -> None:
        await tx.record_refusal(
            MergeRefusal(
                _id=refusal_id([p.id for p in members], refusal),
                at=at,
                profile_ids=[p.id for p in members],
                reason=refusal,
            )
        )

    async with store.batch():
        await with_retries(store, record)
    return True


async def _live(store: ProfileStore, profile_id: str) -> Profile:
    profile = await get_profile(store, profile_id)
    if profile is None:
        raise NotFound(f"no profile {profile_id}", field="profileId")
    return profile
