"""One execution of a subscription event for all the subscribers who asked the same thing.

graphql-core executes a subscription's selection set once per event and per subscriber: a segment
change watched by a thousand dashboards is a thousand identical executions (and, when they select
`profile`, a thousand store reads). Subscribers who sent the same document with the same variables
under the same API key get the same answer, so the first one's execution is awaited by the others.
An error in it is still masked, logged and given its own id for each subscriber (graphql_schema/errors.py
works on each subscriber's copy of the result). An answer without errors is also encoded once and
written to the others without going through their execution at all (graphql_schema/broadcast.py).
"""

from __future__ import annotations

import asyncio
import time
from collections import OrderedDict
from collections.abc import Awaitable, Callable, Collection, Mapping
from typing import Any, TypeVar, cast

from graphql import ExecutionResult, OperationDefinitionNode
from strawberry.schema.schema import StrawberryGraphQLCoreExecutionContext

T = TypeVar("T")
S = TypeVar("S")

# Events in flight at once are few (a change reaches every subscriber within milliseconds); an
# entry pushed out early only costs a subscriber its own execution, never a wrong answer.
KEPT = 256
# How long a read or an answer worked out for one subscriber serves the others: longer than a change's
# fan-out to all of them (10,000 subscribers: under a second), short enough that a subscriber far behind
# reads the profile as it is now. An erasure another process made, of a person merged into the one
# its exits name or in no segment at all, is told to no process but its own: within this time, a
# subscriber behind could still be answered with what was read before it.
SHARED_FOR_SECONDS = 2.0

_payloads: OrderedDict[str, object] = OrderedDict()
_Kept = tuple[object, asyncio.Future[ExecutionResult] | ExecutionResult, float]  # payload, result, when
_results: OrderedDict[tuple[object, ...], _Kept] = OrderedDict()


def shared_payload(key: str, make: Callable[[S], T], source: S) -> T:
    """The same root value for every subscriber of one event (`key`: the event's id), which is what
    lets their executions be recognised as one."""
    found = _payloads.get(key)
    if found is None:
        found = _payloads[key] = make(source)
        if len(_payloads) > KEPT:
            _payloads.popitem(last=False)
    return cast(T, found)


def forget_profiles(profile_ids: Collection[str]) -> None:
    """People erased (each profile of their families): the kept payloads of their events, recorded under
    any of these ids or whose profile was read as one of them (an id merged away reads the survivor),
    with the store reads made for them, and the answers worked out from those go, so that a subscriber
    still behind by some of their events executes them anew and reads the profile as it is now (null),
    not as it was read before."""
    erased = set(profile_ids)
    gone = [key for key, payload in _payloads.items() if _concerns(payload, erased)]
    dropped = {id(_payloads.pop(key)) for key in gone}
    for key in [key for key in _results if key[0] in dropped]:
        del _results[key]


def _concerns(payload: object, erased: set[str]) -> bool:
    if getattr(payload, "profile_id", None) in erased:
        return True
    reads = getattr(payload, "reads", None)
    return isinstance(reads, ReadsOfAnEvent) and reads.read_profile_in(erased)


def asked(operation: OperationDefinitionNode, variables: Mapping[str, Any], context: object) -> tuple[object, ...]:
    """The document, operation, variables and caller; empty when they cannot be told (not shared)."""
    location = operation.loc
    principal = getattr(context, "principal", None)
    if location is None or principal is None:
        return ()
    name = operation.name.value if operation.name else None
    return (location.source.body, name, repr(sorted(variables.items())), principal)


def answered(payload: object, asked: tuple[object, ...]) -> ExecutionResult | None:
    """The result of `payload` for what was `asked` if it is already worked out (and did not fail), else None."""
    found = _kept(payload, asked)
    if found is None or isinstance(found, ExecutionResult):
        return found
    if found.done() and not found.cancelled() and found.exception() is None:
        return found.result()
    return None


async def answer(payload: object, asked: tuple[object, ...]) -> ExecutionResult | None:
    """The result of `payload` for what was `asked`, once a subscriber asking the same has executed it
    (awaited while it runs); None when nobody has, or when it failed (the caller's own execution then
    meets the same failure where graphql-core and Strawberry handle it)."""
    found = _kept(payload, asked)
    if found is None or isinstance(found, ExecutionResult):
        return found
    try:
        return await _awaited(found)
    except Exception:
        return None


