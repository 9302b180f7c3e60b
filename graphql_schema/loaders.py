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
    def __init__(self, services: Services, *, cache: bool) -> None:
        store = services.store
        max_page_size = services.settings.max_page_size

        async def profiles_by_id(ids: list[str]) -> Mapping[str, Profile | None]:
            return await profile_reads.get_profiles(store, ids)

        async def member_pages(window: Window[str], keys: list[MemberPage]) -> dict[MemberPage, profiles.Page]:
            pages = await profiles.member_pages(
                store, [k.segment_id for k in keys], window, max_page_size=max_page_size
            )
            return {k: pages[k.segment_id] for k in keys}

        async def history_reads(
            shared: tuple[HistoryWindow, InteractionFilter], keys: list[HistoryPage]
        ) -> dict[HistoryPage, list[Interaction]]:
            window, where = shared
            read = await history.histories(store, [k.profile_id for k in keys], window, where=where)
            return {k: read[k.profile_id] for k in keys}

        async def interaction_counts(
            where: InteractionFilter, keys: list[InteractionCount]
        ) -> dict[InteractionCount, int]:
            found = await store.count_interactions([k.profile_id for k in keys], where)
            return {k: found[k.profile_id] for k in keys}

        no_profile: Profile | None = None
        no_segment: Segment | None = None
        no_merges: list[MergeRecord] = []
        no_refusals: list[MergeRefusal] = []
        no_decisions: list[ConsentDecision] = []
        no_entries: dict[str, datetime] = {}
        self.profile = DataLoader[str, Profile | None](_each(profiles_by_id, no_profile), cache=cache)
        """A profile by id, merges followed (`profile_reads.get_profile`)."""
        self.segment = DataLoader[str, Segment | None](_each(store.get_segments, no_segment), cache=cache)
        self.member_count = DataLoader[str, int](_each(store.member_counts, 0), cache=cache)
        self.segment_entries = DataLoader[str, dict[str, datetime]](
            _each(store.segment_entries, no_entries), cache=cache
        )
        """segment id → when the profile last entered it, by profile id (`Profile.segmentMemberships`)."""
        self.members = DataLoader[MemberPage, profiles.Page](_grouped(lambda k: k.window, member_pages), cache=cache)
        self.history = DataLoader[HistoryPage, list[Interaction]](
            _grouped(lambda k: (k.window, k.where), history_reads), cache=cache
        )
        self.interaction_count = DataLoader[InteractionCount, int](
            _grouped(lambda k: k.where, interaction_counts), cache=cache
        )
        self.merge_history = DataLoader[str, list[MergeRecord]](
            _each(lambda ids: merging.merge_histories(store, ids), no_merges), cache=cache
        )
        self.merge_refusals = DataLoader[str, list[MergeRefusal]](
            _each(lambda ids: merging.merge_refusals_of(store, ids), no_refusals), cache=cache
        )
        self.consent_history = DataLoader[str, list[ConsentDecision]](
            _each(lambda ids: privacy.consent_histories(store, ids), no_decisions), cache=cache
        )
