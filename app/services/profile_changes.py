"""The one path for "profiles changed": each write, once durable, reports what it changed here, and
whoever follows profiles (segment upkeep, metrics, and through segments the subscriptions) listens.

A write never knows its listeners: the composition root (app/bootstrap.py) builds one
`ProfileChanges` with them and hands it to the services. Listeners cannot fail the write that
reported: it is committed, so a listener's failure is logged and the next listener still hears.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass
from enum import StrEnum
from typing import Any, Protocol, TypeVar

from app.domain.segments.segment import SegmentEvent
from app.domain.traits.computed import PROFILED_FIELDS

log = logging.getLogger("cdp.changes")
T = TypeVar("T")


class Cause(StrEnum):
    """Why profiles changed (the values are what segment events record as their cause)."""

    EVENT = "event"
    UPSERT = "profile updated"
    CONSENT = "consent"
    MERGE = "merge"
    UNMERGE = "unmerge"
    ERASURE = "profile erased"
    TRAITS = "traits recomputed"


# What an event of each type may change besides stats, identifiers and the recent list.
IDENTITY_PATHS = ("firstName", "lastName", "birthDate", "gender", "language", "company", "jobTitle", "addresses")
EVENT_PATHS: dict[str, tuple[str, ...]] = {
    "identify": (*IDENTITY_PATHS, "traits"),
    "consent_update": ("consents", *PROFILED_FIELDS),  # a refusal of profiling withdraws its traits
    "survey_response": ("qualitative",),
}
EVERY_EVENT_PATHS = ("stats", "identifiers", "recent")


@dataclass(frozen=True, slots=True)
class ProfilesChanged:
    """One durable write's effect on some profiles."""

    cause: Cause
    profile_ids: tuple[str, ...]
    # The stored paths the write touched (camelCase, top level); None: any may have changed.
    paths: frozenset[str] | None = None
    event_types: frozenset[str] = frozenset()  # ingestion: the types of the events that landed
    # Erasure: the person's exits from their segments, recorded with it (erasure_exits). The profile is
    # gone, so no listener could read what it was in.
    exits: tuple[SegmentEvent, ...] = ()

    @classmethod
    def of(cls, cause: Cause, profile_ids: Iterable[str], *, paths: Collection[str] | None = None) -> ProfilesChanged:
        return cls(cause, tuple(dict.fromkeys(profile_ids)), None if paths is None else frozenset(paths))


def events_landed(landed: Mapping[str, Collection[str]], created: Collection[str] = ()) -> list[ProfilesChanged]:
    """An ingested batch's changes from each profile's landed event types: profiles that received the
    same types share one change (listeners then handle them together). A profile the batch `created`
    has every path changed: a segment of what it lacks (no consent, no first name) may take it in."""
    made = set(created)
    by_types: dict[tuple[frozenset[str], bool], list[str]] = {}
    for profile_id, types in landed.items():
        by_types.setdefault((frozenset(types), profile_id in made), []).append(profile_id)
    return [
        ProfilesChanged(
            Cause.EVENT,
            tuple(profile_ids),
            None if new else frozenset(EVERY_EVENT_PATHS).union(*(EVENT_PATHS.get(t, ()) for t in types)),
            types,
        )
        for (types, new), profile_ids in by_types.items()
    ]


class Listener(Protocol):
    """Told of committed changes; what it raises is logged, never given back to the writer."""

    async def __call__(self, changes: Sequence[ProfilesChanged], /) -> object: ...


class ProfileChanges:
    """The fan-out: each listener hears every change, in the order they were given at construction."""

    __slots__ = ("_listeners",)

    def __init__(self, *listeners: Listener) -> None:
        self._listeners = listeners  # fixed: the composition root wires them once

    async def publish(self, *changes: ProfilesChanged) -> None:
        """Tell every listener, to the end even if the caller is cancelled meanwhile (`uncancelled`)."""
        changes = tuple(c for c in changes if c.profile_ids)
        if changes and self._listeners:
            await uncancelled(self._tell(changes))

    async def _tell(self, changes: tuple[ProfilesChanged, ...]) -> None:
        for listener in self._listeners:
            try:
                await listener(changes)
            except Exception:  # the write is durable: report it so; listeners catch up on the next change
                log.exception(
                    "a listener failed on %s of %d profiles; the write stands",
                    "/".join(sorted({c.cause.value for c in changes})),
                    sum(len(c.profile_ids) for c in changes),
                )


_FOLLOWING: set[asyncio.Future[Any]] = set()  # held until done: the loop keeps a task weakly


async def uncancelled(work: Awaitable[T]) -> T:
    """`work` run to its end even if the caller is cancelled meanwhile; the caller still waits for it.
    For what follows a committed write (telling the listeners, and what they need): a client gone, a
    WebSocket closed during a mutation, must not leave segment upkeep undone until the next change.

    A task of its own costs the caller three turns of the loop (the task's start, its end, the
    shield's), each as long as everything else a busy loop runs in a turn: called again from within
    such a task (a batch's listeners told from its after-commit work), `work` runs in that task, which
    no caller can cancel either. Only that task's own code could cut it short (a timeout or a task
    group around it): what follows a write uses neither, and must not."""
    if asyncio.current_task() in _FOLLOWING:
        return await work
    following = asyncio.ensure_future(work)
    _FOLLOWING.add(following)
    following.add_done_callback(_FOLLOWING.discard)
    return await asyncio.shield(following)


async def settled(timeout: float) -> int:
    """Wait, at most `timeout` seconds, for the work following committed writes to end (the server's
    shutdown, before it closes the store); returns how many were still running after it."""
    if _FOLLOWING:
        await asyncio.wait(list(_FOLLOWING), timeout=timeout)
    return len(_FOLLOWING)


UNHEARD = ProfileChanges()
"""No listeners: the default for a service called on its own (tests, tools); the server passes its own."""
