"""A compiled query's executor is built from what was worked out once for its document
(graphql_schema/prepared_operations.py): for any operation's variables, of any input types of the real
schema, given, missing, null or wrong, it is the executor graphql-core's `Executor.build` makes (the
same operation, fragments and variables, their sources included), or the same refusals, or nothing,
and then `build` runs and words the errors."""

from __future__ import annotations

from typing import Any

from graphql import GraphQLInputObjectType, parse, type_from_ast
from graphql.execution.executor import Executor
from hypothesis import given, settings
from hypothesis import strategies as st

from graphql_schema.compiled_requests import VALIDATION_RULES
from graphql_schema.execution import CheckedExecution
from graphql_schema.limits import QueryLimits
from graphql_schema.prepared_operations import PreparedOperations
from graphql_schema.schema import build_schema, schema
from tests.property.test_variable_coercion import values

SCHEMA = schema._schema
INPUT_TYPES = sorted(n for n, t in SCHEMA.type_map.items() if isinstance(t, GraphQLInputObjectType))
LEAF_TYPES = ["String", "ID", "Int", "Float", "Boolean", "JSON", "DateTime", "Date"]
DEFAULTS = {"String": '"x"', "Int": "3", "Boolean": "true", "ID": '"7"', "Float": "1.5"}
FRAGMENT = "fragment Shown on Query { __typename }"


def _declared(data: st.DataObject, index: int) -> tuple[str, str]:
    """A variable's declaration (`$v0: [Int!]! = ...`) and its name."""
    named = data.draw(st.sampled_from(LEAF_TYPES + INPUT_TYPES))
    written = data.draw(st.sampled_from([named, f"{named}!", f"[{named}!]", f"[{named}]!"]))
    default = DEFAULTS.get(named) if written == named else None
    if default is not None and data.draw(st.booleans()):
        written += f" = {default}"
    return f"$v{index}: {written}", f"v{index}"


def _executors(text: str, operation: str | None, given_values: Any) -> tuple[Any, Any]:
    document = parse(text)
    options = {
        "root_value": None,
        "variable_values": given_values,
        "operation_name": operation,
        "context_value": None,
        "executor_class": CheckedExecution,
    }
    core = CheckedExecution.build(SCHEMA, document, raw_variable_values=given_values, operation_name=operation)
    prepared_operations = PreparedOperations(SCHEMA)
    prepared = prepared_operations.of(document, operation)
    ours = prepared_operations.executor(prepared, document, options) if prepared is not None else None
    return core, ours


def _same(core: Any, ours: Any) -> None:
    if ours is None:
        return  # graphql-core builds it
    if isinstance(core, list):
        assert isinstance(ours, list)
        assert [e.formatted for e in ours] == [e.formatted for e in core]
        return
    assert isinstance(ours, Executor) and type(ours) is type(core)
    assert ours.operation is core.operation
    assert ours.fragment_definitions == core.fragment_definitions and ours.fragments == core.fragments
    assert ours.variable_values.coerced == core.variable_values.coerced
    assert _sources(ours) == _sources(core)
    assert ours.is_awaitable is core.is_awaitable and ours.hide_suggestions is core.hide_suggestions
    assert ours.field_resolver is core.field_resolver and ours.type_resolver is core.type_resolver


def _sources(executor: Any) -> dict[str, tuple[Any, ...]]:
    """The variables' sources, their types by name (graphql-core makes a new wrapper type each time)."""
    return {
        name: (source.signature.name, str(source.signature.type), source.signature.default, source.value)
        for name, source in executor.variable_values.sources.items()
    }


@settings(max_examples=300, deadline=None)
@given(st.data())
def test_the_prepared_executor_is_graphql_cores_or_leaves_the_request_to_it(data: st.DataObject) -> None:
    declared = [_declared(data, i) for i in range(data.draw(st.integers(0, 4)))]
    header = f"({', '.join(d for d, _ in declared)})" if declared else ""
    text = f"query Q{header} {{ ...Shown }} query Other {{ __typename }} {FRAGMENT}"
    given_values: dict[str, Any] = {}
    document = parse(text)
    for definition, (_, name) in zip(document.definitions[0].variable_definitions or (), declared, strict=True):  # type: ignore[attr-defined]
        kind = type_from_ast(SCHEMA, definition.type)
        if data.draw(st.integers(0, 4)):  # mostly given
            given_values[name] = data.draw(values(kind))
    core, ours = _executors(text, "Q", given_values)
    _same(core, ours)


def test_plain_variables_get_an_executor_without_graphql_cores_build() -> None:
    text = f"query Q($id: ID!, $n: Int, $s: String, $b: Boolean = true) {{ ...Shown }} {FRAGMENT}"
    core, ours = _executors(text, "Q", {"id": 12, "s": None, "b": False})  # $n left out: nullable
    assert isinstance(ours, CheckedExecution)
    assert ours.variable_values.coerced == {"id": "12", "s": None, "b": False}
    _same(core, ours)
    core, ours = _executors(text, None, {"id": "a", "n": 2, "b": True})  # the only operation
    assert isinstance(ours, CheckedExecution)
    _same(core, ours)


def test_what_only_graphql_core_words_is_left_to_it() -> None:
    two = "query A($id: ID!) { __typename } query B { __typename }"
    assert _executors(two, None, {"id": "1"})[1] is None  # which operation: "Must provide operation name"
    assert _executors(two, "C", {"id": "1"})[1] is None  # no such operation
    assert _executors(two, "A", {})[1] is None  # a required variable missing
    assert _executors(two, "A", {"id": None})[1] is None
    assert _executors(two, "A", {"id": 1.5})[1] is None  # a value its type refuses
    operations = PreparedOperations(SCHEMA)
    document = parse(two)
    prepared = operations.of(document, "A")
    assert prepared is not None and prepared.variable_values(["1"]) is None  # variables that are no object
    assert isinstance(_executors(two, "A", {"id": "1"})[1], CheckedExecution)
    defaulted = "query A($n: Int = 3) { __typename }"
    assert _executors(defaulted, "A", {})[1] is None
    assert _executors(defaulted, "A", {"n": 4})[1].variable_values.coerced == {"n": 4}


def test_a_pages_refusal_is_returned_as_checked_execution_returns_it() -> None:
    limits = QueryLimits()
    checked = build_schema(limits)
    text = "query Page($n: Int!) { segments { name members(first: $n) { edges { node { id } } } } }"
    document = checked.gate.prepare_now(text, VALIDATION_RULES).document  # its page checks registered
    assert document is not None
    prepared_operations = PreparedOperations(checked._schema)
    prepared = prepared_operations.of(document, "Page")
    assert prepared is not None
    refused = 0
    for first in (10, 0, limits.page_size + 1):
        options = {"variable_values": {"n": first}, "executor_class": CheckedExecution}
        core = CheckedExecution.build(checked._schema, document, raw_variable_values={"n": first})
        ours = prepared_operations.executor(prepared, document, options)
        assert ours is not None
        _same(core, ours)
        refused += isinstance(ours, list)
    assert refused == 2


def test_the_executor_class_must_be_ours() -> None:
    document = parse("query A($id: ID!) { __typename }")
    prepared_operations = PreparedOperations(SCHEMA)
    prepared = prepared_operations.of(document, "A")
    assert prepared is not None
    options = {"variable_values": {"id": "1"}, "executor_class": Executor}
    assert prepared_operations.executor(prepared, document, options) is None
