"""The given names people are given in a store: those COMMON_GIVEN_NAME profiles or more hold. The
rules scorer reads two of them one letter apart that sound otherwise (Maria/Marta) as two people's
names rather than one mistyped (`scoring.read_apart`): a typo makes a name few profiles hold.
Counted from the blocking-key index (one given-name key a profile) and kept CACHE_SECONDS: at
86,583 profiles the count reads 9,665 keys in 22-32 ms, on a reader thread."""

from __future__ import annotations

import asyncio
import time
import weakref
from typing import Any

from app.domain.matching.blocking import GIVEN_NAME_KEY, given_names_held
from app.domain.matching.scoring import COMMON_GIVEN_NAME
from app.services.ports import ProfileStore

# How long a process keeps a store's names before counting again: a name becomes common over many
# writes, and a pair read as a typo meanwhile is listed as it was before the names were counted.
CACHE_SECONDS = 60.0

_cache: weakref.WeakKeyDictionary[Any, tuple[float, frozenset[str]]] = weakref.WeakKeyDictionary()
_counting: weakref.WeakKeyDictionary[Any, asyncio.Lock] = weakref.WeakKeyDictionary()


async def common_given_names(store: ProfileStore) -> frozenset[str]:
    """The store's given names (`MatchFields.first_joined`) held by COMMON_GIVEN_NAME profiles or
    more, as counted at most CACHE_SECONDS ago; requests arriving while they are counted wait for
    that count rather than making their own."""
    cached = _cache.get(store)
    if cached is not None and time.monotonic() < cached[0]:
        return cached[1]
    async with _counting.setdefault(store, asyncio.Lock()):
        cached = _cache.get(store)
        if cached is None or time.monotonic() >= cached[0]:
            names = given_names_held(await store.key_counts(GIVEN_NAME_KEY), COMMON_GIVEN_NAME)
            cached = _cache[store] = (time.monotonic() + CACHE_SECONDS, names)
    return cached[1]
