"""Group commit (app/store/sqlite/commit_groups.py), on steps that log what a store would run: the
batches that wait while one runs share the next transaction, each in a savepoint; one that fails is
rolled back alone; every caller hears only after the COMMIT."""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
from collections.abc import Awaitable, Callable, Coroutine, Iterator
from typing import Any

import pytest

from app.store.sqlite.commit_groups import CommitGroups, TransactionSteps
from app.thread_priority import bulk_work

IN_BATCH: contextvars.ContextVar[bool] = contextvars.ContextVar("in-batch", default=False)
REQUEST: contextvars.ContextVar[str] = contextvars.ContextVar("request", default="none")


class LoggedSteps:
    def __init__(self, *, commit_fails: bool = False) -> None:
        self.log: list[str] = []
        self.open = False
        self.commit_fails = commit_fails
        self.lock_free = asyncio.Event()  # the write lock, as another process would hold it
        self.lock_free.set()

    async def begin(self, holder: object) -> None:
        if not self.lock_free.is_set():
            self.log.append("waits for the lock")
            await self.lock_free.wait()
        self.log.append("BEGIN")
        self.open = True

    async def end(self, holder: object, statement: str) -> None:
        self.open = False
        if statement == "COMMIT" and self.commit_fails:
            self.log.append("COMMIT failed")
            raise OSError("disk I/O error")
        self.log.append(statement)

    def execute(self, statement: str) -> None:
        self.log.append(statement)

    @contextlib.contextmanager
    def background(self, wanted: bool) -> Iterator[None]:
        if wanted:
            self.log.append("into the background")
        yield
        if wanted:
            self.log.append("back to the foreground")

    def steps(self) -> TransactionSteps:
        return TransactionSteps(self.begin, self.end, self.execute, lambda: self.open, IN_BATCH, self.background)


def writing(steps: LoggedSteps, name: str, *, fails: bool = False) -> Callable[[], Awaitable[str]]:
    async def work() -> str:
        assert IN_BATCH.get(), "a batch's work runs knowing it is inside the transaction"
        steps.log.append(f"{name} writes as {REQUEST.get()}")
        if fails:
            raise ValueError(f"{name} is refused")
        return name

    return work


async def heard(groups: CommitGroups, steps: LoggedSteps, work: Callable[[], Awaitable[str]]) -> str:
    try:
        value = await groups.run(work)
    except ValueError as exc:
        value = str(exc)
    steps.log.append(f"heard {value}")
    return value


async def bulk(
    groups: CommitGroups, steps: LoggedSteps, name: str, work: Callable[[], Awaitable[str]] | None = None
) -> str:
    """`heard` for a bulk batch (app/thread_priority.py): `work`, or a write logged as `name`."""
    with bulk_work():
        return await heard(groups, steps, work or writing(steps, name))


async def waiting_for_the_lock(
    steps: LoggedSteps, sent: Callable[[CommitGroups], Coroutine[Any, Any, str]]
) -> tuple[CommitGroups, asyncio.Task[str]]:
    """Groups on `steps` whose write lock another process holds (until `steps.lock_free` is set), and
    the task of `sent`, a first batch, once its group waits for it."""
    groups = CommitGroups(steps.steps())
    steps.lock_free.clear()
    first = asyncio.create_task(sent(groups))
    await until_logged(steps, "waits for the lock")
    return groups, first


async def until_logged(steps: LoggedSteps, line: str) -> None:
    """A few turns of the loop, until another task logged `line`."""
    while line not in steps.log:
        await asyncio.sleep(0)


async def test_batches_waiting_behind_one_share_the_next_transaction() -> None:
    steps = LoggedSteps()
    groups = CommitGroups(steps.steps())
    release = asyncio.Event()

    async def first() -> str:
        steps.log.append("first writes")
        await release.wait()  # the others arrive while it holds the transaction
        return "first"

    running = asyncio.create_task(heard(groups, steps, first))
    await until_logged(steps, "first writes")
    others = []
    for name, fails in (("a", False), ("b", True), ("c", False)):
        REQUEST.set(f"request-{name}")  # each caller's context goes with its batch
        others.append(asyncio.create_task(heard(groups, steps, writing(steps, name, fails=fails))))
    REQUEST.set("none")
    await asyncio.sleep(0)
    release.set()
    assert await asyncio.gather(running, *others) == ["first", "a", "b is refused", "c"]

    assert steps.log.index("heard first") > steps.log.index("COMMIT")
    steps.log.remove("heard first")  # its caller runs on when the loop gets to it: any time after
    assert steps.log == [
        "BEGIN", "first writes", "COMMIT",
        "BEGIN",
        "SAVEPOINT grouped", "a writes as request-a", "RELEASE grouped",
        "SAVEPOINT grouped", "b writes as request-b", "ROLLBACK TO grouped", "RELEASE grouped",
        "SAVEPOINT grouped", "c writes as request-c", "RELEASE grouped",
        "COMMIT", "heard a", "heard b is refused", "heard c",
    ]  # fmt: skip


