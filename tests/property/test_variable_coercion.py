"""Compiled operations coerce their variables in one walk (graphql_schema/variable_coercion.py): for
any value, of any input type of the real schema, the walk either gives exactly graphql-core's value
or leaves the value to graphql-core (whose errors the response then gives); and it does give a value
for the plain batches connectors send."""

from __future__ import annotations

from typing import Any

import orjson
from graphql import (
    GraphQLEnumType,
    GraphQLInputObjectType,
    GraphQLInputType,
    GraphQLList,
    GraphQLNonNull,
    GraphQLScalarType,
    Undefined,
    parse,
    type_from_ast,
)
from graphql.execution.values import input_is_nested_too_deeply
from graphql.utilities import coerce_input_value
from hypothesis import given, settings
from hypothesis import strategies as st

from bench import serving_requests
from graphql_schema.schema import schema
from graphql_schema.variable_coercion import UNHANDLED, Coercers

SCHEMA = schema._schema
INPUT_TYPES = sorted(n for n, t in SCHEMA.type_map.items() if isinstance(t, GraphQLInputObjectType))
JSON_VALUES = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=5),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=3), inner, max_size=3),
    max_leaves=6,
)
ODD = st.none() | st.booleans() | st.integers(-(2**40), 2**40) | st.floats() | st.text(max_size=4) | st.just([])
LEAVES = {
    "String": st.text(max_size=8),
    "ID": st.text(max_size=8) | st.integers(0, 10**6),
    "Int": st.integers(-(2**33), 2**33),
    "Float": st.floats() | st.integers(-100, 100),
    "Boolean": st.booleans(),
    "JSON": JSON_VALUES,
    "DateTime": st.sampled_from(["2026-11-02T10:00:00Z", "2026-11-02T10:00:00+02:00", "2026-11-02", "24:00", "x"]),
    "Date": st.sampled_from(["1980-02-29", "1981-02-29", "1980-02-29T00:00:00Z", "x"]),
}


def values(kind: GraphQLInputType, depth: int = 0) -> st.SearchStrategy[Any]:
    """Mostly well-formed values of `kind`, with the faults clients make mixed in at every level."""
    if depth > 4:
        return ODD
    if isinstance(kind, GraphQLNonNull):
        return values(kind.of_type, depth) | st.none()
    if isinstance(kind, GraphQLList):
        item = values(kind.of_type, depth + 1)
        return st.lists(item, max_size=3) | item | st.none()
    if isinstance(kind, GraphQLInputObjectType):
        fields = {name: values(field.type, depth + 1) for name, field in kind.fields.items()}
        required = {name: s for name, s in fields.items() if isinstance(kind.fields[name].type, GraphQLNonNull)}
        optional = {name: strategy for name, strategy in fields.items() if name not in required}
        well_formed = st.fixed_dictionaries(required, optional=optional)
        faulty = st.fixed_dictionaries({}, optional={**fields, "unknownField": ODD})
        return well_formed | well_formed | faulty | ODD
    if isinstance(kind, GraphQLEnumType):
        return st.sampled_from(sorted(kind.values)) | st.text(max_size=6) | ODD
    assert isinstance(kind, GraphQLScalarType)
    return LEAVES.get(kind.name, st.text(max_size=6)) | ODD


def _graphql_core(value: Any, kind: GraphQLInputType) -> Any:
    if input_is_nested_too_deeply(value, kind):
        return Undefined
    return coerce_input_value(value, kind)


@settings(max_examples=400, deadline=None)
@given(st.data())
def test_the_one_walk_gives_graphql_cores_value_or_leaves_the_value_to_it(data: st.DataObject) -> None:
    named = SCHEMA.type_map[data.draw(st.sampled_from(INPUT_TYPES))]
    wrapped = [named, GraphQLNonNull(named), GraphQLNonNull(GraphQLList(GraphQLNonNull(named)))]
    kind = data.draw(st.sampled_from(wrapped))
    value = data.draw(values(kind))
    walked = Coercers().of(kind)(value, 0)
    if walked is not UNHANDLED:
        assert walked == _graphql_core(value, kind)


def test_a_batch_of_the_bench_events_is_coerced_in_one_walk_as_graphql_core_coerces_it() -> None:
    body = orjson.loads(serving_requests.ingest_bodies(1000, batches=1, batch_size=200, seed=3)[0])
    definition = parse(body["query"]).definitions[0].variable_definitions[0]  # type: ignore[attr-defined]
    kind = type_from_ast(SCHEMA, definition.type)
    events = body["variables"][definition.variable.name.value]
    walked = Coercers().of(kind)(events, 0)
    assert walked is not UNHANDLED and len(walked) == 200
    assert walked == coerce_input_value(events, kind)


def test_values_graphql_core_refuses_or_reads_otherwise_are_left_to_it() -> None:
    events = GraphQLNonNull(GraphQLList(GraphQLNonNull(SCHEMA.type_map["EventInput"])))
    identifier = SCHEMA.type_map["IdentifierInput"]
    walk = Coercers().of(events)
    event = {"messageId": "m", "type": "page_view", "channel": "web", "timestamp": "2026-11-02T10:00:00Z",
             "identifiers": [{"type": "email", "value": "a@b.c"}]}  # fmt: skip
    assert walk([event], 0) is not UNHANDLED
    for faulty in (
        None,
        event,  # one event for a list of them: graphql-core reads it as a list of one
        [None],
        [{**event, "unknown": 1}],
        [{k: v for k, v in event.items() if k != "messageId"}],
        [{**event, "timestamp": 12}],  # a number for a String (a text that is no time is the event's to judge)
        [{**event, "identifiers": {"type": "email", "value": "a@b.c"}}],
    ):
        assert walk(faulty, 0) is UNHANDLED, faulty
    deep: Any = {"type": "email", "value": "v"}
    nested = GraphQLList(identifier)
    for _ in range(250):  # lists of lists past graphql-core's nesting limit
        deep, nested = [deep], GraphQLList(nested)
    assert Coercers().of(nested)(deep, 0) is UNHANDLED
    assert input_is_nested_too_deeply(deep, nested)
