"""A single-document profile update, expressed once and applied by every backend.

MongoDB runs it natively as one `update_one` (`$set`, `$inc`, `$max`, `$min`, `$push` with
`$each`/`$sort`/`$slice`); the embedded store and new-profile creation run `apply_change`, which
implements the same operators on a plain document. The contract tests hold the two to each other.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from functools import lru_cache
from operator import itemgetter
from typing import Any


@dataclass(frozen=True, slots=True)
class CappedPush:
    """Append `items` to a list, keep it sorted by `sort` (key → 1 or -1), keep the first `cap`."""

    items: list[dict[str, Any]]
    sort: dict[str, int]
    cap: int


@dataclass(slots=True)
class ProfileChange:
    set: dict[str, Any] = field(default_factory=dict)
    inc: dict[str, int] = field(default_factory=dict)
    max: dict[str, datetime] = field(default_factory=dict)
    min: dict[str, datetime] = field(default_factory=dict)
    push: dict[str, CappedPush] = field(default_factory=dict)
    append: dict[str, list[dict[str, Any]]] = field(default_factory=dict)

    def touches(self, field: str) -> bool:
        """Whether the change sets, pushes or appends anything under the top-level `field`."""
        return any(path.split(".", 1)[0] == field for path in (*self.set, *self.push, *self.append))

    def fields(self) -> frozenset[str]:
        """The top-level fields the change writes, by any of its operations."""
        operations = (self.set, self.inc, self.max, self.min, self.push, self.append)
        return frozenset(path.split(".", 1)[0] for operation in operations for path in operation)

    def is_empty(self) -> bool:
        return not (self.set or self.inc or self.max or self.min or self.push or self.append)

    def set_field(self, path: str, value: Any, *, at: datetime, source: str) -> None:
        """Set an identity or descriptive field and remember when and from where: the merge
        reconciliation rules (MOST_RECENT, OLDEST, SOURCE_PRIORITY) decide on that."""
        self.set[path] = value
        key = provenance_key(path)
        self.set[f"fieldTimes.{key}"] = at
        self.set[f"fieldSources.{key}"] = source

    def with_values(self, form: Callable[[Any], Any]) -> ProfileChange:
        """The same change with its values in another form (a store's document form: as JSON reads
        them back), to apply to documents held in that form. One call of `form` for all of them:
        it is an encoding and a decoding for the embedded store, whose cost is mostly per call."""
        pushes = list(self.push.items())
        values, inc, maximum, minimum, items, append = form(
            (self.set, self.inc, self.max, self.min, [push.items for _, push in pushes], self.append)
        )
        return ProfileChange(
            set=values,
            inc=inc,
            max=maximum,
            min=minimum,
            push={path: CappedPush(new, push.sort, push.cap) for (path, push), new in zip(pushes, items, strict=True)},
            append=append,
        )

    def stamped(self, at: datetime) -> ProfileChange:
        """Every write bumps `version` (optimistic concurrency) and `updatedAt`."""
        self.inc["version"] = self.inc.get("version", 0) + 1
        self.set["updatedAt"] = at
        return self


def provenance_key(path: str) -> str:
    """`traits.tier` → `traits:tier`: one key in `fieldTimes`, not a nested path."""
    return path.replace(".", ":")


def apply_change(
    document: dict[str, Any], change: ProfileChange, *, pushed_out: list[tuple[str, Any]] | None = None
) -> dict[str, Any]:
    """Apply `change` to `document` in place, with MongoDB's semantics for each operator. `pushed_out`
    is given (path, item) for each item a capped push left out of its list (the embedded store keeps
    an interaction its profile's recent list no longer holds elsewhere)."""
    for path, value in change.set.items():
        parent, key = _parent(document, path)
        parent[key] = value
    for path, amount in change.inc.items():
        parent, key = _parent(document, path)
        parent[key] = (parent.get(key) or 0) + amount
    for path, value in change.max.items():
        parent, key = _parent(document, path)
        if parent.get(key) is None or value > parent[key]:
            parent[key] = value
    for path, value in change.min.items():
        parent, key = _parent(document, path)
        if parent.get(key) is None or value < parent[key]:
            parent[key] = value
    for path, items in change.append.items():
        parent, key = _parent(document, path)
        parent[key] = [*(parent.get(key) or []), *items]
    for path, push in change.push.items():
        parent, key = _parent(document, path)
        merged = [*(parent.get(key) or []), *push.items]
        for sort_key, direction in reversed(push.sort.items()):
            merged.sort(key=itemgetter(sort_key), reverse=direction < 0)
        if pushed_out is not None:
            pushed_out += [(path, item) for item in merged[push.cap :]]
        parent[key] = merged[: push.cap]
    return document


@lru_cache(maxsize=4096)
def _steps(path: str) -> tuple[tuple[str, ...], str]:
    """A dotted path's parents and key: the same few hundred paths come back with every event."""
    *parents, key = path.split(".")
    return tuple(parents), key


def _parent(document: dict[str, Any], path: str) -> tuple[dict[str, Any], str]:
    parents, key = _steps(path)
    node = document
    for part in parents:
        child = node.get(part)
        if child is None:
            child = node[part] = {}
        node = child
    return node, key
