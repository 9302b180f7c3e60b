"""A data set's events cut into parts that share no person, so that two processes can load them
side by side (the first start's demo data: app/bootstrap.py, one part per worker process).

Two events belong to one person when an identifier links them: directly, through other events
(an anonymous visit, then a login naming both the visitor and the email), or through a CRM profile
of profiles.jsonl (its email and its phone). Every such group goes whole into one part, its events
in the file's order, so a part loads as the whole file would for those people, whatever the other
part does meanwhile. The groups are dealt out largest first, each to the part with the fewest events.
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path
from typing import Any

from app.domain.errors import InvalidInput
from app.domain.identifiers import normalise
from app.services.extended_json import numbered_field_values


def event_parts(events: Path, profiles: Path | None, count: int) -> list[set[int]]:
    """The line numbers of `events` in `count` parts (a line that holds no event goes to the first:
    it is refused wherever it is read)."""
    people = _People()
    if profiles is not None:
        for _, identifiers in numbered_field_values(profiles, "identifiers"):
            people.link(_keys(identifiers))
    lines: list[tuple[int, str | None]] = []
    for number, identifiers in numbered_field_values(events, "identifiers"):
        keys = _keys(identifiers)
        people.link(keys)
        lines.append((number, keys[0] if keys else None))
    groups: dict[str, list[int]] = {}
    parts: list[set[int]] = [set() for _ in range(count)]
    for number, key in lines:
        if key is None:
            parts[0].add(number)
        else:
            groups.setdefault(people.root(key), []).append(number)
    for numbers in sorted(groups.values(), key=len, reverse=True):
        min(parts, key=len).update(numbers)
    return parts


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

    def link(self, keys: Iterable[str]) -> None:
        first: str | None = None
        for key in keys:
            root = self.root(key)
            if first is None:
                first = root
            elif root != first:
                self._parent[root] = first
