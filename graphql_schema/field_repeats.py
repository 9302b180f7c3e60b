"""How often one field is selected at one place of the response, fragments included.

graphql-core's OverlappingFieldsCanBeMergedRule compares every pair of fields that answer under the
same name at the same place, and their sub-selections pair by pair: `{ segments { id } }` written 400
times (1,600 tokens, within every other limit) took 1.5 s to validate. Counting the selections at each
place of the response (its path of response names) bounds that work before the rule runs.

Each fragment's places are worked out once and added where it is spread. This runs only once the
cost limit holds: every field counts at least 1 in the cost, so the places counted here are at most
as many as the cost limit allows, whatever the fragments would expand to.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Iterator, Mapping

from graphql import (
    DocumentNode,
    FieldNode,
    FragmentSpreadNode,
    InlineFragmentNode,
    OperationDefinitionNode,
    SelectionSetNode,
)

from graphql_schema.document_shape import fragment_order, fragments_by_name, spread_names


class _Place:
    """A place of the response: how many selections answer there, and the places below it."""

    __slots__ = ("below", "count")

    def __init__(self, count: int = 0) -> None:
        self.count = count
        self.below: dict[str, _Place] = {}


def most_repeated(document: DocumentNode) -> Iterator[tuple[OperationDefinitionNode, str, int]]:
    """For each operation: the place selected most often (a dotted path of response names, the
    shallowest of the most repeated) and how many times."""
    fragments = fragments_by_name(document)
    operations = [d for d in document.definitions if isinstance(d, OperationDefinitionNode)]
    reachable = list(dict.fromkeys(name for op in operations for name in spread_names(op.selection_set)))
    order, _cycles = fragment_order(fragments, reachable)  # cycles were refused before this runs
    known: dict[str, dict[str, _Place]] = {}
    for name in order:
        known[name] = _places(fragments[name].selection_set, known)
    for operation in operations:
        path, count = _worst(_places(operation.selection_set, known))
        yield operation, path, count


def _places(selections: SelectionSetNode, known: Mapping[str, dict[str, _Place]]) -> dict[str, _Place]:
    found: dict[str, _Place] = {}
    _add(found, selections, known)
    return found


def _add(found: dict[str, _Place], selections: SelectionSetNode, known: Mapping[str, dict[str, _Place]]) -> None:
    for selection in selections.selections:
        if isinstance(selection, FieldNode):
            name = (selection.alias or selection.name).value
            below = _places(selection.selection_set, known) if selection.selection_set else {}
            place = found.get(name)
            if place is None:
                place = found[name] = _Place()
                place.below = below  # made for this field alone: kept, not copied
            else:
                _merge(place.below, below)
            place.count += 1
        elif isinstance(selection, InlineFragmentNode):
            _add(found, selection.selection_set, known)
        elif isinstance(selection, FragmentSpreadNode) and (spread := known.get(selection.name.value)) is not None:
            _merge(found, spread)


def _merge(into: dict[str, _Place], places: Mapping[str, _Place]) -> None:
    """Add `places` into `into`, copying what is new to it (a fragment's places are shared)."""
    stack = [(into, places)]
    while stack:
        target, source = stack.pop()
        for name, place in source.items():
            mine = target.get(name)
            if mine is None:
                mine = target[name] = _Place()
            mine.count += place.count
            stack.append((mine.below, place.below))


def _worst(places: Mapping[str, _Place]) -> tuple[str, int]:
    worst_path, worst = "", 0
    queue: deque[tuple[str, Mapping[str, _Place]]] = deque([("", places)])
    while queue:
        prefix, level = queue.popleft()
        for name, place in level.items():
            path = f"{prefix}.{name}" if prefix else name
            if place.count > worst:
                worst_path, worst = path, place.count
            queue.append((path, place.below))
    return worst_path, worst
