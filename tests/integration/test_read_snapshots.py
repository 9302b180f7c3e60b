"""The embedded store's read snapshots (app/store/sqlite/snapshots.py): a large batch computes its
first run on one before it takes the write lock, and under the lock computes again what another
writer, in this process or another, changed meanwhile."""

from __future__ import annotations

import asyncio
import sqlite3
import threading
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest

from app.services import privacy, profile_reads
from app.services.ingestion import PLANNED_EVENTS, EventStatus, ingest_events
from app.services.ports import StoreTransaction
from app.store.sqlite.snapshots import Snapshots
from app.store.sqlite.store import SQLiteStore
from app.store.sqlite.write_lock_held import WriteLockHeld
from tests.builders import event, rename_from_another_process
from tests.interleaving import HeldBatches, until


@pytest.fixture
async def planning(tmp_path: Path) -> AsyncIterator[SQLiteStore]:
    """A store whose large batches are computed on a snapshot even with no other process writing."""
    store = SQLiteStore(tmp_path / "cdp.sqlite3", snapshots_always=True)
    yield store
    await store.close()


async def _id_of(store: SQLiteStore, email: str) -> str:
    found = await profile_reads.get_profile_by_identifier(store, "email", email)
    assert found is not None
    return found.id


def _visits(count: int, *emails: str) -> list[Any]:
    """More events than PLANNED_EVENTS: the batch computes its first run on a snapshot."""
    return [
        event("page_view", email=emails[n % len(emails)], minutes=n + 1, message_id=f"visit-{n}") for n in range(count)
    ]


async def test_a_snapshot_sees_one_moment_and_tells_which_profiles_were_written_since(
    planning: SQLiteStore,
) -> None:
    await ingest_events(planning, [event("identify", email=e) for e in ("ann@example.com", "bob@example.com")])
    ann, bob = await _id_of(planning, "ann@example.com"), await _id_of(planning, "bob@example.com")

    async def documents(tx: StoreTransaction) -> dict[str, dict[str, Any]]:
        return await tx.get_profile_documents([ann, bob, "nobody"])

    snapshot = await planning.read_snapshot(documents)
    assert snapshot is not None and set(snapshot.value) == {ann, bob}
    await ingest_events(planning, [event("page_view", email="ann@example.com", minutes=5)])
    await privacy.delete_profile(planning, bob, actor="dpo")

    async def changed(tx: StoreTransaction) -> set[str]:
        return await tx.changed_since(snapshot)

    assert await planning.run_in_transaction(changed) == {ann, bob}  # written, erased; "nobody" still is not


async def test_a_snapshot_refuses_writes_and_waits_for_nothing_but_its_reads(planning: SQLiteStore) -> None:
    async def write(tx: StoreTransaction) -> None:
        await tx.record_messages([("m-1", "p-1")], expires_at=event("page_view").timestamp)  # type: ignore[arg-type]

    with pytest.raises(sqlite3.OperationalError, match="readonly"):
        await planning.read_snapshot(write)

    elsewhere = asyncio.new_event_loop()  # a future of another loop: what only a loop could wait for
    try:

        async def waiting(tx: StoreTransaction) -> None:
            await elsewhere.create_future()

        with pytest.raises(RuntimeError, match="other than the store's reads"):
            await planning.read_snapshot(waiting)
    finally:
        elsewhere.close()

    async def count(tx: StoreTransaction) -> set[str]:
        return await tx.known_messages(["m-1"])

    snapshot = await planning.read_snapshot(count)  # its connection given back in a usable state
    assert snapshot is not None and snapshot.value == set()


async def test_a_batch_computed_before_another_process_renamed_its_customer_keeps_the_new_name(
    planning: SQLiteStore, tmp_path: Path
) -> None:
    for email in ("ann@example.com", "bob@example.com"):
        await rename_from_another_process(tmp_path / "cdp.sqlite3", email, "Old")
    held = HeldBatches(planning)
    batch = asyncio.create_task(
        ingest_events(held, _visits(2 * PLANNED_EVENTS, "ann@example.com", "bob@example.com"))  # type: ignore[arg-type]
    )
    await held.waiting.wait()  # computed on a snapshot, waiting for the writer
    await rename_from_another_process(tmp_path / "cdp.sqlite3", "ann@example.com", "Ann")
    held.go.set()
    outcomes = await batch
    assert {o.status for o in outcomes} == {EventStatus.ACCEPTED}
    ann = await planning.get_profile(await _id_of(planning, "ann@example.com"))
    bob = await planning.get_profile(await _id_of(planning, "bob@example.com"))
    assert ann is not None and bob is not None
    assert (ann.first_name, ann.stats.page_views) == ("Ann", PLANNED_EVENTS)  # the rename kept, every visit counted
    assert (bob.first_name, bob.stats.page_views) == ("Old", PLANNED_EVENTS)


async def test_an_event_whose_identifier_another_process_claimed_meanwhile_lands_on_that_profile(
    planning: SQLiteStore, tmp_path: Path
) -> None:
    held = HeldBatches(planning)
    batch = asyncio.create_task(ingest_events(held, _visits(PLANNED_EVENTS + 5, "new@example.com")))  # type: ignore[arg-type]
    await held.waiting.wait()  # planned as a new profile's
    await rename_from_another_process(tmp_path / "cdp.sqlite3", "new@example.com", "Nia")  # made by the other
    held.go.set()
    outcomes = await batch
    assert {o.status for o in outcomes} == {EventStatus.ACCEPTED}
    assert await planning.count_profiles() == 1  # one person, not two
    nia = await planning.get_profile(await _id_of(planning, "new@example.com"))
    assert nia is not None and (nia.first_name, nia.stats.page_views) == ("Nia", PLANNED_EVENTS + 5)


