"""Paging through a profile's interactions, newest first.

The first pages come from the profile's embedded `recent` list (no extra database call: the
frontend's "last 10 interactions" costs nothing beyond the profile read); a page that reaches past
it continues from the full history, and the client cannot tell the difference.
"""

from __future__ import annotations

from collections.abc import Collection
from dataclasses import dataclass

from app.domain.profile import Interaction, Profile
from app.domain.profile_query import InteractionFilter, InteractionPosition
from app.services.ports import ProfileStore
from app.services.profiles import check_page_size


@dataclass(frozen=True, slots=True)
class InteractionPage:
    interactions: list[Interaction]
    has_next: bool


def position_of(interaction: Interaction) -> InteractionPosition:
    return InteractionPosition(interaction.timestamp, interaction.message_id)


def _is_before(interaction: Interaction, position: InteractionPosition | None) -> bool:
    if position is None:
        return True
    return (interaction.timestamp, interaction.message_id) < (position.timestamp, position.message_id)


async def interactions_page(
    store: ProfileStore,
    profile: Profile,
    *,
    first: int,
    after: InteractionPosition | None,
    where: InteractionFilter,
    max_page_size: int,
) -> InteractionPage:
    embedded = embedded_page(profile, first=first, after=after, where=where, max_page_size=max_page_size)
    if embedded is not None:
        return embedded
    return page_of(await store.list_interactions(profile.id, before=after, where=where, limit=first + 1), first)


def embedded_page(
    profile: Profile, *, first: int, after: InteractionPosition | None, where: InteractionFilter, max_page_size: int
) -> InteractionPage | None:
    """The page when the embedded list answers it; None when it continues from the full history
    (then read `first + 1` interactions from the store, and cut them with `page_of`)."""
    check_page_size(first, maximum=max_page_size)
    candidates = [i for i in profile.recent if _is_before(i, after) and where.matches(i.type, i.channel)]
    recent_holds_everything = profile.stats.events_total <= len(profile.recent)
    if len(candidates) > first or recent_holds_everything:
        return InteractionPage(candidates[:first], len(candidates) > first)
    return None


def page_of(read: list[Interaction], first: int) -> InteractionPage:
    """A page from `first + 1` interactions read from the full history."""
    return InteractionPage(read[:first], len(read) > first)


async def histories(
    store: ProfileStore,
    profile_ids: Collection[str],
    *,
    before: InteractionPosition | None,
    where: InteractionFilter,
    limit: int,
) -> dict[str, list[Interaction]]:
    """The full-history read of `interactions_page` for many profiles at once (one store call)."""
    return await store.interactions_of_profiles(profile_ids, before=before, where=where, limit=limit)
