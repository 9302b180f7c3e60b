"""The learned match model: estimated by EM from the store's own candidate pairs (the pairs sharing
a blocking key, as the review list scores them; a sample of MAX_PAIRS of them in a larger store),
stored with its version in the store's meta, and used by `mergeCandidates`, the review list and
automatic fuzzy merges once it exists and separates matches from non-matches; until then (too few
pairs, or an estimate that reads otherwise) the rules scorer answers. Every candidate names the
scorer that answered.

Re-estimated by `keep_estimating` (the server's schedule, CDP_MATCH_MODEL_EVERY_MINUTES) and on
demand by `estimate_model` (`python -m app match-model`).
"""

from __future__ import annotations

import asyncio
import json
import logging
import secrets
import time
import uuid
import weakref
import zlib
from collections.abc import Collection
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from app.domain.clock import now
from app.domain.matching import MatchFields, MatchModel, PairScorer, RulesScorer, score_pair
from app.domain.matching.fields import match_fields
from app.domain.matching.learned import Vector, comparison, estimate, value_frequencies
from app.services.common_names import common_given_names
from app.services.key_groups import (
    KeyGroup,
    SeenPairs,
    candidate_pair_count,
    key_group_chunks,
    let_go,
    unseen_pairs,
)
from app.services.leases import hold_for
from app.services.ports import ProfileStore, StoreTransaction
from app.services.profile_writes import with_retries

log = logging.getLogger("cdp.matching")

META_KEY = "matchModel"
ROUND_LEASE = "matchModelRound"
ROUND_SHARE = 0.9  # of the period: the next round's holder, whichever process, finds it over
# Fewer candidate pairs than this and the model is not estimated: the rules scorer answers. FEBRL1,
# 1,000 records, gives 840 (F1 0.905 with the rules, 0.981 learned on them).
MIN_PAIRS = 500
# The most pairs one estimation compares: enough for every level of every field. A store with more
# candidate pairs is sampled, each pair with the same chance whichever key's group holds it: the first
# 200,000 in key order were a store's address and birth-date groups' pairs at 100,000 profiles, where a
# shared given name is rare among strangers (u 0.007, +7 bits), while 2.9 of its 4.9 million candidate
# pairs shared a given name (the precision of one profile's candidates there: 0.37).
MAX_PAIRS = 200_000
_HASHES = 1 << 32  # crc32's values
# The stored model's version and time, written after the model: each use reads this small row, so
# every process uses a new model from its next request on (the model itself, up to hundreds of KB
# with its value frequencies, is read again only when this changes).
STAMP_KEY = "matchModelStamp"
# How long a process keeps the model it read before reading the store's again, whatever the stamp
# says (a process stopped between writing a model and its stamp left the stamp behind).
CACHE_SECONDS = 60.0
# An erasure is dated when it begins: one dated this long before an estimate began may still have
# been committing when the estimate read its profiles.
ERASURE_SLACK = timedelta(minutes=1)
ERASED_KEY = "matchModelErasedAt"  # when a person was last erased: an estimate begun before it is not stored


@dataclass(frozen=True, slots=True)
class _Kept:
    """The model a process answers with, as `current_scorer` read it for a store."""

    stamp: str | None
    until: float  # when it is read again, whatever the stamp says
    text: str | None  # the stored document it was read from
    model: MatchModel | None  # None: the rules answer (no model stored, or one that does not separate)


_cache: weakref.WeakKeyDictionary[Any, _Kept] = weakref.WeakKeyDictionary()


async def stored_model(store: ProfileStore) -> MatchModel | None:
    return _model_of(await store.read_meta(META_KEY))


def _model_of(text: str | None) -> MatchModel | None:
    return MatchModel.from_document(json.loads(text)) if text else None


async def current_scorer(store: ProfileStore) -> PairScorer:
    """The learned model's scorer when the store holds one that separates matches, else the rules
    (with the store's common given names: `common_names`). The model read is kept until the stamp
    changes or CACHE_SECONDS pass; read again then and found the same (no new estimate, no erasure
    since), the model kept goes on answering: its memos (each bound, each level's bits, each name's
    rarity) stay warm, where a model made anew every minute started them cold."""
    stamp = await store.read_meta(STAMP_KEY)
    kept = _cache.get(store)
    if kept is None or kept.stamp != stamp or time.monotonic() >= kept.until:
        text = await store.read_meta(META_KEY)
        if kept is not None and text == kept.text:
            model = kept.model
        else:
            read = _model_of(text)
            model = read if read is not None and read.separates() else None
        kept = _Kept(stamp, time.monotonic() + CACHE_SECONDS, text, model)
        _cache[store] = kept
    return kept.model if kept.model is not None else RulesScorer(await common_given_names(store))


async def forget_erased(tx: StoreTransaction, erased: Collection[str]) -> None:
    """Take the names of the profiles `erased` (ids; `tx` erases them after this) out of the stored
    model's value frequencies, in the same transaction: the model keeps names two or more profiles
    share under a keyed hash with its key beside it, so a person whose duplicates shared a rare name
    could be found there after the erasure (by hashing a list of names), until the next estimate,
    which may never come. The profiles are read only when a model is stored; one made after the
    estimate was not counted in it. The erasure is noted (ERASED_KEY), in the same transaction, for
    an estimate running meanwhile, which then stores nothing."""
    await tx.write_meta(ERASED_KEY, now().isoformat())
    text = await tx.read_meta(META_KEY)
    if not text:
        return
    stored = MatchModel.from_document(json.loads(text))
    profiles = (await tx.get_profiles(erased)).values()
    model = stored.forgetting(match_fields(p) for p in profiles if p.created_at <= stored.estimated_at)
    if model is None:
        return
    await tx.write_meta(META_KEY, json.dumps(model.to_document()))
    # A new stamp: every process reads the model again at its next use.
    await tx.write_meta(STAMP_KEY, f"v{model.version} {model.estimated_at.isoformat()} {uuid.uuid4().hex[:8]}")