async def test_a_store_alone_on_its_file_computes_under_the_lock_until_another_process_holds_it(
    sqlite_store: SQLiteStore, tmp_path: Path
) -> None:
    """Alone, a batch computed before the lock would only cost more; once a write found the lock taken
    by another process, large batches are computed before it for a while."""

    async def nothing(tx: StoreTransaction) -> None:
        return None

    assert await sqlite_store.read_snapshot(nothing) is None
    other = sqlite3.connect(tmp_path / "cdp.sqlite3", isolation_level=None)
    try:
        other.execute("BEGIN IMMEDIATE")  # another process's write in progress
        waiting = asyncio.create_task(ingest_events(sqlite_store, [event("page_view", email="ann@example.com")]))
        while not (tmp_path / "cdp.sqlite3-waiting").exists():  # the store says it waits (lock_waits.py)
            await asyncio.sleep(0.01)
        other.execute("COMMIT")
    finally:
        other.close()
    assert [o.status for o in await waiting] == [EventStatus.ACCEPTED]
    assert await sqlite_store.read_snapshot(nothing) is not None


async def test_a_batch_arriving_while_another_is_planned_waits_its_turn_and_one_more_goes_under_the_lock(
    planning: SQLiteStore,
) -> None:
    """One plan at a time: the next batch is planned after it (a connector's next batch, sent while
    the last one is on the writer), and a third at that moment is computed under the lock instead
    of waiting for two plans."""
    began: list[str] = []
    first_runs, go_on = threading.Event(), threading.Event()

    def work(name: str) -> Callable[[StoreTransaction], Awaitable[str]]:
        async def plan(tx: StoreTransaction) -> str:
            began.append(name)
            if name == "first":
                first_runs.set()
                go_on.wait(10)  # its thread held, as a long computation holds it
            await tx.known_messages(["m-1"])
            return name

        return plan

    first = asyncio.create_task(planning.read_snapshot(work("first")))
    assert await asyncio.to_thread(first_runs.wait, 10)
    second = asyncio.create_task(planning.read_snapshot(work("second")))
    third = asyncio.create_task(planning.read_snapshot(work("third")))
    assert await third is None  # at once: the second waits already
    await asyncio.sleep(0.05)
    assert not second.done() and began == ["first"]  # not beside the first
    go_on.set()
    planned = [await first, await second]
    assert [each.value if each is not None else None for each in planned] == ["first", "second"]
    assert began == ["first", "second"]


async def test_a_batch_asking_as_a_plan_ends_goes_under_the_lock_while_the_next_one_has_yet_to_start(
    planning: SQLiteStore,
) -> None:
    """Between a plan's end and the moment the batch waiting for its turn resumes, the turn reads as
    free: a batch asking then waited behind that one too (two plans), where one is the most. The
    moment is made here by holding the store's turn as a plan does (its end is its release)."""

    async def quick(tx: StoreTransaction) -> str:
        return "quick"

    turn = planning._plan_turn
    await turn.acquire()  # a plan runs
    waiting = asyncio.create_task(planning.read_snapshot(quick))
    await asyncio.sleep(0.05)  # it waits for its turn
    turn.release()  # the plan ends: the waiting one is woken, and has yet to run
    asked_now = await planning.read_snapshot(quick)  # asks before it runs: awaited directly, not as a task
    assert asked_now is None
    later = await waiting
    assert later is not None and later.value == "quick"


def test_a_plan_takes_each_step_only_while_its_process_writer_holds_no_write_lock(tmp_path: Path) -> None:
    """Before each step (its start, each turn it gives) a plan waits while the writer of its process
    holds the write lock (write_lock_held.py): the writer's statements then never wait for the GIL
    behind it, and the other processes wait less for the lock."""
    path = tmp_path / "cdp.sqlite3"
    sqlite3.connect(path).close()
    lock_held = WriteLockHeld()
    snapshots = Snapshots(lambda: sqlite3.connect(path, check_same_thread=False), lock_held, page_bytes=4096)
    steps: list[int] = []

    async def plan(tx: StoreTransaction) -> int:
        for step in range(3):
            steps.append(step)
            if step == 0:
                lock_held.take()  # the writer begins a transaction meanwhile
            await asyncio.sleep(0)
        return len(steps)

    planned: list[int] = []
    lock_held.take()
    thread = threading.Thread(target=lambda: planned.append(snapshots.run(plan).value))
    thread.start()
    until(lambda: lock_held.waiting == 1, "the plan never waited")
    assert steps == []  # not begun while the writer writes
    lock_held.release()
    until(lambda: len(steps) == 1 and lock_held.waiting == 1, "the plan never waited")
    assert steps == [0] and thread.is_alive()  # its first step only: the writer took the lock again
    lock_held.release()
    thread.join(10)
    assert planned == [3] and steps == [0, 1, 2]


async def test_the_store_holds_its_plans_while_its_writer_is_in_a_transaction(planning: SQLiteStore) -> None:
    """The store's own writer marks its transactions: a plan asked for during one runs after its commit."""
    order: list[str] = []
    inside, leave = threading.Event(), threading.Event()

    async def write(tx: StoreTransaction) -> None:
        inside.set()
        leave.wait(10)  # the writer thread held in the transaction
        order.append("committing")

    async def plan(tx: StoreTransaction) -> str:
        order.append("planned")
        return "planned"

    writing = asyncio.create_task(planning.run_in_transaction(write))
    assert await asyncio.to_thread(inside.wait, 10)
    planned = asyncio.create_task(planning.read_snapshot(plan))
    await asyncio.to_thread(until, lambda: planning.lock_held.waiting == 1, "the plan never waited")
    leave.set()
    await writing
    snapshot = await planned
    assert snapshot is not None and snapshot.value == "planned"
    assert order == ["committing", "planned"]
