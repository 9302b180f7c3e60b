"""Compiled execution of the documents connectors send in bulk (issue 13; the first step of issue 14's
compiler): a batch of 1,000 events cost the event loop ~330 ms through graphql-core and Strawberry
(variable coercion, Strawberry's argument conversion, and completing 1,000 results field by field),
in one piece, while every other request waited.

A document is compiled once per document object (the cache hands out one object per text) and
operation. It compiles when its operation is one registered root field (`COMPILED_ROOT_FIELDS`)
whose arguments are all variables declared with the argument's exact type, and every selection under
it is a plain field (no fragments, no directives) of object types whose fields are plain attributes,
leaves, or lists of these. Executing the plan then:
- coerces the variables in one walk where they are plain values of their types
  (graphql_schema/variable_coercion.py), else with graphql-core's own code (`Executor.build`), then
  runs our execution checks and converts them into the service's input, on a worker thread for a
  batch (a few items: at once);
- calls the field's service function directly, with the field's own scope rule;
- completes the selection by direct attribute reads and the leaf types' own `serialize`.
Coercion errors, refusals and a resolver's error come out as graphql-core gives them (the
differential test, tests/e2e/test_compiled_execution.py, holds the two executors to the same
responses). A caller the field's scope refuses, and every other document, is executed by graphql-core;
`cdp_graphql_executions_total{executor}` counts which one ran.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from graphql import (
    DocumentNode,
    ExecutionResult,
    FieldNode,
    GraphQLEnumType,
    GraphQLError,
    GraphQLList,
    GraphQLNonNull,
    GraphQLObjectType,
    GraphQLOutputType,
    GraphQLScalarType,
    GraphQLSchema,
    OperationDefinitionNode,
    OperationType,
    SelectionSetNode,
    VariableNode,
    get_operation_ast,
    is_input_type,
    located_error,
    type_from_ast,
)
from strawberry.types.base import StrawberryObjectDefinition

from app.domain.access import Scope
from app.off_loop import off_loop
from app.thread_priority import bulk_work
from graphql_schema.compiled_queries import build_executor
from graphql_schema.document_memo import DocumentMemo
from graphql_schema.execution import CheckedExecution, refusals
from graphql_schema.variable_coercion import UNHANDLED, Coerce, Coercers

INLINE_ITEMS = 20  # variables' list items coerced on the loop; more go to a worker thread
Convert = Callable[[Mapping[str, Any]], Any]  # the coerced arguments → what the service takes
Resolve = Callable[[Any, Any], Awaitable[Any]]  # (context, converted arguments) → the field's value


@dataclass(frozen=True, slots=True)
class RootField:
    """A root field executed without graphql-core: its scope, its argument conversion (run on a worker
    thread with the coercion) and its service call."""

    scope: Scope
    convert: Convert
    resolve: Resolve


@dataclass(frozen=True, slots=True)
class _Selection:
    """One response key of an object: `attribute` read (None: `__typename`), then `complete`d."""

    key: str
    attribute: str | None
    complete: Callable[[Any], Any]


@dataclass(frozen=True, slots=True)
class Plan:
    root: RootField
    field_node: FieldNode
    key: str
    arguments: tuple[tuple[str, str], ...]  # (argument name, variable name)
    complete: Callable[[Any], Any]
    nullable: bool  # a resolver's error leaves the field null; otherwise the whole data, as graphql-core does
    operation: OperationDefinitionNode
    # Each variable's coercer (graphql_schema/variable_coercion.py); None when the operation declares
    # variables no argument takes: graphql-core coerces (and may refuse) those too.
    variables: tuple[tuple[str, Coerce], ...] | None


class Compiler:
    """Plans by document and operation name, kept as long as the document lives."""

    def __init__(self, schema: Any, root_fields: Mapping[str, RootField]) -> None:
        self._strawberry = schema
        self._schema: GraphQLSchema = schema._schema
        self._root_fields = dict(root_fields)
        self._plans: DocumentMemo[dict[str | None, Plan | None]] = DocumentMemo()
        self._coercers = Coercers()

    def plan_for(self, document: DocumentNode, operation_name: str | None) -> Plan | None:
        plans = self._plans.setdefault(document, dict)
        if operation_name not in plans:
            plans[operation_name] = self._compile(document, operation_name)
        return plans[operation_name]

    def _compile(self, document: DocumentNode, operation_name: str | None) -> Plan | None:
        operation = get_operation_ast(document, operation_name)
        if operation is None or operation.operation is not OperationType.MUTATION or operation.directives:
            return None
        if len(document.definitions) != 1 or len(operation.selection_set.selections) != 1:
            return None
        field = operation.selection_set.selections[0]
        root_type = self._schema.mutation_type
        if not isinstance(field, FieldNode) or field.directives or root_type is None:
            return None
        root = self._root_fields.get(field.name.value)
        definition = root_type.fields.get(field.name.value)
        if root is None or definition is None or field.selection_set is None:
            return None
        arguments = self._arguments(operation, field, definition.args)
        complete = self._completer(definition.type, field.selection_set)
        if arguments is None or complete is None:
            return None
        key = field.alias.value if field.alias else field.name.value
        nullable = not isinstance(definition.type, GraphQLNonNull)
        return Plan(root, field, key, arguments, complete, nullable, operation, self._variables(operation, arguments))

    def _variables(
        self, operation: OperationDefinitionNode, arguments: tuple[tuple[str, str], ...]
    ) -> tuple[tuple[str, Coerce], ...] | None:
        taken = {variable for _, variable in arguments}
        declared = {v.variable.name.value: v for v in operation.variable_definitions or ()}
        if set(declared) != taken:
            return None
        found = []
        for name, definition in declared.items():
            kind = type_from_ast(self._schema, definition.type)
            if not is_input_type(kind):
                return None
            found.append((name, self._coercers.of(kind)))
        return tuple(found)

    def _arguments(
        self, operation: OperationDefinitionNode, field: FieldNode, declared: Mapping[str, Any]
    ) -> tuple[tuple[str, str], ...] | None:
        """Every declared argument given once, as a variable of exactly its type (so coercion alone
        decides its value: no defaults, no nulls to reject at execution)."""
        variables = {v.variable.name.value: v for v in operation.variable_definitions or ()}
        given: dict[str, str] = {}
        for argument in field.arguments or ():
            if not isinstance(argument.value, VariableNode) or argument.name.value in given:
                return None
            given[argument.name.value] = argument.value.name.value
        if set(given) != set(declared):
            return None
        for name, variable in given.items():
            definition = variables.get(variable)
            if definition is None or definition.directives or definition.default_value is not None:
                return None
            declared_type = type_from_ast(self._schema, definition.type)
            if declared_type is None or str(declared_type) != str(declared[name].type):
                return None
        return tuple(given.items())

    def _completer(self, kind: GraphQLOutputType, selections: SelectionSetNode | None) -> Callable[[Any], Any] | None:
        if isinstance(kind, GraphQLNonNull):
            inner = self._completer(kind.of_type, selections)
            return None if inner is None else _non_null(inner)
        if isinstance(kind, GraphQLList):
            item = self._completer(kind.of_type, selections)
            return None if item is None else _nullable(lambda values: [item(v) for v in values])
        if isinstance(kind, (GraphQLScalarType, GraphQLEnumType)):
            return None if selections is not None else _nullable(kind.serialize)
        if isinstance(kind, GraphQLObjectType) and selections is not None:
            fields = self._object_fields(kind, selections)
            return None if fields is None else _nullable(_object(fields))
        return None

    def _object_fields(self, kind: GraphQLObjectType, selections: SelectionSetNode) -> list[_Selection] | None:
        """The object's response keys in order (repeated keys merged, as graphql-core collects them)."""
        definition = self._strawberry.get_type_by_name(kind.name)
        if not isinstance(definition, StrawberryObjectDefinition) or definition.is_graphql_generic:
            return None
        attributes = {self._strawberry.config.name_converter.get_graphql_name(f): f for f in definition.fields}
        by_key: dict[str, list[FieldNode]] = {}
        for node in selections.selections:
            if not isinstance(node, FieldNode) or node.directives or node.arguments:
                return None
            by_key.setdefault(node.alias.value if node.alias else node.name.value, []).append(node)
        chosen: list[_Selection] = []
        for key, nodes in by_key.items():
            name = nodes[0].name.value
            if name == "__typename":
                chosen.append(_Selection(key, None, _constant(kind.name)))
                continue
            field = attributes.get(name)
            if field is None or field.base_resolver is not None or field.permission_classes or field.extensions:
                return None
            merged = _merged(nodes)
            complete = self._completer(kind.fields[name].type, merged)
            if complete is None:
                return None
            chosen.append(_Selection(key, field.python_name, complete))
        return chosen