async def estimate_model(
    store: ProfileStore, *, min_pairs: int = MIN_PAIRS, max_pairs: int = MAX_PAIRS
) -> MatchModel | None:
    """Estimate a new version from the store's candidate pairs and store it; None (nothing stored)
    when the store has fewer than `min_pairs` pairs, or a person was erased during the estimate."""
    started = now()
    vectors, profiles = await _comparison_vectors(store, max_pairs)
    pairs = sum(count for count, _ in vectors.values())
    if pairs < min_pairs:
        log.info("match model: %d candidate pairs, fewer than %d: the rules scorer answers", pairs, min_pairs)
        return None
    previous = await stored_model(store)
    version = previous.version + 1 if previous is not None else 1
    model = await asyncio.to_thread(
        lambda: estimate(
            vectors, version=version, at=now(), frequencies=value_frequencies(profiles, salt=secrets.token_hex(16))
        )
    )
    await let_go(profiles)

    async def store_unless_erased(tx: StoreTransaction) -> bool:
        # In one transaction with the check: an erasure committing in between took its names out of
        # the model stored before this one, and this one would have brought them back. Writing the
        # mark too makes a MongoDB erasure running at once conflict with this write (one retries).
        erased = await tx.read_meta(ERASED_KEY)
        if erased and datetime.fromisoformat(erased) >= started - ERASURE_SLACK:
            return False
        await tx.write_meta(ERASED_KEY, erased or "")
        await tx.write_meta(META_KEY, json.dumps(model.to_document()))
        await tx.write_meta(STAMP_KEY, f"v{model.version} {model.estimated_at.isoformat()}")
        return True

    if not await with_retries(store, store_unless_erased):
        # Its counts may hold the names of someone erased meanwhile, taken out of the stored model.
        log.info("match model: a person was erased during the estimate; estimated again at the next round")
        return None
    _cache.pop(store, None)
    log.info(
        "match model v%d from %d pairs in %d iterations (match share %.3f)%s",
        model.version,
        model.pairs_used,
        model.iterations,
        model.match_share,
        "" if (why := model.why_not_used()) is None else f": not used ({why}), the rules scorer answers",
    )
    return model


async def _comparison_vectors(
    store: ProfileStore, max_pairs: int
) -> tuple[dict[Vector, tuple[int, float]], list[MatchFields]]:
    """Each distinct comparison vector of the candidate pairs, with its count and the rules scorer's
    mean probability (where EM starts); and the profiles compared (their names' frequencies)."""
    fields: dict[str, MatchFields] = {}
    seen = SeenPairs()
    found: dict[Vector, tuple[int, float]] = {}
    share = min(1.0, max_pairs / max(1, await candidate_pair_count(store)))
    try:
        async for groups in key_group_chunks(store, fields):
            if not await asyncio.to_thread(_compare_chunk, groups, fields, seen, found, max_pairs, share):
                break
        profiles = list(fields.values())
    finally:
        await let_go(*seen.sets, fields)
    return _means(found), profiles


def _compare_chunk(
    groups: list[KeyGroup],
    fields: dict[str, MatchFields],
    seen: SeenPairs,
    found: dict[Vector, tuple[int, float]],
    max_pairs: int,
    share: float,
) -> bool:
    """Adds the chunk's pairs not compared before to `found` (on a worker thread, one chunk at a
    time), those of the sample when `share` < 1 (`in_sample`); False once `max_pairs` pairs are
    compared."""

    def left_out(_key: str, a: str, b: str) -> bool:
        return not in_sample(a, b, share)

    for a, b in unseen_pairs(groups, fields, seen, left_out if share < 1.0 else None):
        scored = score_pair(fields[a], fields[b])
        vector = comparison(scored.reasons)
        count, total = found.get(vector, (0, 0.0))
        found[vector] = (count + 1, total + scored.score)
        if len(seen) >= max_pairs:
            return False
    return True


def in_sample(a: str, b: str, share: float) -> bool:
    """Whether the pair of profiles `a` < `b` is among the `share` of candidate pairs an estimate
    compares: decided by a hash of the two ids, so every key the two share decides alike, and the
    same store gives the same sample (and the same model) in any process."""
    return zlib.crc32(f"{a}\0{b}".encode()) < share * _HASHES


def _means(found: dict[Vector, tuple[int, float]]) -> dict[Vector, tuple[int, float]]:
    return {vector: (count, total / count) for vector, (count, total) in found.items()}


async def keep_estimating(store: ProfileStore, *, every_minutes: float) -> None:
    """The schedule the server runs: a first estimate soon after start, then one every
    `every_minutes`. Failures are logged and retried at the next round."""
    holder = uuid.uuid4().hex  # this process's schedule
    await asyncio.sleep(60)
    while True:
        try:
            await estimate_this_round(store, holder, every_minutes=every_minutes)
        except Exception:
            log.exception("match model estimation failed; it is retried at the next round")
        await asyncio.sleep(every_minutes * 60)


async def estimate_this_round(store: ProfileStore, holder: str, *, every_minutes: float) -> MatchModel | None:
    """`estimate_model`, unless another process's schedule (every worker runs one) took this round:
    each round is a lease in the store, held for most of the period and never given back, so that
    one estimate is made a period whatever the number of workers. None: not this process's round."""
    if not await hold_for(store, ROUND_LEASE, holder, ROUND_SHARE * timedelta(minutes=every_minutes)):
        return None
    return await estimate_model(store)
