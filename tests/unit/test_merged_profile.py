"""A merge builds the survivor anew from its own document copy: the profiles it was given stay as
they were (the merge record keeps their snapshots, and an unmerge starts from them), and what the
history derives is the counts of the profile with the most events and the others' history replayed
onto them."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from app.domain.history_rebuild import MergedHistory, visit_windows
from app.domain.merge import merged_profile
from app.domain.profile import Interaction, Profile, Qualitative, Stats, new_profile
from app.domain.reconciliation import ReconciliationRules

AT = datetime(2026, 11, 2, 9, 30, tzinfo=UTC)


def _interaction(number: int, kind: str, origin: str, properties: dict[str, object]) -> Interaction:
    return Interaction(
        message_id=f"m{number}",
        type=kind,
        channel="web",
        timestamp=AT + timedelta(hours=number),
        properties=properties,
        origin=origin,
    )


def _profile(profile_id: str, *, name: str, preferences: dict[str, object], history: list[Interaction]) -> Profile:
    return new_profile(profile_id, AT).model_copy(
        update={
            "first_name": name,
            "traits": {"tier": {"level": ["gold", {"since": 2020}]}},
            "qualitative": Qualitative(preferences=preferences),
            "stats": Stats(
                events_total=len(history),
                page_views=sum(i.type == "page_view" for i in history),
                orders=sum(i.type == "order_completed" for i in history),
            ),
            "recent": list(reversed(history)),
            "field_times": {"firstName": AT},
            "version": 3,
        }
    )


def test_the_profiles_merged_are_left_as_they_were_and_the_history_is_replayed() -> None:
    survivor_history = [_interaction(1, "page_view", "a", {"url": "/a", "tags": ["x", {"y": 1}]})]
    other_history = [
        _interaction(2, "page_view", "b", {"url": "/b"}),
        _interaction(3, "order_completed", "b", {"orderId": "o1", "total": 12.5, "items": []}),
    ]
    survivor = _profile("a", name="Ana", preferences={"sizes": {"shoes": [38]}}, history=survivor_history)
    other = _profile("b", name="Anna", preferences={"colours": ["blue"]}, history=other_history)
    before = [survivor.to_document(), other.to_document()]

    # The other holds more events: its counts are kept, the survivor's history replayed onto them.
    nearby = [
        (i.timestamp, i.type, i.channel)
        for i in other_history
        if any(low <= i.timestamp <= high for low, high in visit_windows(survivor_history))
    ]
    history = MergedHistory(survivor_history, other, nearby)
    merged = merged_profile(survivor, [other], history, ReconciliationRules(), at=AT)

    assert [survivor.to_document(), other.to_document()] == before
    assert merged.stats.events_total == 3 and merged.stats.page_views == 2 and merged.stats.orders == 1
    assert [i.message_id for i in merged.recent] == ["m3", "m2", "m1"]
    assert merged.qualitative.preferences == {"sizes": {"shoes": [38]}, "colours": ["blue"]}
    assert merged.version == survivor.version + 1
    # The replay changed its own copy: neither input's nested data is shared with the result.
    merged.qualitative.preferences["sizes"]["shoes"].append(39)
    merged.traits["tier"]["level"].append("x")
    assert [survivor.to_document(), other.to_document()] == before
