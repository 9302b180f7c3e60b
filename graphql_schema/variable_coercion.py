"""Coercing a compiled operation's variables (graphql_schema/compiled.py) in one walk.

graphql-core walks a variable twice, once to refuse a value nested too deeply
(`input_is_nested_too_deeply`) and once to coerce it (`coerce_input_value`), asking its type
predicates at every value: ~37 ms of a 1,000-event batch, ~13 of them the first walk. Here each input
type gets a function made once (`Coercers.of`) that returns exactly what graphql-core returns for the
plain values connectors send, and `UNHANDLED` for anything else: a null or a missing field where a
value is required, an unknown field, a single value given for a list, a leaf its type refuses, a
one-of input object, a value nested deeper than graphql-core allows. The caller then coerces with
graphql-core, whose values or errors the response gives (tests/property/test_variable_coercion.py
holds the two to the same values)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Final

from graphql import (
    GraphQLEnumType,
    GraphQLInputObjectType,
    GraphQLInputType,
    GraphQLList,
    GraphQLNonNull,
    GraphQLScalarType,
    Undefined,
    is_required_input_field,
)
from graphql.language.parser import MAX_NESTING_DEPTH
from graphql.utilities.coerce_input_value import coerce_default_value

UNHANDLED: Final = object()  # not a plain value of its type: graphql-core decides
Coerce = Callable[[Any, int], Any]  # (value, its depth as graphql-core counts it) -> coerced, or UNHANDLED


class Coercers:
    """One coercer per input type of a schema, made when first asked for and kept."""

    def __init__(self) -> None:
        self._made: dict[int, Coerce] = {}
        self._types: list[GraphQLInputType] = []  # alive while their ids are keys

    def of(self, kind: GraphQLInputType) -> Coerce:
        found = self._made.get(id(kind))
        if found is None:
            # An input object may hold itself (a condition's `and`): while it is made, a field of it
            # reaching it again gets this forwarder.
            made: list[Coerce] = []
            self._made[id(kind)] = lambda value, depth: made[0](value, depth)
            self._types.append(kind)
            made.append(self._make(kind))
            self._made[id(kind)] = found = made[0]
        return found

    def _make(self, kind: GraphQLInputType) -> Coerce:
        if isinstance(kind, GraphQLNonNull):
            return _non_null(self.of(kind.of_type))
        if isinstance(kind, GraphQLList):
            return _list(self.of(kind.of_type))
        if isinstance(kind, GraphQLInputObjectType):
            if kind.is_one_of:
                return _unhandled
            fields = [(name, field.out_name or name, self.of(field.type), field) for name, field in kind.fields.items()]
            return _object(kind, fields)
        if isinstance(kind, (GraphQLScalarType, GraphQLEnumType)):
            return _leaf(kind)
        return _unhandled


def _unhandled(value: Any, depth: int) -> Any:
    return UNHANDLED


def _non_null(inner: Coerce) -> Coerce:
    def coerce(value: Any, depth: int) -> Any:
        if value is None or value is Undefined:
            return UNHANDLED
        return inner(value, depth)

    return coerce


def _list(item: Coerce) -> Coerce:
    def coerce(value: Any, depth: int) -> Any:
        if depth >= MAX_NESTING_DEPTH and not (value.__class__ is list and not value):
            return UNHANDLED  # graphql-core counts a value's items, or the value itself, a level deeper
        if value is None or value is Undefined:
            return None
        if value.__class__ is not list:
            return UNHANDLED  # a single value stands for a list of one: graphql-core's
        coerced = []
        for one in value:
            done = item(one, depth + 1)
            if done is UNHANDLED:
                return UNHANDLED
            coerced.append(done)
        return coerced

    return coerce


def _object(kind: GraphQLInputObjectType, fields: list[tuple[str, str, Coerce, Any]]) -> Coerce:
    known = {name for name, _, _, _ in fields}
    out_type = kind.out_type

    def coerce(value: Any, depth: int) -> Any:
        if value is None or value is Undefined:
            return None
        if not isinstance(value, dict) or not known.issuperset(value) or (value and depth >= MAX_NESTING_DEPTH):
            return UNHANDLED
        coerced: dict[str, Any] = {}
        for name, out_name, field_coerce, field in fields:
            given = value.get(name, Undefined)
            if given is Undefined:
                if is_required_input_field(field):
                    return UNHANDLED
                default = coerce_default_value(field)
                if default is not Undefined:
                    coerced[out_name] = default
                continue
            done = field_coerce(given, depth + 1)
            if done is UNHANDLED:
                return UNHANDLED
            coerced[out_name] = done
        return out_type(coerced)

    return coerce


def _leaf(kind: GraphQLScalarType | GraphQLEnumType) -> Coerce:
    read = kind.coerce_input_value

    def coerce(value: Any, depth: int) -> Any:
        if value is None or value is Undefined:
            return None
        try:
            done = read(value)
        except Exception:  # refused: graphql-core says why
            return UNHANDLED
        return UNHANDLED if done is Undefined else done

    return coerce
