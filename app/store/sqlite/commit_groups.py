"""Group commit: batches that wait for the embedded store's write lock share one transaction.

Many small writes at once (a few events from each of many channels, upserts, consents) each paid a
BEGIN and a COMMIT, whose fsync and write-ahead log append were a third of a small batch's time on
the writer thread; one waited behind the other's. Here the batches that arrived while the writer
was busy run one after another in the next transaction, each inside a savepoint of its own: one that
fails rolls back alone and its caller gets its error, the others commit together. A caller hears of
its batch only once the COMMIT returned, so an answer still means durable. A batch alone in its
group runs without the savepoint, as before. Those that arrive while the group waits for another
process's write lock join it once it has the lock (`_joining`). A group of bulk batches only
(app/thread_priority.py) runs in the background scheduling class.

It runs on the writer thread's loop (app/store/sqlite/threads.py); each batch runs in its caller's
context (a trace span, a request's log fields), as a batch of its own would.
"""

from __future__ import annotations

import asyncio
import contextvars
from collections.abc import Awaitable, Callable
from contextlib import AbstractContextManager
from dataclasses import dataclass
from typing import Any, TypeVar

from app.thread_priority import BULK_WORK

T = TypeVar("T")
MAX_GROUP = 32  # batches per transaction: the first waits for the others' work before its commit


@dataclass(slots=True, eq=False)
class _Waiting:
    work: Callable[[], Awaitable[Any]]
    answer: asyncio.Future[Any]
    context: contextvars.Context


@dataclass(slots=True, eq=False)
class _Done:
    waiting: _Waiting
    value: Any = None
    error: BaseException | None = None


@dataclass(frozen=True, slots=True)
class TransactionSteps:
    """What a group needs of the store: its transaction's ends, SQL on the write connection, and the
    flag a batch's work reads to know it already runs inside one."""

    begin: Callable[[object], Awaitable[None]]
    end: Callable[[object, str], Awaitable[None]]
    execute: Callable[[str], object]
    in_transaction: Callable[[], bool]
    in_batch: contextvars.ContextVar[bool]
    # The group's run in the background class when `True` (every batch in it is bulk work).
    background: Callable[[bool], AbstractContextManager[None]]


class CommitGroups:
    def __init__(self, steps: TransactionSteps) -> None:
        self._steps = steps
        self._waiting: list[_Waiting] = []
        self._draining: asyncio.Task[None] | None = None

    async def run(self, work: Callable[[], Awaitable[T]]) -> T:
        """`work` in the next transaction, with whatever else is waiting; on the writer's loop."""
        loop = asyncio.get_running_loop()
        waiting = _Waiting(work, loop.create_future(), contextvars.copy_context())
        self._waiting.append(waiting)
        if self._draining is None:
            self._draining = loop.create_task(self._drain())
        result: T = await waiting.answer
        return result

    async def _drain(self) -> None:
        try:
            while self._waiting:
                group = [w for w in self._waiting[:MAX_GROUP] if not w.answer.done()]  # not cancelled
                del self._waiting[:MAX_GROUP]
                if group:
                    await self._run_group(group)
        finally:
            self._draining = None

    async def _run_group(self, group: list[_Waiting]) -> None:
        bulk = all(w.context.get(BULK_WORK, False) for w in group)  # one short write lifts them all
        with self._steps.background(bulk):
            await self._run_in_transaction(group)

    async def _run_in_transaction(self, group: list[_Waiting]) -> None:
        steps, holder = self._steps, object()
        try:
            await steps.begin(holder)
        except BaseException as exc:
            _answer([_Done(w, error=exc) for w in group])
            if not isinstance(exc, Exception):
                raise
            return
        # BEGIN waited for the lock on this loop's thread (SQLite's busy handler): the batches sent
        # meanwhile were queued as callbacks, which two turns of the loop bring into `_waiting`.
        try:
            for _ in range(2):
                await asyncio.sleep(0)
        except BaseException as exc:  # cancelled (the store closing): nothing ran in the transaction
            await steps.end(holder, "ROLLBACK")
            _answer([_Done(w, error=exc) for w in group])
            raise
        group += self._joining(group)
        alone = len(group) == 1
        done: list[_Done] = []
        for index, waiting in enumerate(group):
            task = asyncio.get_running_loop().create_task(self._one(waiting, alone), context=waiting.context)
            try:
                done.append(_Done(waiting, value=await task))
            except BaseException as exc:
                if alone or not steps.in_transaction() or not isinstance(exc, Exception):
                    # Its transaction is gone (or this batch was alone in it): what ran before it in
                    # the group was rolled back too, so those callers get the error as well.
                    await steps.end(holder, "ROLLBACK")
                    _answer([_Done(d.waiting, error=exc) for d in done] + [_Done(waiting, error=exc)])
                    self._waiting[:0] = group[index + 1 :]  # not run yet: the next transaction
                    if not isinstance(exc, Exception):
                        raise
                    return
                done.append(_Done(waiting, error=exc))
        try:
            await steps.end(holder, "COMMIT")
        except BaseException as exc:
            _answer([_Done(w, error=exc) for w in group])
            if not isinstance(exc, Exception):
                raise
            return
        _answer(done)

    def _joining(self, group: list[_Waiting]) -> list[_Waiting]:
        """The batches that arrived while `group` waited for the write lock (another process held
        it), taken into its transaction: each would otherwise wait for this one's commit, then take
        the lock and pay a commit of its own. Two worker processes ingesting side by side made two
        transactions a batch, the second its segment upkeep's (12-16 ms with the lock, much of it the
        commit): with this, ~1.65. A foreground batch does not join a group in the background class
        (a bulk group), nor do those behind it pass it."""
        background = all(w.context.get(BULK_WORK, False) for w in group)
        joining: list[_Waiting] = []
        for waiting in list(self._waiting):
            if len(group) + len(joining) >= MAX_GROUP:
                break
            if background and not waiting.context.get(BULK_WORK, False):
                break  # its turn comes next, in the foreground, and those behind it keep their order
            self._waiting.remove(waiting)
            if not waiting.answer.done():  # not cancelled
                joining.append(waiting)
        return joining

    async def _one(self, waiting: _Waiting, alone: bool) -> Any:
        steps = self._steps
        steps.in_batch.set(True)  # in this batch's own context: its nested writes join the transaction
        if alone:
            return await waiting.work()
        steps.execute("SAVEPOINT grouped")
        try:
            value = await waiting.work()
        except BaseException:
            if steps.in_transaction():
                steps.execute("ROLLBACK TO grouped")
                steps.execute("RELEASE grouped")
            raise
        steps.execute("RELEASE grouped")
        return value


def _answer(done: list[_Done]) -> None:
    for item in done:
        if item.waiting.answer.done():  # its caller went away
            continue
        if item.error is not None:
            item.waiting.answer.set_exception(item.error)
        else:
            item.waiting.answer.set_result(item.value)
