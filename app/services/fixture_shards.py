"""A data set's events cut into parts that share no person, so that two processes can load them
side by side (the first start's demo data: app/bootstrap.py, one part per worker process).

Two events belong to one person when an identifier links them: directly, through other events
(an anonymous visit, then a login naming both the visitor and the email), or through a CRM profile
of profiles.jsonl (its email and its phone). Every such group goes whole into one part, its events
in the file's order, so a part loads as the whole file would for those people, whatever the other
part does meanwhile. The groups are dealt out largest first, each to the part with the fewest events.

Within a batch, the events of a person from the one that merges two of their profiles on go last
(`EventGroups.ingestion_order`), so that the batch's first run, computed before the write lock, holds
most of it. Automatic fuzzy merges (off unless CDP_FUZZY_MERGE_SCORE is set) can join two people by
their names whatever their identifiers: in two parts side by side they meet in either order already.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from app.domain.errors import InvalidInput
from app.domain.identifiers import normalise
from app.services.extended_json import numbered_field_values


@dataclass(frozen=True, slots=True)
class EventGroups:
    """A data set's events by person: each line's group (its identifiers' keys linked through the
    whole file and the CRM profiles), and the lines that link two groups that were apart until then:
    the events that make ingestion merge two profiles."""

    lines: tuple[int, ...]  # every line that is not blank
    group_of: dict[int, str]  # line number -> its person's group (lines without identifiers: none)
    joins: frozenset[int]

    def parts(self, count: int) -> list[set[int]]:
        """The lines in `count` parts (a line that holds no event goes to the first: it is refused
        wherever it is read), each group whole, dealt out largest first."""
        groups: dict[str, list[int]] = {}
        parts: list[set[int]] = [set() for _ in range(count)]
        for number in self.lines:
            if (group := self.group_of.get(number)) is None:
                parts[0].add(number)
            else:
                groups.setdefault(group, []).append(number)
        for numbers in sorted(groups.values(), key=len, reverse=True):
            min(parts, key=len).update(numbers)
        return parts

    def ingestion_order(self, numbers: Sequence[int]) -> list[int]:
        """A batch's lines with each group's lines from its first join in the batch on moved after
        the others, every group's lines in their order. A batch of events is ingested in runs, each
        stopping before an event that links two profiles, and only its first run is computed before
        the write lock (app/services/ingestion.py): in the file's order that run ended at the
        batch's first merge (on the demo data, 23 merges a batch of 1,000: 43 events in on average),
        and the rest was computed holding the lock that the other worker loading the demo data waited
        for. Now those that follow go last (3-154 events of a batch). People do not share profiles, so
        what each ends with does not change."""
        first_join: dict[str, int] = {}
        for position, number in enumerate(numbers):
            if number in self.joins:
                first_join.setdefault(self.group_of[number], position)

        front: list[int] = []
        after: list[int] = []
        for position, number in enumerate(numbers):
            joined = first_join.get(self.group_of.get(number, ""))
            (after if joined is not None and position >= joined else front).append(number)
        return front + after


def event_groups(events: Path, profiles: Path | None) -> EventGroups:
    """The groups of `events`' lines, linked through `profiles` too."""
    people = _People()
    if profiles is not None:
        for _, identifiers in numbered_field_values(profiles, "identifiers"):
            people.link(_keys(identifiers))
    lines: list[int] = []
    first_keys: dict[int, str] = {}
    joins = set()
    for number, identifiers in numbered_field_values(events, "identifiers"):
        lines.append(number)
        keys = _keys(identifiers)
        if people.link(keys):
            joins.add(number)
        if keys:
            first_keys[number] = keys[0]
    group_of = {number: people.root(key) for number, key in first_keys.items()}
    return EventGroups(tuple(lines), group_of, frozenset(joins))


def _keys(raw: Any) -> list[str]:
    """The keys of a line's identifiers, as ingestion reads them (their normalised form; the text as
    it is when it is not valid: the event is refused then, in whichever part). Only the identifiers
    of a line are read (numbered_field_values): decoding the rest was most of the time."""
    if not isinstance(raw, list):
        return []
    keys = []
    for identifier in raw:
        if not isinstance(identifier, dict):
            continue
        type_, value = identifier.get("type"), identifier.get("value")
        if not isinstance(type_, str) or not isinstance(value, str):
            continue
        try:
            keys.append(normalise(type_, value).key)
        except InvalidInput:
            keys.append(f"{type_}:{value}")
    return keys


class _People:
    """Identifier keys grouped by what links them (a disjoint-set forest with path halving)."""

    def __init__(self) -> None:
        self._parent: dict[str, str] = {}

    def root(self, key: str) -> str:
        parent = self._parent
        parent.setdefault(key, key)
        while parent[key] != key:
            parent[key] = parent[parent[key]]
            key = parent[key]
        return key

    def link(self, keys: Iterable[str]) -> bool:
        """Put `keys` in one group; whether that joined groups that were apart, each with a key seen
        before (a key met first here is in no group yet)."""
        keys = list(keys)
        apart = {self.root(key) for key in keys if key in self._parent}
        first: str | None = None
        for key in keys:
            root = self.root(key)
            if first is None:
                first = root
            elif root != first:
                self._parent[root] = first
        return len(apart) > 1
