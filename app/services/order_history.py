"""A customer's orders: the embedded recent list when it holds them all, else one history query for
the newest ORDER_HISTORY_LIMIT (bounded: a heavy buyer's thousandth order says little more)."""

from __future__ import annotations

from app.domain.profile import Interaction, Profile
from app.domain.profile_query import InteractionFilter
from app.domain.traits.orders import ORDER, unique
from app.services.ports import ProfileStore

ORDER_HISTORY_LIMIT = 100


async def orders_of(store: ProfileStore, profile: Profile) -> list[Interaction]:
    """The profile's orders, newest first (at most ORDER_HISTORY_LIMIT beyond the recent list)."""
    recent = [i for i in profile.recent if i.type == ORDER]
    if len(recent) >= profile.stats.orders:
        return unique(recent)
    older = await store.list_interactions(
        profile.id, before=None, where=InteractionFilter(types=frozenset({ORDER})), limit=ORDER_HISTORY_LIMIT
    )
    return unique([*recent, *older])
