"""Fault injection around a real storage backend: every write through a transaction counts against
a budget, and the write past it fails (or kills the process) before it reaches the database."""

from __future__ import annotations

import os
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

from app.services.ports import ProfileStore, StoreTransaction

T = TypeVar("T")

WRITES = frozenset(
    {
        "claim_identities",
        "insert_profile",
        "update_profile",
        "record_message",
        "append_interaction",
        "replace_profile",
        "reassign_history",
        "assign_history",
        "reassign_identities",
        "set_identity_owner",
        "insert_merge",
        "replace_merge",
        "record_refusal",
    }
)


class InjectedFault(Exception):
    pass


class _Budget:
    def __init__(self, writes: int, *, kill: bool) -> None:
        self.left = writes
        self.kill = kill
        self.done: list[str] = []


class _FailingTransaction:
    def __init__(self, inner: StoreTransaction, budget: _Budget) -> None:
        self._inner = inner
        self._budget = budget

    def __getattr__(self, name: str) -> Any:
        attribute = getattr(self._inner, name)
        if name not in WRITES:
            return attribute

        async def write(*args: Any, **kwargs: Any) -> Any:
            if self._budget.left == 0:
                if self._budget.kill:
                    os._exit(9)  # like kill -9: no exception handler, no rollback, no cleanup
                raise InjectedFault(f"injected failure before {name} (after {self._budget.done})")
            result = await attribute(*args, **kwargs)
            self._budget.left -= 1
            self._budget.done.append(name)
            return result

        return write


class FaultyStore:
    """The backend, with writes inside transactions failing once `writes` of them went through."""

    def __init__(self, inner: ProfileStore, writes: int, *, kill: bool = False) -> None:
        self._inner = inner
        self.budget = _Budget(writes, kill=kill)

    async def run_in_transaction(self, work: Callable[[StoreTransaction], Awaitable[T]]) -> T:
        return await self._inner.run_in_transaction(lambda tx: work(_FailingTransaction(tx, self.budget)))  # type: ignore[arg-type]

    def __getattr__(self, name: str) -> Any:
        return getattr(self._inner, name)