async def test_a_failed_commit_is_every_callers_error() -> None:
    steps = LoggedSteps(commit_fails=True)
    groups = CommitGroups(steps.steps())
    results = await asyncio.gather(
        groups.run(writing(steps, "a")), groups.run(writing(steps, "b")), return_exceptions=True
    )
    assert [type(r) for r in results] == [OSError, OSError]
    assert "heard" not in " ".join(steps.log)


async def test_a_batch_alone_has_no_savepoint_and_its_failure_rolls_back() -> None:
    steps = LoggedSteps()
    groups = CommitGroups(steps.steps())
    with pytest.raises(ValueError, match="alone is refused"):
        await groups.run(writing(steps, "alone", fails=True))
    assert steps.log == ["BEGIN", "alone writes as none", "ROLLBACK"]
    assert await groups.run(writing(steps, "next")) == "next"  # the groups go on after a failure


async def test_a_group_of_bulk_batches_runs_in_the_background_and_one_short_write_keeps_it_in_front() -> None:
    steps = LoggedSteps()
    groups = CommitGroups(steps.steps())

    release = asyncio.Event()

    async def held() -> str:
        steps.log.append("batch 1 writes as none")
        await release.wait()  # the next ones arrive while it holds the transaction: they wait for the next
        return "batch 1"

    first = asyncio.create_task(bulk(groups, steps, "batch 1", held))
    await until_logged(steps, "batch 1 writes as none")
    waiting = [asyncio.create_task(bulk(groups, steps, "batch 2")), asyncio.create_task(bulk(groups, steps, "batch 3"))]
    await asyncio.sleep(0)
    release.set()
    await asyncio.gather(first, *waiting)
    mixed = [
        asyncio.create_task(bulk(groups, steps, "batch 4")),
        asyncio.create_task(heard(groups, steps, writing(steps, "upsert"))),
    ]
    await asyncio.gather(*mixed)
    assert [line for line in steps.log if not line.startswith("heard")] == [
        "into the background", "BEGIN", "batch 1 writes as none", "COMMIT", "back to the foreground",
        "into the background", "BEGIN", "SAVEPOINT grouped", "batch 2 writes as none", "RELEASE grouped",
        "SAVEPOINT grouped", "batch 3 writes as none", "RELEASE grouped", "COMMIT", "back to the foreground",
        "BEGIN", "SAVEPOINT grouped", "batch 4 writes as none", "RELEASE grouped",
        "SAVEPOINT grouped", "upsert writes as none", "RELEASE grouped", "COMMIT",
    ]  # fmt: skip


async def test_batches_that_arrive_while_a_group_waits_for_the_lock_join_its_transaction() -> None:
    steps = LoggedSteps()
    groups, first = await waiting_for_the_lock(steps, lambda groups: heard(groups, steps, writing(steps, "first")))
    others = [asyncio.create_task(heard(groups, steps, writing(steps, name, fails=name == "b"))) for name in "ab"]
    await asyncio.sleep(0)
    steps.lock_free.set()
    assert await asyncio.gather(first, *others) == ["first", "a", "b is refused"]
    assert steps.log == [
        "waits for the lock", "BEGIN",
        "SAVEPOINT grouped", "first writes as none", "RELEASE grouped",
        "SAVEPOINT grouped", "a writes as none", "RELEASE grouped",
        "SAVEPOINT grouped", "b writes as none", "ROLLBACK TO grouped", "RELEASE grouped",
        "COMMIT", "heard first", "heard a", "heard b is refused",
    ]  # fmt: skip


async def test_a_short_write_does_not_join_a_bulk_group_waiting_for_the_lock_nor_let_others_pass_it() -> None:
    steps = LoggedSteps()
    groups, first = await waiting_for_the_lock(steps, lambda groups: bulk(groups, steps, "batch 1"))
    behind = [
        asyncio.create_task(heard(groups, steps, writing(steps, "upsert"))),
        asyncio.create_task(bulk(groups, steps, "batch 2")),
    ]
    await asyncio.sleep(0)
    steps.lock_free.set()
    await asyncio.gather(first, *behind)
    assert [line for line in steps.log if not line.startswith("heard")] == [
        "into the background", "waits for the lock", "BEGIN", "batch 1 writes as none", "COMMIT",
        "back to the foreground",
        "BEGIN", "SAVEPOINT grouped", "upsert writes as none", "RELEASE grouped",
        "SAVEPOINT grouped", "batch 2 writes as none", "RELEASE grouped", "COMMIT",
    ]  # fmt: skip


async def test_a_group_cancelled_once_it_has_the_lock_rolls_back_and_its_callers_hear_it() -> None:
    steps = LoggedSteps()
    groups = CommitGroups(steps.steps())
    caller = asyncio.create_task(groups.run(writing(steps, "a")))
    await until_logged(steps, "BEGIN")
    assert groups._draining is not None
    groups._draining.cancel()  # as the writer thread cancels what it still runs when the store closes
    with pytest.raises(asyncio.CancelledError):
        await caller
    assert steps.log == ["BEGIN", "ROLLBACK"]
