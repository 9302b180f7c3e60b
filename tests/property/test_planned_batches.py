"""A batch computed on a snapshot, with other writes committed before it takes the write lock, gives
exactly what it gives when those writes come first and it is ingested one event at a time.

A large batch's first run is applied in memory before the batch waits for the embedded store's
writer (app/store/sqlite/snapshots.py); under the lock it checks what it read and computes again the
events whose reads moved. Here the batch is held right there while other events (a merge among them
now and then, an erasure sometimes) are committed, over a pool of identifiers small enough that
they touch the batch's people and large enough that most of the batch is untouched; the same writes
then the batch, event by event, go into a second store. Results and people must be the same.
"""

from __future__ import annotations

import asyncio
import tempfile
from pathlib import Path

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from app.services import privacy
from app.services.ingestion import PLANNED_EVENTS, ingest_each_alone, ingest_events
from app.services.ports import ProfileStore
from app.services.traits import recompute_traits
from app.store.sqlite.store import SQLiteStore
from tests.interleaving import HeldBatches
from tests.property.test_batch_ingestion import _events, _people, _result

PEOPLE = 10
IDENTIFIERS = [
    *(("email", f"p{n}@example.com") for n in range(PEOPLE)),
    *(("customerId", f"c-{n}") for n in range(0, PEOPLE, 3)),
    *(("anonymousId", f"a-{n}") for n in range(0, PEOPLE, 4)),
]
TYPES = ["page_view", "order_completed", "identify", "consent_update", "survey_response", "cart_abandoned"]

event_specs = st.tuples(
    st.sampled_from(TYPES),
    st.lists(st.sampled_from(IDENTIFIERS), min_size=1, max_size=2, unique=True),
    st.integers(min_value=0, max_value=2_000),  # minutes after the base time
    st.integers(min_value=0, max_value=60),  # messageId: repeats are duplicates
    st.sampled_from(["web", "mobile", "email"]),
)
planned = st.lists(event_specs, min_size=PLANNED_EVENTS + 1, max_size=PLANNED_EVENTS + 20)
between = st.lists(event_specs, min_size=0, max_size=6)
erased = st.one_of(st.none(), st.sampled_from(IDENTIFIERS))
# The computed-traits job rewrites profiles without a new version: only their revision tells.
traits_job = st.booleans()


async def _erase(store: ProfileStore, identifier: tuple[str, str] | None) -> None:
    if identifier is not None and (profile := await store.find_profile_by_identity(":".join(identifier))):
        await privacy.delete_profile(store, profile.id, actor="dpo")


async def _meanwhile(
    store: ProfileStore,
    specs: list[tuple[str, list[tuple[str, str]], int, int, str]],
    erasure: tuple[str, str] | None,
    traits: bool,
) -> None:
    await ingest_each_alone(store, _events(specs))
    await _erase(store, erasure)
    if traits:
        await recompute_traits(store, restart=True)


async def _scores(store: ProfileStore) -> list[object]:
    """Each person's RFM scores, which only the traits job writes."""
    found = [await store.find_profile_by_identity(":".join(identifier)) for identifier in IDENTIFIERS]
    return [p.rfm.model_dump(exclude={"computed_at"}) if p and p.rfm else None for p in found]


async def _compare(
    first: list[tuple[str, list[tuple[str, str]], int, int, str]],
    batch: list[tuple[str, list[tuple[str, str]], int, int, str]],
    meanwhile: list[tuple[str, list[tuple[str, str]], int, int, str]],
    erasure: tuple[str, str] | None,
    traits: bool,
    root: Path,
) -> None:
    planned_store = SQLiteStore(root / "planned.sqlite3", snapshots_always=True)
    serial = SQLiteStore(root / "serial.sqlite3")
    try:
        for store in (planned_store, serial):
            await ingest_each_alone(store, _events(first))
        held = HeldBatches(planned_store)
        task = asyncio.create_task(ingest_events(held, _events(batch)))  # type: ignore[arg-type]
        await held.waiting.wait()  # planned on a snapshot, waiting for the writer
        await _meanwhile(planned_store, meanwhile, erasure, traits)
        held.go.set()
        outcomes = await task

        await _meanwhile(serial, meanwhile, erasure, traits)
        expected = await ingest_each_alone(serial, _events(batch))
        assert [_result(o) for o in outcomes] == [_result(o) for o in expected]
        assert await _people(planned_store, IDENTIFIERS) == await _people(serial, IDENTIFIERS)
        assert await _scores(planned_store) == await _scores(serial)
        assert await planned_store.count_profiles() == await serial.count_profiles()
    finally:
        await planned_store.close()
        await serial.close()


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(between, planned, between, erased, traits_job)
def test_a_planned_batch_equals_the_writes_before_it_then_the_batch_one_event_at_a_time(
    first: list[tuple[str, list[tuple[str, str]], int, int, str]],
    batch: list[tuple[str, list[tuple[str, str]], int, int, str]],
    meanwhile: list[tuple[str, list[tuple[str, str]], int, int, str]],
    erasure: tuple[str, str] | None,
    traits: bool,
) -> None:
    with tempfile.TemporaryDirectory() as root:
        asyncio.run(_compare(first, batch, meanwhile, erasure, traits, Path(root)))