def _kept(payload: object, asked: tuple[object, ...]) -> asyncio.Future[ExecutionResult] | ExecutionResult | None:
    return _fresh((id(payload), *asked), payload) if asked else None


def _fresh(key: tuple[object, ...], payload: object) -> asyncio.Future[ExecutionResult] | ExecutionResult | None:
    """The answer kept under `key` for this very payload (not one whose id was reused since), unless
    it was worked out more than SHARED_FOR_SECONDS ago."""
    entry = _results.get(key)
    if entry is None or entry[0] is not payload:
        return None
    finished = isinstance(entry[1], ExecutionResult) or entry[1].done()  # one still running is awaited
    if finished and time.monotonic() - entry[2] > SHARED_FOR_SECONDS:
        del _results[key]
        return None
    return entry[1]


class ReadsOfAnEvent:
    """The store reads one event's fields make (its profile, its segment), made once for every group
    that executes the event: groups differ by document and key, not by what the store holds, and the
    types apply each caller's scopes and masking to what was read."""

    def __init__(self) -> None:
        self._reads: dict[str, tuple[asyncio.Future[Any], float]] = {}

    def read(self, what: str, make: Callable[[], Awaitable[T]]) -> Awaitable[T]:
        now = time.monotonic()
        kept = self._reads.get(what)
        if kept is None or (kept[0].done() and now - kept[1] > SHARED_FOR_SECONDS):  # far behind: read anew
            # Its own task: a subscriber who leaves meanwhile must not cancel the others' read.
            kept = self._reads[what] = (asyncio.ensure_future(make()), now)
        return _awaited(kept[0])

    def read_profile_in(self, profile_ids: Collection[str]) -> bool:
        """Whether the profile read for this event is one of `profile_ids`."""
        kept = self._reads.get("profile")
        if kept is None or not kept[0].done() or kept[0].cancelled() or kept[0].exception() is not None:
            return False
        return getattr(kept[0].result(), "id", None) in profile_ids


class SharedEventExecution(StrawberryGraphQLCoreExecutionContext):
    """Strawberry's executor, reusing a subscription event's result across identical subscriptions."""

    _share_key: tuple[object, ...] | None = None
    _asked: tuple[object, ...] | None = None  # what this subscriber asked, worked out at its first event

    def build_per_event_executor(self, payload: Any) -> Any:
        if self._asked is None:
            self._asked = self._what_was_asked()
        if not self._asked:
            return super().build_per_event_executor(payload)
        key = (id(payload), *self._asked)
        found = _fresh(key, payload)
        if found is not None:
            return _Answered(found)
        executor = cast(SharedEventExecution, super().build_per_event_executor(payload))
        executor._share_key = key
        return executor

    def _what_was_asked(self) -> tuple[object, ...]:
        return asked(self.operation, self.variable_values.coerced, self.context_value)

    def execute_operation(self, *args: Any, **kwargs: Any) -> Any:
        outcome = super().execute_operation(*args, **kwargs)
        key = self._share_key
        if key is None:
            return outcome
        if not self.is_awaitable(outcome):
            _keep(key, self.root_value, cast(ExecutionResult, outcome))
            return outcome
        # Run it as its own task: a subscriber who leaves meanwhile must not cancel the others' result.
        running = asyncio.ensure_future(cast(Awaitable[ExecutionResult], outcome))
        _keep(key, self.root_value, running)
        return _awaited(running)


class _Answered:
    """Stands in for the per-event executor of a subscriber whose answer was already worked out."""

    def __init__(self, result: asyncio.Future[ExecutionResult] | ExecutionResult) -> None:
        self.result = result

    def execute_operation(self, *_: Any, **__: Any) -> Any:
        return self.result if isinstance(self.result, ExecutionResult) else _awaited(self.result)


def _keep(key: tuple[object, ...], payload: object, result: asyncio.Future[ExecutionResult] | ExecutionResult) -> None:
    _results[key] = (payload, result, time.monotonic())
    if len(_results) > KEPT:
        _results.popitem(last=False)


async def _awaited(running: asyncio.Future[T]) -> T:
    return await asyncio.shield(running)
