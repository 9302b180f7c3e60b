"""Fault injection around a real storage backend: every write through a transaction counts against
a budget, and the write past it fails (or kills the process) before it reaches the database."""

from __future__ import annotations

import os
import random
import subprocess
import sys
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any, TypeVar

from app.domain.errors import StoreUnavailable
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
        "claim_identity_keys",
        "write_profiles",
        "record_messages",
        "append_interactions",
        "append_consent",
        "assign_consents",
    }
)


PROJECT_ROOT = Path(__file__).resolve().parents[1]


def run_script(script: str, *args: str) -> subprocess.CompletedProcess[str]:
    """`script` in a Python process of its own, from the project's root (it imports app and tests):
    how a test has a process killed as kill -9 would (`os._exit(9)`, exit code 9) and looks after."""
    return subprocess.run(
        [sys.executable, "-c", script, *args], cwd=PROJECT_ROOT, capture_output=True, text=True, timeout=60
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


class FlakyStore:
    """The backend as a bad network makes it: any call, outside or inside a transaction, fails now and
    then with StoreUnavailable, before it reaches the database or (for writes) after it did and the
    acknowledgement was lost. Seeded, so a failing run can be replayed. `rate` 0 turns it off."""

    def __init__(self, inner: ProfileStore, rate: float, seed: int = 1) -> None:
        self._inner = inner
        self.rate = rate
        self._random = random.Random(seed)
        self.injected = 0

    def _fail(self) -> bool:
        if self.rate and self._random.random() < self.rate:
            self.injected += 1
            return True
        return False

    def _flaky(self, name: str, call: Callable[..., Any]) -> Callable[..., Any]:
        async def flaky(*args: Any, **kwargs: Any) -> Any:
            if self._fail():
                raise StoreUnavailable(f"injected: {name} never reached the store")
            result = await call(*args, **kwargs)
            if name in WRITES and self._fail():
                raise StoreUnavailable(f"injected: the acknowledgement of {name} was lost")
            return result

        return flaky

    async def run_in_transaction(self, work: Callable[[StoreTransaction], Awaitable[T]]) -> T:
        return await self._inner.run_in_transaction(lambda tx: work(_FlakyTransaction(tx, self)))  # type: ignore[arg-type]

    def __getattr__(self, name: str) -> Any:
        attribute = getattr(self._inner, name)
        if name in ("batch", "blocking_groups", "watch_segment_events", "close", "backend") or not callable(attribute):
            return attribute
        return self._flaky(name, attribute)


class _FlakyTransaction:
    def __init__(self, inner: StoreTransaction, store: FlakyStore) -> None:
        self._inner = inner
        self._store = store

    def __getattr__(self, name: str) -> Any:
        return self._store._flaky(name, getattr(self._inner, name))
