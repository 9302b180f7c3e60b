"""A data set's events cut into parts that share no person, so that two processes can load them
side by side (the first start's demo data: app/bootstrap.py, one part per worker process).

Two events belong to one person when an identifier links them: directly, through other events
(an anonymous visit, then a login naming both the visitor and the email), or through a CRM profile
of profiles.jsonl (its email and its phone). Every such group goes whole into one part, its events
in the file's order, so a part loads as the whole file would for those people, whatever the other
part does meanwhile. The groups are dealt out largest first, each to the part with the fewest events.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

import orjson

from app.domain.errors import InvalidInput
from app.domain.identifiers import normalise


def event_parts(events: Path, profiles: Path | None, count: int) -> list[set[int]]:
    """The line numbers of `events` in `count` parts (a line that holds no event goes to the first:
    it is refused wherever it is read)."""
    people = _People()
    if profiles is not None:
        for _, document in _documents(profiles):
            people.link(_keys(document))
    lines: list[tuple[int, str | None]] = []
    for number, document in _documents(events):
        keys = _keys(document)
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


def _documents(path: Path) -> Iterator[tuple[int, Any]]:
    """Each line's number (as read_lines counts them) and its JSON, as it is: only the identifiers
    are read here, plain strings (the extended JSON decoding of the rest was most of the time)."""
    with path.open("rb") as handle:
        for number, text in enumerate(handle, start=1):
            if text.strip():
                try:
                    yield number, orjson.loads(text)
                except orjson.JSONDecodeError:
                    yield number, None


def _keys(document: Any) -> list[str]:
    """The identifier keys of a line's document, as ingestion reads them (its normalised form; the
    text as it is when it is not valid: the event is refused then, in whichever part)."""
    raw = document.get("identifiers") if isinstance(document, dict) else None
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
