"""Paging through a profile's interactions, newest first, from either end (Relay's `first`/`after`
and `last`/`before`), and counting them.

The first pages come from the profile's embedded `recent` list (no extra database call: the
frontend's "last 10 interactions" costs nothing beyond the profile read); a page that reaches past
it continues from the full history, and the client cannot tell the difference.
"""

from __future__ import annotations

from collections.abc import Collection
from typing import NamedTuple

from app.domain.paging import Window
from app.domain.profile import Interaction, Profile
from app.domain.profile_query import InteractionFilter, InteractionPosition
from app.services.ports import ProfileStore
from app.services.profiles import check_page_size

# A window over a history: positions in its order, newest first (`after`: older than, `before`: newer than).
HistoryWindow = Window[InteractionPosition]


class InteractionPage(NamedTuple):  # made for each of hundreds of members: half what a frozen dataclass costs
    interactions: list[Interaction]
    has_next: bool
    has_previous: bool


def position_of(interaction: Interaction) -> InteractionPosition:
    return InteractionPosition(interaction.timestamp, interaction.message_id)


def _key(position: InteractionPosition | Interaction) -> tuple[object, str]:
    return (position.timestamp, position.message_id)


def _inside(interaction: Interaction, window: HistoryWindow) -> bool:
    key = _key(interaction)
    return (window.after is None or key < _key(window.after)) and (window.before is None or key > _key(window.before))


async def interactions_page(
    store: ProfileStore, profile: Profile, window: HistoryWindow, *, where: InteractionFilter, max_page_size: int
) -> InteractionPage:
    embedded = embedded_page(profile, window, where=where, max_page_size=max_page_size)
    if embedded is not None:
        return embedded
    read = await store.list_interactions(
        profile.id,
        before=window.after,
        after=window.before,
        where=where,
        limit=window.size + 1,
        from_end=window.from_end,
    )
    return page_of(read, window)


def embedded_page(
    profile: Profile, window: HistoryWindow, *, where: InteractionFilter, max_page_size: int
) -> InteractionPage | None:
    """The page when the embedded list answers it; None when it needs the full history (then read it
    with `histories`, for every parent at once, and cut it with `page_of`)."""
    check_page_size(window.size, maximum=max_page_size, field=window.argument)
    recent = profile.recent
    if window.after is None and window.before is None and where.everything:  # a first page: most pages
        if not window.from_end:
            return embedded_first_page(profile, window.size)
        candidates = recent
    else:
        candidates = [i for i in recent if _inside(i, window) and where.matches(i.type, i.channel)]
    # `recent` is the newest part of the history: it holds the whole window when it holds everything,
    # or when the window's newer end (`before`) is within it.
    whole = profile.stats.events_total <= len(recent) or (
        window.before is not None and bool(recent) and _key(window.before) >= _key(recent[-1])
    )
    if whole or (not window.from_end and len(candidates) > window.size):
        return page_of(candidates, window)
    return None


def embedded_first_page(profile: Profile, size: int) -> InteractionPage | None:
    """`embedded_page` for the newest `size` interactions of every kind (a size already checked): a
    list of 300 members asking for their last 10 asks this 300 times, with no window nor filter made."""
    newest = embedded_newest(profile, size)
    return None if newest is None else InteractionPage(newest, len(profile.recent) > size, False)


def embedded_newest(profile: Profile, size: int) -> list[Interaction] | None:
    """The newest `size` interactions of every kind when the embedded list holds them (None: read the
    full history); a size already checked."""
    recent = profile.recent
    held = len(recent)
    return recent[:size] if held > size or profile.stats.events_total <= held else None


def page_of(read: list[Interaction], window: HistoryWindow) -> InteractionPage:
    """A page from the interactions read for `window` (newest first)."""
    if window.after is None and not window.from_end:  # a first page (of each of 300 members, say): no Cut
        return InteractionPage(read[: window.size], len(read) > window.size, False)
    cut = window.cut(read)
    return InteractionPage(cut.items, cut.has_next, cut.has_previous)


async def histories(
    store: ProfileStore, profile_ids: Collection[str], window: HistoryWindow, *, where: InteractionFilter
) -> dict[str, list[Interaction]]:
    """The full-history read of `interactions_page` for many profiles at once (one store call): for
    each, the `size + 1` interactions of the window nearest its asked end. (A position is in the
    history's order, newest first: the window's `after` is the store's `before`, older than it.)"""
    return await store.interactions_of_profiles(
        profile_ids,
        before=window.after,
        after=window.before,
        where=where,
        limit=window.size + 1,
        from_end=window.from_end,
    )


def embedded_count(profile: Profile, where: InteractionFilter) -> int | None:
    """How many interactions of the profile `where` matches, when its embedded list holds them all;
    None: the store counts them (`ProfileStore.count_interactions`)."""
    if profile.stats.events_total > len(profile.recent):
        return None
    if where.everything:
        return len(profile.recent)
    return sum(1 for i in profile.recent if where.matches(i.type, i.channel))
