"""Rebuild what a profile derives from its history (counters, first/last times, visits, survey
answers, consent events, the embedded recent list) by replaying its interactions in time order.

Unmerges use it, so an unmerged profile counts exactly its own events, and also replay the fields
identify events set. A merge gives the same counts without replaying the history of the profile with
the most events (absorb_behaviour): a customer with 20,000 events held the writer ~1 s for each
anonymous visitor merged into them.
"""

from __future__ import annotations

from bisect import bisect_left, bisect_right, insort
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime

from app.domain.event_effects import (
    VISIT_GAP,
    behaviour_change,
    decided_at,
    event_of,
    is_visit,
    replayed_identify,
    visit_added,
)
from app.domain.events import EventType
from app.domain.profile import RECENT_INTERACTIONS_CAP, Interaction, Profile, Qualitative, Stats
from app.domain.profile_change import ProfileChange, apply_change
from app.domain.stored_behaviour import StoredBehaviour
from app.domain.traits.computed import without_profiling


def rebuild_behaviour(base: Profile, interactions: Iterable[Interaction]) -> Profile:
    """`base` with stats, survey answers and recent history recomputed from `interactions`.

    Identity fields, traits, preferences and consents given directly stay as in `base`; consent
    events in the history apply on top of them, newest decision per purpose winning.
    """
    fresh = Qualitative(preferences=base.qualitative.preferences)
    return _replayed(base, Stats(), fresh, [], interactions, visits=None)


def absorb_behaviour(
    base: Profile, kept: Profile, absorbed: Iterable[Interaction], nearby: Iterable[tuple[datetime, str, str]]
) -> Profile:
    """`base` with what `rebuild_behaviour` gives for the histories of `kept` and of the profiles
    merged with it (`absorbed`, their interactions), computed from `kept`'s behaviour as its events
    left it (stats, survey answers, recent list) and the absorbed events applied on top in time order.
    `nearby`: (time, type, channel) of `kept`'s interactions within VISIT_GAP of an absorbed visit
    (visit_windows), all that decides whether an absorbed visit event joins one of kept's visits.

    Counters, first/last times and the NPS answer come out as a replay's: each is a sum, a minimum or
    maximum, or the newest by time (of two at one instant, the lower). So do the recent list (the
    newest of kept's and the absorbed ones, by time then message id), and the ratings and consents
    where no absorbed one falls at the instant of one of kept's (`absorbs_exactly`). Visits are
    counted by where each absorbed visit event falls among the visit events of both (visit_added).
    `kept`'s own counts are taken as they stand: an event that came later than its recent list
    reaches keeps the approximation it was counted with (README, "Events"), and so does a message
    that landed on two profiles (a replay after its key was purged, under other identifiers).
    """
    qualitative = kept.qualitative.model_copy(update={"preferences": base.qualitative.preferences})
    visits = sorted(at for at, kind, channel in nearby if is_visit(kind, channel))
    return _replayed(base, kept.stats, qualitative, kept.recent, absorbed, visits=visits)


def absorbs_exactly(kept: Profile, others: Iterable[Profile], absorbed: Iterable[Interaction]) -> bool:
    """Whether `absorb_behaviour` gives exactly what a replay of every history gives. Not when an
    absorbed rating falls at the very instant of one of kept's ratings, or a consent decision (an
    absorbed event's, another profile's) at the instant of kept's for that purpose: a replay puts
    such twins in message id order (the rating listed first, the refusal whose source stands), which
    kept's stored ratings and consents no longer tell. The merge then replays every history."""
    rated = {rating.at for rating in kept.qualitative.ratings}
    decided = {(purpose, consent.at) for purpose, consent in kept.consents.items()}
    for profile in others:
        if any((purpose, consent.at) in decided for purpose, consent in profile.consents.items()):
            return False
    for interaction in absorbed:
        if interaction.type == EventType.SURVEY_RESPONSE and "rating" in interaction.properties:
            if interaction.timestamp in rated:
                return False
        elif interaction.type == EventType.CONSENT_UPDATE:
            at = decided_at(event_of(interaction), interaction.received_at)
            if (interaction.properties.get("purpose"), at) in decided:
                return False
    return True


