"""A bound on the lists given in the variables, checked before graphql-core coerces them.

Coercion walks every item on the event loop: 100,000 strings for `interactions(types: $t)` held it for
a good part of a second, and then reached the store. No list argument of this API means more than
QueryLimits.max_list_items items (an event batch is at most 10,000), so a longer one is refused
before coercion. Only lists the schema types as lists are counted: a JSON property value (an event's
`properties`) is the event checks' business, where it is refused for that event alone.
"""

from __future__ import annotations

from collections.abc import Mapping, Set

from graphql import (
    DocumentNode,
    GraphQLError,
    GraphQLInputObjectType,
    GraphQLInputType,
    GraphQLList,
    GraphQLNonNull,
    GraphQLSchema,
    OperationDefinitionNode,
    VariableDefinitionNode,
    type_from_ast,
)

from graphql_schema.document_memo import DocumentMemo
from graphql_schema.limits import LIMIT_EXCEEDED


def list_refusal(
    schema: GraphQLSchema,
    document: DocumentNode,
    operation_name: str | None,
    variables: Mapping[str, object] | None,
    most_items: int,
) -> GraphQLError | None:
    """LIMIT_EXCEEDED naming the first variable holding a list longer than `most_items`."""
    if not variables:
        return None
    by_operation = _list_variables.setdefault(document, dict)
    found = by_operation.get(operation_name)
    if found is None:
        if _operation(document, operation_name) is None:
            # graphql-core refuses the request; its name is not kept (each one sent was, for ever).
            return None
        found = by_operation[operation_name] = _variables_holding_lists(schema, document, operation_name)
    for name, declared, definition in found:
        if name not in variables:
            continue
        longest = _longest_list(variables[name], declared, most_items)
        if longest > most_items:
            return GraphQLError(
                f"variable ${name} holds a list of {longest:,} items; at most {most_items:,} are accepted",
                definition,
                extensions={"code": LIMIT_EXCEEDED},
            )
    return None


def _variables_holding_lists(
    schema: GraphQLSchema, document: DocumentNode, operation_name: str | None
) -> tuple[tuple[str, GraphQLInputType, VariableDefinitionNode], ...]:
    """The operation's variables whose type may hold a list: the only ones worth walking, worked out
    once per document (no operation: none, and graphql-core says why)."""
    operation = _operation(document, operation_name)
    found = []
    for definition in operation.variable_definitions or () if operation is not None else ():
        declared = type_from_ast(schema, definition.type)
        if declared is not None and _may_hold_lists(declared):  # type: ignore[arg-type]
            found.append((definition.variable.name.value, declared, definition))
    return tuple(found)  # type: ignore[arg-type]


def _operation(document: DocumentNode, name: str | None) -> OperationDefinitionNode | None:
    operations = [d for d in document.definitions if isinstance(d, OperationDefinitionNode)]
    if name is None:
        return operations[0] if len(operations) == 1 else None
    return next((o for o in operations if o.name is not None and o.name.value == name), None)


def _longest_list(value: object, declared: GraphQLInputType, most_items: int) -> int:
    """The longest list in `value` where the schema expects a list, or the first one longer than
    `most_items` (iterative: how deep a value nests is the client's choice)."""
    longest = 0
    stack: list[tuple[object, GraphQLInputType]] = [(value, declared)]
    while stack:
        value, declared = stack.pop()
        if isinstance(declared, GraphQLNonNull):
            declared = declared.of_type
        if isinstance(declared, GraphQLList):
            if isinstance(value, list):
                longest = max(longest, len(value))
                if longest > most_items:
                    return longest
                if _may_hold_lists(declared.of_type):
                    stack.extend((item, declared.of_type) for item in value)
            else:  # a single value stands for a list of one
                stack.append((value, declared.of_type))
        elif isinstance(declared, GraphQLInputObjectType) and isinstance(value, dict):
            for field_name, field_type in _list_fields(declared):
                if field_name in value:
                    stack.append((value[field_name], field_type))
    return longest


def _may_hold_lists(declared: GraphQLInputType) -> bool:
    """Worked out once per type: it is asked for every list met (each event's identifiers)."""
    found = _MAY_HOLD_LISTS.get(declared)
    if found is None:
        found = _MAY_HOLD_LISTS[declared] = _holds_lists(declared, frozenset())
    return found


def _list_fields(declared: GraphQLInputObjectType) -> tuple[tuple[str, GraphQLInputType], ...]:
    """The fields of an input type that are, or may contain, lists: only those are walked (an event's
    scalars are not). Worked out once per type."""
    found = _LIST_FIELDS.get(declared)
    if found is None:
        found = _LIST_FIELDS[declared] = tuple(
            (name, field.type) for name, field in declared.fields.items() if _holds_lists(field.type, {declared})
        )
    return found


def _holds_lists(declared: GraphQLInputType, visiting: Set[GraphQLInputObjectType]) -> bool:
    while isinstance(declared, (GraphQLNonNull, GraphQLList)):
        if isinstance(declared, GraphQLList):
            return True
        declared = declared.of_type
    if not isinstance(declared, GraphQLInputObjectType):
        return False
    if declared in visiting:
        return True  # a type containing itself: walked, to be safe
    return any(_holds_lists(field.type, visiting | {declared}) for field in declared.fields.values())


_LIST_FIELDS: dict[GraphQLInputObjectType, tuple[tuple[str, GraphQLInputType], ...]] = {}
_MAY_HOLD_LISTS: dict[GraphQLInputType, bool] = {}
_list_variables: DocumentMemo[dict[str | None, tuple[tuple[str, GraphQLInputType, VariableDefinitionNode], ...]]] = (
    DocumentMemo()
)
