"""The store's blocking-key groups read many at a time, with the match fields of their profiles, for
the jobs that go through every candidate pair (the review list, the match model's estimate).

A chunk is one store read for many small groups, and the caller forms and scores its pairs in one
hop to a worker thread. Scored on the event loop, at 20,000 profiles with the serving process's
collector and thread settings, a 1 ms ticker on the loop saw p99 gaps of 66 ms (review list) and
36 ms (estimate), 30 and 34 of them over 50 ms; on worker threads, 5 and 4 ms. What a job held is
let go of on a worker thread too (`let_go`): the largest gap 80-110 ms -> 24-40 ms (review list),
52-88 ms -> 21-24 ms (estimate).
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable, Iterator
from typing import Any

from app.domain.matching import MatchFields
from app.domain.matching.blocking import NAMES_KEY, block_pair_count, block_pairs
from app.domain.matching.index import MatchView
from app.services.ports import ProfileStore

# Key groups whose profiles are read together: one store read for many small groups, not one each.
GROUPS_PER_READ = 256
# Items let go of between two chances for another thread to take the GIL (`let_go`).
DROP_SLICE = 2_000


# A key and the ids of the profiles holding it.
KeyGroup = tuple[str, list[str]]


async def key_group_chunks(
    store: ProfileStore,
    fields: dict[str, MatchFields],
    size: int = GROUPS_PER_READ,
    *,
    unique_names: list[tuple[str, str]] | None = None,
) -> AsyncIterator[list[KeyGroup]]:
    """Up to `size` key groups at a time, each a key and its profiles' ids; `fields` is filled
    with the match fields of every profile of the chunk before it is handed out (a profile read by an
    earlier chunk is not read again; one the store no longer holds is left out of the groups).
    `unique_names` gets each pair of profiles that alone hold their names key (`blocking.names_key`),
    smaller id first."""
    names: dict[str, str] = {}  # one string per id, however many groups and pairs name it
    chunk: list[KeyGroup] = []
    async for key, ids in store.blocking_groups():
        if unique_names is not None and len(ids) == 2 and key.startswith(NAMES_KEY):
            unique_names.append((min(ids), max(ids)))
        chunk.append((key, ids))
        if len(chunk) >= size:
            yield await _with_fields(store, chunk, fields, names)
            chunk = []
    if chunk:
        yield await _with_fields(store, chunk, fields, names)


async def _with_fields(
    store: ProfileStore, chunk: list[KeyGroup], fields: dict[str, MatchFields], names: dict[str, str]
) -> list[KeyGroup]:
    # Normalising a profile's match fields is tens of microseconds, and a chunk of large key groups
    # holds tens of thousands of profiles (1.6 s of the event loop in one piece on the bench's store
    # of 100,000): worker threads go through the chunk, the loop only awaits them and the read.
    missing = await asyncio.to_thread(_unread, chunk, names)
    views = await store.match_views(missing) if missing else []
    return await asyncio.to_thread(_named, chunk, views, fields, names)


def _unread(chunk: list[KeyGroup], names: dict[str, str]) -> list[str]:
    return list(dict.fromkeys(profile_id for _, ids in chunk for profile_id in ids if profile_id not in names))


def _named(
    chunk: list[KeyGroup], views: list[MatchView], fields: dict[str, MatchFields], names: dict[str, str]
) -> list[KeyGroup]:
    for view in views:
        names[view.id] = view.id
        fields[view.id] = view.fields
    return [(key, [names[profile_id] for profile_id in ids if profile_id in names]) for key, ids in chunk]


class SeenPairs:
    """The pairs a job has handed out, in many small sets rather than one: a set grows by copying all
    it holds in one C call, with the GIL held, and a set of millions of pairs (a review list of the
    bench's 100,000 profiles) held the event loop ~0.7 s each time it grew; a 256th of them, a 256th
    of that."""

    SHARDS = 256

    def __init__(self) -> None:
        self.sets: list[set[tuple[str, str]]] = [set() for _ in range(self.SHARDS)]
        self._count = 0

    def add(self, pair: tuple[str, str]) -> bool:
        """Adds `pair`; whether it was new."""
        shard = self.sets[hash(pair) % self.SHARDS]
        if pair in shard:
            return False
        shard.add(pair)
        self._count += 1
        return True

    def __len__(self) -> int:
        return self._count


def unseen_pairs(
    groups: list[KeyGroup],
    fields: dict[str, MatchFields],
    seen: SeenPairs,
    passed_over: Callable[[str, str, str], bool] | None = None,
) -> Iterator[tuple[str, str]]:
    """The pairs of a chunk's groups not handed out before (two profiles sharing several keys come
    once), each added to `seen`. A pair `passed_over(key, a, b)` (ids) leaves out of a key's group is
    not marked seen: another key the two share may still hand it out."""
    for key, ids in groups:
        for a, b in block_pairs(ids, fields):
            if passed_over is not None and passed_over(key, a, b):
                continue
            if seen.add((a, b)):
                yield a, b


async def candidate_pair_count(store: ProfileStore) -> int:
    """How many pairs the store's key groups hand out (`blocking.block_pair_count`), counted on the
    groups' sizes alone: a pair sharing several keys counts once for each."""
    return sum([block_pair_count(len(ids)) async for _, ids in store.blocking_groups()])


async def let_go(*held: dict[Any, Any] | set[Any] | list[Any]) -> None:
    """Empty a job's working set on a worker thread, a slice at a time, the collections' contents freed
    there. Freed when the job's coroutine returned, what a review list of 20,000 profiles held (234,000
    pairs seen, 16,000 pairs, 20,000 profiles' match fields) stopped the event loop 80-110 ms in one
    piece; emptied in slices, the GIL is handed over between two. Nothing else may hold `held`."""
    await asyncio.to_thread(_empty, held)


def _empty(held: tuple[dict[Any, Any] | set[Any] | list[Any], ...]) -> None:
    for found in held:
        while found:
            if isinstance(found, dict):
                for _ in range(min(DROP_SLICE, len(found))):
                    found.popitem()
            elif isinstance(found, set):
                for _ in range(min(DROP_SLICE, len(found))):
                    found.pop()
            else:
                del found[-DROP_SLICE:]
