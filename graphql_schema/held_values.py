"""Values an object already holds for one of its resolver fields.

A list's items often have their fields' values read for the whole list at once (a segment history's
500 events, each one's segment and profile): each item then holds its value, and its resolver only
hands it back. Marked with `held_in`, such a resolver's value is read straight from the item by a
compiled plan (graphql_schema/compiled_queries.py), with no call and no `info` made for each item;
graphql-core calls the resolver, which answers the same from what the item holds."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Final, TypeVar

F = TypeVar("F", bound=Callable[..., Any])


class _NotHeld:
    """What an item holds when its value was not read for it: its resolver reads it."""

    __slots__ = ()

    def __repr__(self) -> str:
        return "NOT_HELD"


NOT_HELD: Final[Any] = _NotHeld()


def held_in(attribute: str) -> Callable[[F], F]:
    """Mark a resolver whose object may hold its value in `attribute` (NOT_HELD when it does not)."""

    def mark(resolver: F) -> F:
        resolver.held_in = attribute  # type: ignore[attr-defined]
        return resolver

    return mark
