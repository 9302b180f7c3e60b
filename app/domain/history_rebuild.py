"""Rebuild what a profile derives from its history (counters, first/last times, visits, survey
answers, consent events, the embedded recent list) by replaying its interactions in time order.

Merges and unmerges use it, so a merged profile counts every event exactly once and an unmerged one
counts exactly its own; unmerges also replay the fields identify events set.
"""

from __future__ import annotations

from collections.abc import Iterable

from app.domain.event_effects import behaviour_change, event_of, replayed_identify
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
