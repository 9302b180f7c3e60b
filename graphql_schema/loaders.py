"""Per-request DataLoaders: a field that reads the store for each parent item (a segment event's
profile, a member's merge history, a segment's members…) asks its loader, which gathers the keys of
one level of the tree into one store call: a list of N items costs one call per level, not N.

A set belongs to one request and is never shared: what a caller may see depends on its scopes,
applied by the types after loading. A WebSocket connection's context outlives each operation (and
a subscription runs once per event), so its loaders batch without caching: nothing read for one
event is served to the next.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Hashable, Mapping
from dataclasses import dataclass
from datetime import datetime
from functools import cached_property
from typing import TypeVar

from strawberry.dataloader import DataLoader

from app.bootstrap import Services
from app.domain.merge import MergeRecord, MergeRefusal
from app.domain.paging import Window
from app.domain.privacy import ConsentDecision
from app.domain.profile import Interaction, Profile
from app.domain.profile_query import InteractionFilter
from app.domain.segments.segment import Segment
from app.services import history, merging, privacy, profile_reads, profiles
from app.services.history import HistoryWindow

K = TypeVar("K", bound=Hashable)
V = TypeVar("V")
G = TypeVar("G", bound=Hashable)


@dataclass(frozen=True, slots=True)
class MemberPage:
    """A segment's page of members, as `members(first, after, last, before)` asks for it."""

    segment_id: str
    window: Window[str]


@dataclass(frozen=True, slots=True)
class HistoryPage:
    """The full-history read of a profile's `interactions(...)` page."""

    profile_id: str
    window: HistoryWindow
    where: InteractionFilter


@dataclass(frozen=True, slots=True)
class ConsentPage:
    """A profile's `consentHistory(last)`."""

    profile_id: str
    last: int


@dataclass(frozen=True, slots=True)
class InteractionCount:
    """A profile's `interactions(types, channels) { totalCount }`, counted by the store."""

    profile_id: str
    where: InteractionFilter


def _each(fetch: Callable[[list[K]], Awaitable[Mapping[K, V]]], missing: V) -> Callable[[list[K]], Awaitable[list[V]]]:
    """A batch function from a bulk read answering id → value (`missing` for ids it leaves out)."""

    async def load(keys: list[K]) -> list[V]:
        found = await fetch(list(dict.fromkeys(keys)))
        return [found.get(key, missing) for key in keys]

    return load


def _grouped(
    group: Callable[[K], G], fetch: Callable[[G, list[K]], Awaitable[Mapping[K, V]]]
) -> Callable[[list[K]], Awaitable[list[V]]]:
    """A batch function for keys that carry arguments besides the id: one bulk read per set of
    arguments (one in practice: a field's arguments are the same for every parent)."""

    async def load(keys: list[K]) -> list[V]:
        groups: dict[G, list[K]] = {}
        for key in dict.fromkeys(keys):
            groups.setdefault(group(key), []).append(key)
        found: dict[K, V] = {}
        for shared, members in groups.items():
            found |= await fetch(shared, members)
        return [found[key] for key in keys]

    return load


class Loaders:
    """The request's loaders, each made the first time a field asks for it (a request uses few of
    them, and the personalisation query none: making all of them was ~5% of its cost)."""

    def __init__(self, services: Services, *, cache: bool) -> None:
        self._store = services.store
        self._max_page_size = services.settings.max_page_size
        self._cache = cache

    @cached_property
    def profile(self) -> DataLoader[str, Profile | None]:
        """A profile by id, merges followed (`profile_reads.get_profile`)."""
        no_profile: Profile | None = None
        return DataLoader(_each(self.read_profiles, no_profile), cache=self._cache)

    async def read_profiles(self, ids: list[str]) -> Mapping[str, Profile | None]:
        """What `profile` loads, for a list that reads its items' profiles at once (graphql_schema/look_ahead.py)."""
        return await profile_reads.get_profiles(self._store, ids)

    @cached_property
    def segment(self) -> DataLoader[str, Segment | None]:
        no_segment: Segment | None = None
        return DataLoader(_each(self.read_segments, no_segment), cache=self._cache)

    async def read_segments(self, ids: list[str]) -> Mapping[str, Segment | None]:
        """What `segment` loads, for a list that reads its items' segments at once."""
        return await self._store.get_segments(ids)

    @cached_property
    def member_count(self) -> DataLoader[str, int]:
        return DataLoader(_each(self._store.member_counts, 0), cache=self._cache)

    @cached_property
    def segment_entries(self) -> DataLoader[str, dict[str, datetime]]:
        """segment id → when the profile last entered it, by profile id (`Profile.segmentMemberships`)."""
        no_entries: dict[str, datetime] = {}
        return DataLoader(_each(self._store.segment_entries, no_entries), cache=self._cache)

    @cached_property
    def members(self) -> DataLoader[MemberPage, profiles.Page]:
        store, max_page_size = self._store, self._max_page_size

        async def member_pages(window: Window[str], keys: list[MemberPage]) -> dict[MemberPage, profiles.Page]:
            pages = await profiles.member_pages(
                store, [k.segment_id for k in keys], window, max_page_size=max_page_size
            )
            return {k: pages[k.segment_id] for k in keys}

        return DataLoader(_grouped(lambda k: k.window, member_pages), cache=self._cache)

    @cached_property
    def history(self) -> DataLoader[HistoryPage, list[Interaction]]:
        store = self._store

        async def history_reads(
            shared: tuple[HistoryWindow, InteractionFilter], keys: list[HistoryPage]
        ) -> dict[HistoryPage, list[Interaction]]:
            window, where = shared
            read = await history.histories(store, [k.profile_id for k in keys], window, where=where)
            return {k: read[k.profile_id] for k in keys}

        return DataLoader(_grouped(lambda k: (k.window, k.where), history_reads), cache=self._cache)

    @cached_property
    def interaction_count(self) -> DataLoader[InteractionCount, int]:
        store = self._store

        async def interaction_counts(
            where: InteractionFilter, keys: list[InteractionCount]
        ) -> dict[InteractionCount, int]:
            found = await store.count_interactions([k.profile_id for k in keys], where)
            return {k: found[k.profile_id] for k in keys}

        return DataLoader(_grouped(lambda k: k.where, interaction_counts), cache=self._cache)

    @cached_property
    def merge_history(self) -> DataLoader[str, list[MergeRecord]]:
        store, no_merges = self._store, list[MergeRecord]()
        return DataLoader(_each(lambda ids: merging.merge_histories(store, ids), no_merges), cache=self._cache)

    @cached_property
    def merge_refusals(self) -> DataLoader[str, list[MergeRefusal]]:
        store, no_refusals = self._store, list[MergeRefusal]()
        return DataLoader(_each(lambda ids: merging.merge_refusals_of(store, ids), no_refusals), cache=self._cache)

    @cached_property
    def consent_history(self) -> DataLoader[ConsentPage, list[ConsentDecision]]:
        store = self._store

        async def newest(last: int, keys: list[ConsentPage]) -> dict[ConsentPage, list[ConsentDecision]]:
            found = await privacy.consent_histories(store, [k.profile_id for k in keys], last=last)
            return {k: found.get(k.profile_id, []) for k in keys}

        return DataLoader(_grouped(lambda k: k.last, newest), cache=self._cache)
