from __future__ import annotations

from datetime import UTC, datetime

from app.domain.profile_change import CappedPush, ProfileChange, apply_change

T1 = datetime(2026, 1, 1, tzinfo=UTC)
T2 = datetime(2026, 2, 1, tzinfo=UTC)


def test_operators_follow_mongodb_semantics_on_missing_and_present_fields() -> None:
    doc = {"stats": {"orders": 2, "lastSeenAt": T1}}
    change = ProfileChange(
        set={"firstName": "Ana"},
        inc={"stats.orders": 1, "stats.channels.web": 1},
        max={"stats.lastSeenAt": T2, "stats.lastOrderAt": T1},
        min={"stats.firstSeenAt": T2},
    )
    apply_change(doc, change)
    assert doc == {
        "firstName": "Ana",
        "stats": {"orders": 3, "channels": {"web": 1}, "lastSeenAt": T2, "lastOrderAt": T1, "firstSeenAt": T2},
    }


def test_max_and_min_never_move_backwards() -> None:
    doc = {"first": T1, "last": T2}
    apply_change(doc, ProfileChange(max={"last": T1}, min={"first": T2}))
    assert doc == {"first": T1, "last": T2}


def test_capped_push_sorts_by_every_key_and_keeps_the_newest() -> None:
    doc = {"recent": [{"t": 3, "m": "a"}, {"t": 1, "m": "z"}]}
    push = CappedPush([{"t": 3, "m": "b"}, {"t": 2, "m": "c"}], {"t": -1, "m": -1}, cap=3)
    apply_change(doc, ProfileChange(push={"recent": push}))
    assert doc["recent"] == [{"t": 3, "m": "b"}, {"t": 3, "m": "a"}, {"t": 2, "m": "c"}]


def test_stamping_bumps_version_and_update_time() -> None:
    doc = {"version": 4, "updatedAt": T1}
    apply_change(doc, ProfileChange().stamped(T2))
    assert doc == {"version": 5, "updatedAt": T2}
