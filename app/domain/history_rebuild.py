"""Rebuild what a profile derives from its history (counters, first/last times, visits, survey
answers, consent events, the embedded recent list) by replaying its interactions in time order.

Unmerges use it, so an unmerged profile counts exactly its own events, and also replay the fields
identify events set. A merge gives the same counts without replaying the history of the profile with
the most events (absorb_behaviour): a customer with 20,000 events held the writer ~1 s for each
anonymous visitor merged into them.
"""

from __future__ import annotations

from bisect import bisect_left, bisect_right, insort
from collections.abc import Iterable
from datetime import datetime

from app.domain.event_effects import VISIT_GAP, behaviour_change, event_of, is_visit, replayed_identify, visit_added
from app.domain.events import EventType
from app.domain.profile import RECENT_INTERACTIONS_CAP, Interaction, Profile, Qualitative, Stats
from app.domain.profile_change import apply_change
from app.domain.stored_behaviour import StoredBehaviour
from app.domain.traits.computed import without_profiling


def rebuild_behaviour(base: Profile, interactions: Iterable[Interaction]) -> Profile:
    """`base` with stats, survey answers and recent history recomputed from `interactions`.

    Identity fields, traits, preferences and consents given directly stay as in `base`; consent
    events in the history apply on top of them, newest decision per purpose winning.
    """
    ordered = sorted(interactions, key=lambda i: (i.timestamp, i.message_id))
    # The document is the copy the replay changes (to_document copies every container): copying
    # the profile deeply first as well was 40% of a demo merge's replay.
    document = base.model_copy(
        update={"stats": Stats(), "qualitative": Qualitative(preferences=base.qualitative.preferences), "recent": []}
    ).to_document()
    for interaction in ordered:
        # What the next change reads, off the document as the last one left it.
        change = behaviour_change(
            StoredBehaviour.of(document), event_of(interaction), received_at=interaction.received_at
        )
        apply_change(document, change)
    newest = list(reversed(ordered))[:RECENT_INTERACTIONS_CAP]
    # The consents as they now stand decide: a refusal given directly (setConsent) or by another
    # profile of a merge withdraws the profiling the base carried.
    return without_profiling(Profile.for_change(document).model_copy(update={"recent": newest}))


def absorb_behaviour(
    base: Profile, kept: Profile, absorbed: Iterable[Interaction], nearby: Iterable[tuple[datetime, str, str]]
) -> Profile:
    """`base` with what `rebuild_behaviour` gives for the histories of `kept` and of the profiles
    merged with it (`absorbed`, their interactions), computed from `kept`'s behaviour as its events
    left it (stats, survey answers, recent list) and the absorbed events applied on top in time order.
    `nearby`: (time, type, channel) of `kept`'s interactions within VISIT_GAP of an absorbed visit
    (visit_windows), all that decides whether an absorbed visit event joins one of kept's visits.

    Counters, first/last times, survey answers and consents come out as a replay's: each is a sum, a
    minimum or maximum, or the newest by time whatever the order. So does the recent list (the newest
    of kept's and the absorbed ones). Visits are counted by where each absorbed visit event falls among
    the visit events of both (visit_added). `kept`'s own counts are taken as they stand: an event that
    came later than its recent list reaches keeps the approximation it was counted with (README).
    """
    ordered = sorted(absorbed, key=lambda i: (i.timestamp, i.message_id))
    qualitative = kept.qualitative.model_copy(update={"preferences": base.qualitative.preferences})
    document = base.model_copy(update={"stats": kept.stats, "qualitative": qualitative, "recent": []}).to_document()
    visits = sorted(at for at, kind, channel in nearby if is_visit(kind, channel))
    for interaction in ordered:
        change = behaviour_change(
            StoredBehaviour.of(document), event_of(interaction), received_at=interaction.received_at
        )
        change.inc.pop("stats.visits", None)  # decided below, from the visits of both
        if is_visit(interaction.type, interaction.channel):
            ts = interaction.timestamp
            at_or_before, at_or_after = bisect_right(visits, ts), bisect_left(visits, ts)
            before = visits[at_or_before - 1] if at_or_before else None
            after = visits[at_or_after] if at_or_after < len(visits) else None
            added = visit_added(ts, before, after)
            if added:
                change.inc["stats.visits"] = added
            insort(visits, ts)
        apply_change(document, change)
    newest = sorted([*kept.recent, *ordered], key=lambda i: (i.timestamp, i.message_id), reverse=True)
    return without_profiling(
        Profile.for_change(document).model_copy(update={"recent": newest[:RECENT_INTERACTIONS_CAP]})
    )


def visit_windows(interactions: Iterable[Interaction]) -> list[tuple[datetime, datetime]]:
    """The spans within VISIT_GAP of the visit events among `interactions`, overlapping ones joined:
    where absorb_behaviour needs the kept profile's interactions."""
    windows: list[tuple[datetime, datetime]] = []
    for ts in sorted(i.timestamp for i in interactions if is_visit(i.type, i.channel)):
        low, high = ts - VISIT_GAP, ts + VISIT_GAP
        if windows and low <= windows[-1][1]:
            windows[-1] = (windows[-1][0], high)
        else:
            windows.append((low, high))
    return windows


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
