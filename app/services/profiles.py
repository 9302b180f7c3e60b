"""Profile reads and direct writes: by id (following merges), by identifier, typed listing, upsert."""

from __future__ import annotations

import re
from collections.abc import Awaitable, Callable, Collection, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from app.domain import clock
from app.domain.errors import InvalidInput
from app.domain.event_effects import identifier_records
from app.domain.events import RawIdentifier
from app.domain.identifiers import Identifier
from app.domain.matching.fields import stated_person
from app.domain.paging import Window
from app.domain.profile import Profile
from app.domain.profile_bounds import traits_refusal
from app.domain.profile_change import ProfileChange
from app.domain.profile_input import change_for_fields, parse_profile_input
from app.domain.profile_query import ProfileFilter
from app.services.identity_policy import IdentityPolicy
from app.services.match_candidates import merge_lookalikes
from app.services.ports import ProfileStore, StoreTransaction
from app.services.privacy import without_suppressed
from app.services.profile_changes import UNHEARD, Cause, ProfileChanges, ProfilesChanged
from app.services.profile_reads import read_again
from app.services.profile_writes import SYSTEM_ACTOR, with_retries, write_to_resolved_profile

SOURCE = re.compile(r"^[a-z][a-z0-9_]{0,31}\Z")
Written = tuple[Profile, tuple[str, ...]]  # an upsert's profile as written, and the profiles merged into it


@dataclass(frozen=True, slots=True)
class Page:
    profiles: list[Profile]
    has_next: bool
    has_previous: bool


def check_page_size(first: int, *, maximum: int, field: str = "first") -> None:
    if not 1 <= first <= maximum:
        raise InvalidInput(f"{field} must be between 1 and {maximum}, got {first}", field=field)


async def list_profiles(store: ProfileStore, query: ProfileFilter, window: Window[str], *, max_page_size: int) -> Page:
    """A page of the live profiles `query` matches, in id order (`window`: ids)."""
    check_page_size(window.size, maximum=max_page_size, field=window.argument)
    read = await store.list_profiles(
        query, after=window.after, before=window.before, limit=window.size + 1, from_end=window.from_end
    )
    return _page(read, window)


async def member_pages(
    store: ProfileStore, segment_ids: Collection[str], window: Window[str], *, max_page_size: int
) -> dict[str, Page]:
    """`list_profiles(ProfileFilter(segment=id))` for many segments, in one store read."""
    check_page_size(window.size, maximum=max_page_size, field=window.argument)
    found = await store.members_of_segments(
        segment_ids, after=window.after, before=window.before, limit=window.size + 1, from_end=window.from_end
    )
    return {segment_id: _page(members, window) for segment_id, members in found.items()}


def _page(read: list[Profile], window: Window[str]) -> Page:
    cut = window.cut(read)
    return Page(cut.items, cut.has_next, cut.has_previous)


async def upsert_profile(
    store: ProfileStore,
    identifiers: list[RawIdentifier],
    fields: dict[str, Any],
    *,
    source: str = "upsert",
    policy: IdentityPolicy | None = None,
    changes: ProfileChanges = UNHEARD,
    actor: str = SYSTEM_ACTOR,
) -> Profile:
    """Find the customer by identifiers (or create them) and set the given fields; `source` (a CRM,
    a form…) is what the SOURCE_PRIORITY merge rule ranks; `actor` (the key's name) is recorded on
    a merge the upsert makes."""
    [written] = await upsert_profiles(
        store, [(identifiers, fields)], source=source, policy=policy, changes=changes, actor=actor
    )
    if isinstance(written, InvalidInput):
        raise written
    return written


async def upsert_profiles(
    store: ProfileStore,
    upserts: Sequence[tuple[list[RawIdentifier], dict[str, Any]]],
    *,
    source: str = "upsert",
    policy: IdentityPolicy | None = None,
    changes: ProfileChanges = UNHEARD,
    actor: str = SYSTEM_ACTOR,
) -> list[Profile | InvalidInput]:
    """`upsert_profile` for each (identifiers, fields), in one transaction: each upsert is its own unit
    of work, so one refused (its input, an erased person's identifiers, the traits bound) writes
    nothing and answers its InvalidInput, and the others go on; they are durable together, with one
    commit (the demo data's 248 CRM profiles took 0.9 s of the first start as 248 commits)."""
    policy = policy or IdentityPolicy()
    if not SOURCE.match(source):
        raise InvalidInput("source must be 1-32 lower-case letters, digits or underscores", field="source")
    at = clock.now()
    results: list[Written | InvalidInput | Callable[[StoreTransaction], Awaitable[Written]]] = []
    for identifiers, fields in upserts:  # invalid input is refused before any transaction
        try:
            results.append(_upsert(identifiers, fields, source, policy, at, actor))
        except InvalidInput as exc:
            results.append(exc)
    if any(callable(unit) for unit in results):
        async with store.batch():
            for n, unit in enumerate(results):
                if callable(unit):
                    try:
                        results[n] = await with_retries(store, unit)
                    except InvalidInput as exc:
                        results[n] = exc
    written = [result for result in results if isinstance(result, tuple)]
    ids = [profile.id for profile, _ in written]
    # Before the upkeep, as after an ingested batch: the check the write left stays until both ran, so
    # that a process stopped in between has them run when it comes due (SegmentEngine.missed_writes).
    await merge_lookalikes(store, ids, policy, changes=changes)
    merged = [profile_id for _, away in written for profile_id in away]
    await changes.publish(ProfilesChanged.of(Cause.UPSERT, ids), ProfilesChanged.of(Cause.MERGE, merged))
    now = iter(await read_again(store, [profile for profile, _ in written]))  # after the upkeep: its segments
    answers: list[Profile | InvalidInput] = []
    for result in results:
        if isinstance(result, tuple):
            answers.append(next(now))
        else:
            assert isinstance(result, InvalidInput)
            answers.append(result)
    return answers


def _upsert(
    identifiers: list[RawIdentifier],
    fields: dict[str, Any],
    source: str,
    policy: IdentityPolicy,
    at: datetime,
    actor: str,
) -> Callable[[StoreTransaction], Awaitable[Written]]:
    """The unit of work of one upsert; InvalidInput at once when its input is invalid."""
    normalised, parsed = parse_profile_input(identifiers, fields)
    linking = policy.usable(normalised)
    person = stated_person(parsed.first_name, parsed.last_name, parsed.birth_date)

    async def work(tx: StoreTransaction) -> Written:
        await linking.refuse_unless_own(tx, policy.protection)
        kept = await without_suppressed(tx, linking.identifiers)

        def build(profile: Profile, additions: list[Identifier]) -> ProfileChange:
            if (refusal := traits_refusal(profile.traits, parsed.traits, field="traits")) is not None:
                raise refusal  # the unit rolls back: nothing of this upsert is written
            stated = profile.qualitative.preferences
            if refusal := traits_refusal(stated, parsed.preferences, field="preferences", kind="preferences"):
                raise refusal
            change = change_for_fields(parsed, at=at, source=source, profile=profile)
            if additions:
                change.append["identifiers"] = identifier_records(additions, at=at, source=source)
            return change.stamped(at)

        return await write_to_resolved_profile(tx, kept, build, at=at, policy=policy, actor=actor, person=person)

    return work
