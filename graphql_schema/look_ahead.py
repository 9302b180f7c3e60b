"""What a list's items will ask for, read from the document before the items are made.

A DataLoader batches the items' reads into one store call, but each item still pays for its own
awaitable: a coroutine, a task, a future in the loader, a turn of the event loop (segmentHistory's
500 events asking for their segment and profile were ~1,000 of each, 3-5 times the cost of the list
without them). A list resolver that knows its items select a field reads that field's values for
every item at once and hands each item its own, and the item's resolver answers at once.
"""

from __future__ import annotations

from collections.abc import Sequence

from strawberry.types.nodes import SelectedField, Selection

from graphql_schema.context import Info


class LookAhead:
    """The selection below the field being resolved, read once for the questions its resolver asks."""

    def __init__(self, info: Info) -> None:
        self._fields = info.selected_fields

    def selects(self, *path: str) -> bool:
        """Whether the selection reaches `path` (GraphQL names: `"profile"`, or `"edges", "node",
        "interactions"`), directly or through fragments. `@skip`/`@include` are not read: a field they
        leave out counts as selected (its values are read and not used)."""
        return any(_reaches(field.selections, path) for field in self._fields)


def _reaches(selections: Sequence[Selection], path: Sequence[str]) -> bool:
    if not path:
        return True
    for selection in selections:
        if isinstance(selection, SelectedField):
            if selection.name == path[0] and _reaches(selection.selections, path[1:]):
                return True
        elif _reaches(selection.selections, path):  # an inline fragment or a fragment spread
            return True
    return False
