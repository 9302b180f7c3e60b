"""A merge counts what a replay of every merged history counts, without replaying the history of the
profile with the most events (history_rebuild.absorb_behaviour).

Two or three people, each with events of every kind that moves a counter, a visit, a survey answer or
a consent, at random times within a few hours (often at one instant), so that the visits of different
people join and bridge each other's; some people hold more events than the embedded recent list. Each
person's events arrive in time order, or in any order when they fit that list (past it, a late event
keeps an approximate visit count: README, "Visits"). A steward merges them into one of them: the
merged profile's stats, survey answers, consents and recent list must equal a replay of all their
events in time order (rebuild_behaviour, which every merge ran before). On the embedded store and on
the MongoDB store over its in-memory fake.
"""

from __future__ import annotations

import asyncio
import random
import tempfile
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from app.domain.history_rebuild import rebuild_behaviour
from app.domain.merge_protection import MergeProtection
from app.domain.profile import RECENT_INTERACTIONS_CAP
from app.domain.profile_query import InteractionFilter
from app.services import merging, profile_reads
from app.services.identity_policy import IdentityPolicy
from app.services.ingestion import EventStatus, IngestionPolicy, ingest_events
from tests.builders import BASE_TIME, event
from tests.conftest import make_store

IDENTITY = IdentityPolicy(protection=MergeProtection(automatic_merges=False))
NO_AUTO = IngestionPolicy(identity=IDENTITY)
KINDS: list[tuple[str, str]] = [  # (type, channel): three visit kinds, then the others
    ("page_view", "web"),
    ("product_view", "mobile"),
    ("add_to_cart", "web"),
    ("page_view", "email"),  # a page view outside the visit channels: counted, no visit
    ("email_open", "email"),
    ("order_completed", "store"),
    ("survey_response", "web"),
    ("consent_update", "web"),
    ("consent_update", "email"),  # two refusals at one instant: the source of the one a replay puts last
]
SPAN_MS = 6 * 3600 * 1000  # a visit is 30 minutes of activity: people's visits meet often in 6 hours

# Any millisecond, or a whole minute: then two people's ratings, consents and visits often fall at
# one instant, where a replay's order (by message id) decides (history_rebuild.absorbs_exactly).
times = st.one_of(st.integers(0, SPAN_MS), st.integers(0, SPAN_MS // 60_000).map(lambda minute: minute * 60_000))
# (person, kind, milliseconds after the start, a choice for the properties)
events = st.lists(
    st.tuples(st.integers(0, 2), st.integers(0, len(KINDS) - 1), times, st.integers(0, 10)), min_size=1, max_size=140
)


def _properties(kind: str, choice: int) -> dict[str, Any] | None:
    if kind == "survey_response":
        return {"nps": choice, "rating": 1 + choice % 5}
    if kind == "consent_update":
        return {"purpose": ("email_marketing", "sms_marketing")[choice % 2], "granted": choice > 4}
    return None


async def _run(
    backend: str, people: int, survivor: int, drawn: list[tuple[int, int, int, int]], seed: int, root: Path
) -> None:
    store = await make_store(backend, root)
    shuffle = random.Random(seed)
    try:
        ids: list[str] = []
        for person in range(people):
            # One event of a person at an instant: two would be ordered by their arrival when ingested
            # and by message id when replayed, ingestion's own matter and not a merge's.
            at_once = {e[2]: e for e in reversed(drawn) if e[0] % people == person}
            own = sorted(at_once.values(), key=lambda e: e[2])
            if len(own) <= RECENT_INTERACTIONS_CAP and seed % 2:
                shuffle.shuffle(own)  # late events, each within what the recent list covers
            sent = [
                event(
                    KINDS[kind][0],
                    identifiers=[("email", f"p{person}@example.com")],
                    channel=KINDS[kind][1],
                    at=BASE_TIME + timedelta(milliseconds=offset),
                    message_id=f"{person}-{number}",
                    properties=_properties(KINDS[kind][0], choice),
                )
                for number, (_, kind, offset, choice) in enumerate(own)
            ] or [event("email_open", identifiers=[("email", f"p{person}@example.com")], message_id=f"{person}-only")]
            outcomes = await ingest_events(store, sent, NO_AUTO)
            assert {o.status for o in outcomes} == {EventStatus.ACCEPTED}
            profile = await profile_reads.get_profile_by_identifier(store, "email", f"p{person}@example.com")
            assert profile is not None
            ids.append(profile.id)

        target = ids[survivor % people]
        await merging.merge_profiles(
            store, target, [i for i in ids if i != target], reason="test", actor="t", policy=IDENTITY
        )
        merged = await store.get_profile(target)
        assert merged is not None
        history = await store.list_interactions(target, before=None, where=InteractionFilter(), limit=10_000)
        assert len(history) == sum(max(1, len({e[2] for e in drawn if e[0] % people == p})) for p in range(people))
        replayed = rebuild_behaviour(merged, history)
        assert merged.stats == replayed.stats
        assert merged.qualitative == replayed.qualitative
        assert merged.consents == replayed.consents
        assert [i.message_id for i in merged.recent] == [i.message_id for i in replayed.recent]
    finally:
        await store.close()


@pytest.mark.parametrize("backend", ["sqlite", "mongo-fake"])
@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(people=st.integers(2, 3), survivor=st.integers(0, 2), drawn=events, seed=st.integers(0, 2**16))
@example(  # a visit of the smaller profile bridges two of the larger one's: three visits become one
    people=2,
    survivor=0,
    drawn=[(0, 0, 0, 0), (0, 0, 40 * 60_000, 0), (0, 5, 41 * 60_000, 0), (1, 1, 20 * 60_000, 0)],
    seed=0,
)
@example(  # the smaller profile survives; the larger one's visit is just within the gap of the smaller's
    people=2,
    survivor=1,
    drawn=[(0, 0, 0, 0), (0, 2, 60_000, 0), (0, 4, 90_000, 0), (1, 1, 31 * 60_000, 0)],
    seed=0,
)
@example(  # more events than the recent list holds on both sides, visits of each inside the other's
    people=2,
    survivor=1,
    drawn=[(n % 3 // 2, n % 4, n * 7 * 60_000 + n % 5 * 1000, n % 11) for n in range(150)],
    seed=1,
)
@example(  # ratings at one instant, the kept profile's (person 1's, more events) listed after in a replay
    people=2,
    survivor=0,
    drawn=[(1, 0, 0, 0), (1, 0, 60_000, 0), (1, 6, 3_600_000, 4), (0, 6, 3_600_000, 0)],
    seed=0,
)
@example(  # refusals at one instant from two channels: a replay keeps the source of the later message id
    people=2,
    survivor=1,
    drawn=[(1, 0, 0, 0), (1, 0, 60_000, 0), (1, 7, 3_600_000, 0), (0, 8, 3_600_000, 0)],
    seed=0,
)
def test_a_merge_counts_what_a_replay_of_every_merged_history_counts(
    backend: str, people: int, survivor: int, drawn: list[tuple[int, int, int, int]], seed: int
) -> None:
    with tempfile.TemporaryDirectory() as root:
        asyncio.run(_run(backend, people, survivor, drawn, seed, Path(root)))