@dataclass(frozen=True, slots=True)
class MergedHistory:
    """What a merge replays: every history (`kept` None), or those of the profiles merged with `kept`,
    whose behaviour is taken as it stands, with kept's interactions near their visits (`nearby`)."""

    interactions: Sequence[Interaction]
    kept: Profile | None = None
    nearby: Sequence[tuple[datetime, str, str]] = ()

    def behaviour(self, base: Profile) -> Profile:
        """`base` with the stats, survey answers, consent events and recent list of the histories."""
        if self.kept is None:
            return rebuild_behaviour(base, self.interactions)
        return absorb_behaviour(base, self.kept, self.interactions, self.nearby)


def _replayed(
    base: Profile,
    stats: Stats,
    qualitative: Qualitative,
    recent: Sequence[Interaction],
    interactions: Iterable[Interaction],
    *,
    visits: list[datetime] | None,
) -> Profile:
    """`base` with `stats`, `qualitative` and `recent` as the behaviour so far, and `interactions`
    applied on top in time order. `visits`: the times of the visit events the behaviour so far holds
    near them (absorb_behaviour), each visit then counted by where it falls among them; None: counted
    as each event arrives (a replay from nothing, in time order)."""
    ordered = sorted(interactions, key=lambda i: (i.timestamp, i.message_id))
    # The document is the copy the replay changes (to_document copies every container): copying
    # the profile deeply first as well was 40% of a demo merge's replay.
    document = base.model_copy(update={"stats": stats, "qualitative": qualitative, "recent": []}).to_document()
    for interaction in ordered:
        # What the next change reads, off the document as the last one left it.
        change = behaviour_change(
            StoredBehaviour.of(document), event_of(interaction), received_at=interaction.received_at
        )
        if visits is not None and is_visit(interaction.type, interaction.channel):
            _count_visit(change, interaction.timestamp, visits)
        apply_change(document, change)
    newest = sorted([*recent, *ordered], key=lambda i: (i.timestamp, i.message_id), reverse=True)
    # The consents as they now stand decide: a refusal given directly (setConsent) or by another
    # profile of a merge withdraws the profiling the base carried.
    return without_profiling(
        Profile.for_change(document).model_copy(update={"recent": newest[:RECENT_INTERACTIONS_CAP]})
    )


def _count_visit(change: ProfileChange, ts: datetime, visits: list[datetime]) -> None:
    """The change's visit count, by where `ts` falls among `visits` (which it then joins)."""
    at_or_before, at_or_after = bisect_right(visits, ts), bisect_left(visits, ts)
    before = visits[at_or_before - 1] if at_or_before else None
    after = visits[at_or_after] if at_or_after < len(visits) else None
    change.inc.pop("stats.visits", None)
    if added := visit_added(ts, before, after):
        change.inc["stats.visits"] = added
    insort(visits, ts)


def visit_windows(interactions: Iterable[Interaction]) -> list[tuple[datetime, datetime]]:
    """The spans within VISIT_GAP of the visit events among `interactions`: where absorb_behaviour
    needs the kept profile's interactions (the store joins those that overlap, `joined_spans`)."""
    return [(i.timestamp - VISIT_GAP, i.timestamp + VISIT_GAP) for i in interactions if is_visit(i.type, i.channel)]


def joined_spans(spans: Iterable[tuple[datetime, datetime]]) -> list[tuple[datetime, datetime]]:
    """`spans` (both ends included) in time order, those that overlap or touch joined into one."""
    joined: list[tuple[datetime, datetime]] = []
    for low, high in sorted(spans):
        if joined and low <= joined[-1][1]:
            joined[-1] = (joined[-1][0], max(high, joined[-1][1]))
        else:
            joined.append((low, high))
    return joined


def replay_identity(base: Profile, interactions: Iterable[Interaction]) -> Profile:
    """`base` with what the identify events among `interactions` set (identity fields, addresses,
    traits), in time order, each field keeping the newest decision: an unmerge gives a person the
    names their own events carried while merged, and only theirs. Without the recent list once an
    identify event was replayed: what it returns is for rebuild_behaviour, which replays that list.

    Merges do not use it: there, the reconciliation rules decide between the profiles' values.
    """
    identifies = sorted(
        (i for i in interactions if i.type == EventType.IDENTIFY), key=lambda i: (i.timestamp, i.message_id)
    )
    state = base
    document = state.to_document()
    for interaction in identifies:
        apply_change(document, replayed_identify(state, event_of(interaction)))
        # What the next identify event is weighed against, read as a change reads a stored document
        # (without the recent list, which the caller replays after): a profile's own validation,
        # its recent list included, for each of them was most of this replay.
        state = Profile.for_change(document)
    return state