def _merged(nodes: list[FieldNode]) -> SelectionSetNode | None:
    sets = [n.selection_set for n in nodes if n.selection_set is not None]
    if not sets:
        return None
    return SelectionSetNode(selections=tuple(s for selection_set in sets for s in selection_set.selections))


def _constant(value: str) -> Callable[[Any], str]:
    return lambda _: value


def _nullable(complete: Callable[[Any], Any]) -> Callable[[Any], Any]:
    return lambda value: None if value is None else complete(value)


def _non_null(complete: Callable[[Any], Any]) -> Callable[[Any], Any]:
    def checked(value: Any) -> Any:
        if value is None:
            raise TypeError("a non-null field resolved to null")
        return complete(value)

    return checked


def _object(fields: Sequence[_Selection]) -> Callable[[Any], dict[str, Any]]:
    def complete(value: Any) -> dict[str, Any]:
        return {s.key: s.complete(value if s.attribute is None else getattr(value, s.attribute)) for s in fields}

    return complete


async def run(plan: Plan, schema: GraphQLSchema, document: DocumentNode, options: dict[str, Any]) -> ExecutionResult:
    """Execute `plan` as graphql-core would execute `document` with `options` (its `execute` keywords)."""
    # Coercing and completing a batch is milliseconds of Python: a worker thread does them, not the
    # loop. A few items are done at once, sooner than a busy loop would get back to them after a hop.
    small = list_items(options.get("variable_values")) <= INLINE_ITEMS
    with bulk_work(not small):  # a batch: its threads' work in the background class (thread_priority.py)
        return await _run(plan, schema, document, options, small=small)


