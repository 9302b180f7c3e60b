"""All computed traits of one profile, given the base's RFM boundaries: what the traits job writes.

A profile whose owner refused the `profiling` consent gets none (and loses those it had): RFM scores,
engagement rates and preferences are profiling. Without an explicit refusal they are computed.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from datetime import datetime
from typing import Any

from app.domain.profile import ComputedTraits, Interaction, Profile, Rfm
from app.domain.traits.engagement import engagement
from app.domain.traits.next_order import next_order_at
from app.domain.traits.preferences import preferred_categories
from app.domain.traits.rfm import PROSPECT, RfmBoundaries, rfm_values, segment_name

PROFILING = "profiling"
PROFILED_FIELDS = ("rfm", "computed")  # what profiling the person made: withdrawn with the consent


def profiling_refused(profile: Profile) -> bool:
    consent = profile.consents.get(PROFILING)
    return consent is not None and not consent.granted


def without_profiling(profile: Profile) -> Profile:
    """`profile` without what profiling made of it (RFM, computed traits) when its current profiling
    decision is a refusal: a merge or an unmerge rebuilds a profile from others and from old
    snapshots, which brought them back to a person who had refused, until the next traits job."""
    if not profiling_refused(profile) or (profile.rfm is None and profile.computed is None):
        return profile
    return profile.model_copy(update={"rfm": None, "computed": None})


def profiling_refused_in(document: Mapping[str, Any]) -> bool:
    """`profiling_refused` of a stored document (either store's form), without reading the rest of it."""
    consent = (document.get("consents") or {}).get(PROFILING) or {}
    return consent.get("granted") is False


def computed_traits(
    profile: Profile,
    interactions: Iterable[Interaction],
    category_of: Mapping[str, str],
    boundaries: RfmBoundaries,
    *,
    as_of: datetime,
) -> tuple[Rfm | None, ComputedTraits | None]:
    if profiling_refused(profile):
        return None, None
    values = rfm_values(profile.stats, as_of=as_of)
    if values is None:
        rfm = Rfm(segment=PROSPECT, computed_at=as_of)
    else:
        recency, frequency, monetary = boundaries.scores(values)
        rfm = Rfm(
            recency_score=recency,
            frequency_score=frequency,
            monetary_score=monetary,
            segment=segment_name(recency, frequency, monetary),
            computed_at=as_of,
        )
    computed = ComputedTraits(
        engagement=engagement(profile.stats, as_of=as_of),
        preferred_categories=preferred_categories(interactions, category_of, as_of=as_of),
        next_order_at=next_order_at(profile.stats),
        computed_at=as_of,
    )
    return rfm, computed
