"""Batch-native ingestion gives exactly what one-at-a-time ingestion gives.

Random batches over a small pool of identifiers (so events link profiles and merge them), with
messageIds repeated within and across batches, and invalid events mixed in, go into one store in
batches and into another one event at a time on the per-event path. Per-event results, each person's profile (stats,
identifiers, blocking keys, consents, identity fields) and history must be the same; profile ids are random, so
profiles are compared through the identifiers they hold.
"""

from __future__ import annotations

import asyncio
import re
import tempfile
from pathlib import Path
from typing import Any

from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from app.domain.events import RawEvent
from app.domain.profile_query import InteractionFilter
from app.services.ingestion import EventOutcome, ingest_each_alone, ingest_events
from app.services.ports import ProfileStore
from app.store.sqlite.store import SQLiteStore
from tests.builders import event

IDENTIFIERS = [
    ("email", "ann@example.com"),
    ("email", "bob@example.com"),
    ("email", "cat@example.com"),
    ("customerId", "c-1"),
    ("customerId", "c-2"),
    ("anonymousId", "a-1"),
    ("anonymousId", "a-2"),
    ("email", "not an email"),  # invalid: the event is REJECTED
]
TYPES = ["page_view", "order_completed", "identify", "consent_update", "survey_response", "cart_abandoned", "nope"]

event_specs = st.tuples(
    st.sampled_from(TYPES),
    st.lists(st.sampled_from(IDENTIFIERS), min_size=1, max_size=2, unique=True),
    st.integers(min_value=0, max_value=2_000),  # minutes after the base time: out of order on purpose
    st.integers(min_value=0, max_value=30),  # messageId: repeats are duplicates
    st.sampled_from(["web", "mobile", "email"]),
)
batches = st.lists(st.lists(event_specs, min_size=1, max_size=12), min_size=1, max_size=4)


def _events(specs: list[tuple[str, list[tuple[str, str]], int, int, str]]) -> list[RawEvent]:
    return [
        event(type_, identifiers=ids, minutes=minutes, message_id=f"m-{number}", channel=channel)
        for type_, ids, minutes, number, channel in specs
    ]


def _result(outcome: EventOutcome) -> tuple[str, str, str | None, str | None, bool]:
    """The outcome, with its event's position written the same way on both sides, and whether it made
    its profile (every segment is then due for it)."""

    def unplaced(text: str | None) -> str | None:
        return None if text is None else re.sub(r"events\[\d+\]", "events[*]", text)

    return outcome.message_id, str(outcome.status), unplaced(outcome.reason), unplaced(outcome.field), outcome.created


async def _people(store: ProfileStore, identifiers: list[tuple[str, str]] = IDENTIFIERS[:-1]) -> list[tuple[Any, ...]]:
    """Each identifier's person, as far as the comparison goes (profile ids are random)."""
    people = []
    for type_, value in identifiers:
        profile = await store.find_profile_by_identity(f"{type_}:{value}")
        if profile is None:
            people.append((type_, value, None))
            continue
        history = await store.list_interactions(profile.id, before=None, where=InteractionFilter(), limit=1_000)
        people.append(
            (
                type_,
                value,
                sorted(profile.identifier_keys()),
                profile.blocking_keys,  # what the matcher finds the profile by
                profile.stats.model_dump(),
                {k: (c.granted, c.at) for k, c in profile.consents.items()},
                (profile.first_name, profile.last_name, profile.traits),
                profile.qualitative.model_dump(),
                [(i.message_id, i.timestamp) for i in profile.recent],
                sorted((i.message_id, i.type, i.timestamp) for i in history),
                [(m.reason, m.automatic) for m in await store.merges_of(profile.id)],
                # a refusal's time is when it was recorded and its id a hash of random profile ids:
                # two refusals of one event come in either order
                sorted(r.reason for r in await store.refusals_of(profile.id)),
            )
        )
    return people


async def _compare(specs: list[list[tuple[str, list[tuple[str, str]], int, int, str]]], root: Path) -> None:
    batched, alone = SQLiteStore(root / "batched.sqlite3"), SQLiteStore(root / "alone.sqlite3")
    try:
        for batch in specs:
            raw = _events(batch)
            in_batch = await ingest_events(batched, raw)
            one_by_one = await ingest_each_alone(alone, raw)  # today's per-event path, event by event
            assert [_result(o) for o in in_batch] == [_result(o) for o in one_by_one]
        assert await _people(batched) == await _people(alone)
        assert await batched.count_profiles() == await alone.count_profiles()
    finally:
        await batched.close()
        await alone.close()


@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(batches)
@example(
    [
        [
            ("page_view", [("anonymousId", "a-1")], 1, 1, "web"),
            ("page_view", [("email", "ann@example.com")], 2, 2, "web"),
        ],
        [
            ("page_view", [("email", "ann@example.com"), ("anonymousId", "a-1")], 3, 3, "web"),
            ("order_completed", [("anonymousId", "a-1")], 0, 4, "web"),
            ("page_view", [("email", "ann@example.com")], 5, 1, "web"),
        ],
    ]
)
@example(  # one profile's events in one run: each reads what the ones before it left (visit, consent, survey)
    [
        [
            ("page_view", [("anonymousId", "a-2")], 10, 20, "web"),
            ("page_view", [("anonymousId", "a-2")], 20, 21, "web"),
            ("consent_update", [("anonymousId", "a-2")], 100, 22, "web"),
            ("consent_update", [("anonymousId", "a-2")], 50, 23, "web"),
            ("survey_response", [("anonymousId", "a-2")], 200, 24, "web"),
            ("survey_response", [("anonymousId", "a-2")], 150, 25, "web"),
        ]
    ]
)
@example(  # two refusals at one time (CI, stop 47): an identify naming a second customerId, then a merge
    [
        [
            ("page_view", [("email", "bob@example.com"), ("customerId", "c-1")], 468, 24, "web"),
            ("page_view", [("email", "bob@example.com")], 146, 27, "email"),
            ("consent_update", [("email", "bob@example.com")], 642, 0, "web"),
            ("consent_update", [("anonymousId", "a-2")], 679, 13, "email"),
            ("page_view", [("anonymousId", "a-1")], 1130, 3, "email"),
            ("consent_update", [("email", "cat@example.com"), ("email", "ann@example.com")], 1, 6, "web"),
            ("identify", [("customerId", "c-1"), ("email", "ann@example.com")], 1575, 9, "email"),
            ("cart_abandoned", [("email", "bob@example.com")], 1197, 6, "web"),
            ("identify", [("email", "cat@example.com"), ("customerId", "c-2")], 189, 12, "email"),
            ("nope", [("anonymousId", "a-2"), ("email", "cat@example.com")], 1061, 3, "mobile"),
            ("order_completed", [("email", "ann@example.com"), ("customerId", "c-2")], 272, 28, "web"),
        ],
        [("order_completed", [("email", "not an email"), ("email", "ann@example.com")], 6, 0, "web")],
    ]
)
def test_batch_ingestion_gives_the_results_and_profiles_of_one_event_at_a_time(
    specs: list[list[tuple[str, list[tuple[str, str]], int, int, str]]],
) -> None:
    with tempfile.TemporaryDirectory() as root:
        asyncio.run(_compare(specs, Path(root)))
