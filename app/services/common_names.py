"""The given names people are given in a store: those COMMON_GIVEN_NAME profiles or more hold. The
rules scorer reads two of them one letter apart that sound otherwise (Maria/Marta) as two people's
names rather than one mistyped (`scoring.read_apart`): a typo makes a name few profiles hold.

Counted from the blocking-key index (one given-name key a profile: at 86,583 profiles, 9,665 keys
read in 22-32 ms on SQLite; MongoDB reads every live profile's keys). A process counts a store's
names on its first request that scores pairs, then again in the background once they are
CACHE_SECONDS old, the requests meanwhile reading the names counted before: a name becomes
common over many writes, and no lookup waits for a count but the first.
"""

from __future__ import annotations

import asyncio
import logging
import time
import weakref
from typing import Any

from app.domain.matching.blocking import GIVEN_NAME_KEY, given_names_held
from app.domain.matching.scoring import COMMON_GIVEN_NAME
from app.services.ports import ProfileStore

log = logging.getLogger("cdp.matching")

CACHE_SECONDS = 60.0

_counted: weakref.WeakKeyDictionary[Any, tuple[float, frozenset[str]]] = weakref.WeakKeyDictionary()
_counting: weakref.WeakKeyDictionary[Any, asyncio.Task[frozenset[str]]] = weakref.WeakKeyDictionary()


async def common_given_names(store: ProfileStore) -> frozenset[str]:
    """The store's given names (`MatchFields.first_joined`) held by COMMON_GIVEN_NAME profiles or
    more, as last counted (see the module); counted now when never counted in this process."""
    counted = _counted.get(store)
    if counted is None:
        return await _count(store)
    if time.monotonic() >= counted[0] + CACHE_SECONDS:
        _count_in_background(store)
    return counted[1]


async def count_given_names(store: ProfileStore) -> frozenset[str]:
    """Count the store's common given names now, for every request after this one to read."""
    names = given_names_held(await store.key_counts(GIVEN_NAME_KEY), COMMON_GIVEN_NAME)
    _counted[store] = (time.monotonic(), names)
    return names


async def _count(store: ProfileStore) -> frozenset[str]:
    """The store's count, awaited: the requests arriving while it runs wait for that one."""
    return await asyncio.shield(_counting_task(store))


def _count_in_background(store: ProfileStore) -> None:
    _counting_task(store)


def _counting_task(store: ProfileStore) -> asyncio.Task[frozenset[str]]:
    """The store's count running now, or a new one: one count a store at a time."""
    task = _counting.get(store)
    if task is None or task.done():
        task = _counting[store] = asyncio.ensure_future(count_given_names(store))
        task.add_done_callback(_report)
    return task


def _report(task: asyncio.Task[frozenset[str]]) -> None:
    if not task.cancelled() and (error := task.exception()) is not None:
        log.warning("common given names: the count failed (the names counted before, if any, stay): %s", error)