async def _run(
    plan: Plan, schema: GraphQLSchema, document: DocumentNode, options: dict[str, Any], *, small: bool
) -> ExecutionResult:
    errors, arguments = await off_loop(not small, _coerced, plan, schema, document, options)
    if errors:
        return ExecutionResult(None, errors=errors)
    path = [plan.key]
    try:
        value = await plan.root.resolve(options.get("context_value"), arguments)
        data = {plan.key: await off_loop(not small, plan.complete, value)}
    except Exception as exc:  # a resolver's error: graphql-core's located error, and null up to data
        error = located_error(exc, [plan.field_node], path)
        return ExecutionResult({plan.key: None} if plan.nullable else None, errors=[error])
    return ExecutionResult(data, errors=None)


def list_items(variables: Mapping[str, Any] | None) -> int:
    """The items of the lists given as variables: what coercing and completing grow with."""
    return sum(len(value) for value in (variables or {}).values() if isinstance(value, list))


def _coerced(
    plan: Plan, schema: GraphQLSchema, document: DocumentNode, options: dict[str, Any]
) -> tuple[list[GraphQLError], Any]:
    """The variables coerced (in one walk, or by graphql-core's `build`) and our execution checks, then
    the field's conversion: what `run` hands a worker thread for a batch."""
    coerced = _plain_variables(plan, options)
    if coerced is None:  # graphql-core's coercion: its values, or its errors
        built = build_executor(schema, document, options)
        if isinstance(built, list):
            return built, None
        coerced = built.variable_values.coerced
    elif refused := refusals(document, plan.operation, coerced):  # as CheckedExecution.build checks
        return refused, None
    return [], plan.root.convert({argument: coerced[variable] for argument, variable in plan.arguments})


def _plain_variables(plan: Plan, options: Mapping[str, Any]) -> dict[str, Any] | None:
    """The variables coerced in one walk (graphql_schema/variable_coercion.py), as graphql-core would
    coerce them; None for anything it must judge, or an executor other than ours."""
    given, executor_class = options.get("variable_values"), options.get("executor_class")
    if plan.variables is None or not isinstance(given, dict) or executor_class is not CheckedExecution:
        return None
    coerced = {}
    for name, coerce in plan.variables:
        value = coerce(given[name], 0) if name in given else UNHANDLED  # graphql-core leaves a missing one out
        if value is UNHANDLED:
            return None
        coerced[name] = value
    return coerced


def allowed(plan: Plan, context: Any) -> bool:
    """The field's scope rule holds: otherwise graphql-core runs it and its permission says why not."""
    principal = getattr(context, "principal", None)
    return principal is not None and principal.may(plan.root.scope)
