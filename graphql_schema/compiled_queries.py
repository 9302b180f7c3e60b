"""Compiled execution of queries (issue 14): the documents frontends send millions of times run as a plan
made once, not through graphql-core's per-field interpretation.

graphql-core executes every field of every response the same way: it builds a resolve info, looks up
the field, calls a resolver (Strawberry's wrapper, even for a plain attribute), checks for awaitables
and completes the value by walking the type. The personalisation query has ~60 fields, and that walk
was most of its cost. A plan (the graphql-jit approach) does once per document what does not change
between requests:
- the fields to run, collected by graphql-core's own `collect_fields` (fragments spread, aliases and
  repeated keys merged, `@include`/`@skip` decided: their variables' values are part of the plan's key);
- for each field, either a direct attribute read (a plain Strawberry field: what its resolver would
  do) or a call to the field's own resolver (Strawberry's, so permissions, argument conversion and
  scope rules run as they always do), with its arguments worked out once per request;
- for each value, the completion its type needs: leaf serialisation, lists, objects, null checks.
Resolvers that return awaitables are awaited level by level, all of a level together, so DataLoaders
still batch a list's items into one store call.

Errors: a plan only runs the happy path. Whatever raises (a resolver's error, a null in a non-null
field, a value of the wrong shape) abandons the plan's answer and the same, already-coerced operation
is executed by graphql-core, whose answer (data, errors, paths, null propagation) is the response.
Queries read only, so running their resolvers again changes nothing. What a plan does not handle is
executed by graphql-core from the start: abstract types (`node(id)` returns the Node interface),
introspection, `@defer`, middleware.
`cdp_graphql_executions_total{executor}` counts which executor answered.
"""

from __future__ import annotations

import asyncio
import inspect
import keyword
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, replace
from typing import Any, cast

import strawberry
from graphql import (
    DirectiveNode,
    DocumentNode,
    ExecutionResult,
    Executor,
    FieldNode,
    GraphQLEnumType,
    GraphQLError,
    GraphQLField,
    GraphQLList,
    GraphQLNonNull,
    GraphQLObjectType,
    GraphQLOutputType,
    GraphQLResolveInfo,
    GraphQLScalarType,
    GraphQLSchema,
    OperationType,
    Undefined,
    VariableNode,
    visit,
)
from graphql.execution.collect_fields import FieldDetails, collect_fields
from graphql.execution.values import get_argument_values
from graphql.language import Visitor
from graphql.pyutils import Path
from strawberry.permission import PermissionExtension
from strawberry.types.base import StrawberryList, StrawberryOptional, has_object_definition
from strawberry.types.cast import TYPE_CAST_ATTRIBUTE
from strawberry.types.field import StrawberryField

from app.domain.access import Principal, Scope
from graphql_schema.document_memo import DocumentMemo
from graphql_schema.held_values import NOT_HELD
from graphql_schema.permissions import ScopeRequired

# (run, value, path of the value) → the completed value
Complete = Callable[["_Run", Any, Path | None], Any]
COMPILED, INTERPRETED = "compiled", "graphql-core"
DEFINITION = "strawberry-definition"  # where Strawberry keeps a GraphQL field's StrawberryField


def count(context: Any, executor: str) -> None:
    """One operation answered by `executor` (COMPILED or INTERPRETED), in the request's metrics."""
    metrics = getattr(getattr(context, "services", None), "metrics", None)
    if metrics is not None:
        metrics.child(metrics.graphql_executions, executor).inc()


class NotCompiled(Exception):
    """The document (or this part of it) is left to graphql-core."""


class _Abandoned(Exception):
    """The plan met something off its happy path: graphql-core answers instead."""


# Classes whose instances a resolver returns as values, never awaitables: the built-in ones, and each
# object type's own classes as the compiler meets them (those without `__await__`). A set lookup, where the
# executor's check tries isinstance twice and then a missing attribute, for every resolver's value.
_NOT_AWAITABLE: set[type] = {type(None), str, int, float, bool, list, tuple, dict}

# A resolver called directly: (source, resolve info, arguments) -> value.
DirectCall = Callable[[Any, Any, dict[str, Any]], Any]


@dataclass(slots=True)
class _Field:
    """One response key of an object."""

    key: str
    attribute: str | None  # a plain field's Python attribute; None: call `resolve`
    definition: GraphQLField
    details: list[FieldDetails]
    nodes: list[FieldNode]
    parent: GraphQLObjectType
    complete: Complete
    inner: Complete  # `complete` without its null checks: for a value that is neither null nor an error
    path_needed: bool  # resolvers below it, which see their path (nothing else reads it)
    constant_arguments: dict[str, Any] | None  # worked out at compile time (no variables in them)
    index: int  # this field's slot in a run's argument cache
    # The resolver called as Strawberry's wrapper would call it, when all the wrapper would add is the
    # scope rule (checked here: a caller without the scopes is left to graphql-core, which says why)
    # and arguments that need no conversion: (source, resolve info, arguments) → value.
    direct: DirectCall | None
    scopes: tuple[Scope, ...]
    make_info: Callable[[GraphQLResolveInfo[Any]], Any] | None  # Strawberry's Info, for a direct call
    leaf: str | None  # the name of the field's scalar type, when it is one (maybe non-null)
    coerce: Callable[[Any], Any] | None  # the output coercion of the field's scalar or enum type


@dataclass(frozen=True, slots=True)
class Plan:
    root: Complete  # the operation's root object, completed
    arguments: int  # fields whose arguments are worked out once per run


class _Run:
    """One execution of a plan: the executor graphql-core built (coerced variables, context, root
    value), the awaitables of the level being worked out and the arguments worked out so far."""

    __slots__ = ("arguments", "executor", "is_awaitable", "pending", "principal")

    def __init__(self, executor: Executor[Any], fields: int) -> None:
        self.executor = executor
        self.principal: Principal | None = getattr(executor.context_value, "principal", None)
        self.is_awaitable = executor.is_awaitable
        self.pending: list[tuple[Any, dict[str, Any], str, Complete, Path | None]] = []
        self.arguments: list[dict[str, Any] | None] = [None] * fields

    def arguments_of(self, field: _Field) -> dict[str, Any]:
        if field.constant_arguments is not None:
            return field.constant_arguments
        found = self.arguments[field.index]
        if found is None:
            executor = self.executor
            found = self.arguments[field.index] = get_argument_values(
                field.definition,
                field.nodes[0],
                executor.variable_values,
                field.details[0].fragment_variable_values,
                executor.hide_suggestions,
            )
        return found


# Plans of one document, by operation and values of the variables its @include/@skip read: a frontend's
# few switches make a few (4 booleans, 16); 20 switches sent at random made a new one each request,
# 13 ms of the loop and 126 KB kept, for ever. Past this, graphql-core answers the other values.
PLANS_PER_DOCUMENT = 32


class QueryCompiler:
    """Plans by document, operation name and the values of the variables `@include`/`@skip` read."""

    def __init__(self, strawberry_schema: Any) -> None:
        self._strawberry = strawberry_schema
        self._plans: DocumentMemo[_DocumentPlans] = DocumentMemo()

    def plan_for(self, document: DocumentNode, executor: Executor[Any]) -> Plan | None:
        """The plan for the operation of `document` that `executor` was built for (None: graphql-core
        runs it)."""
        if executor.operation.operation is not OperationType.QUERY or _has_middleware(executor):
            return None
        if executor.abort_signal is not None:
            return None
        plans = self._plans.setdefault(document, lambda: _DocumentPlans(_directive_variables(document)))
        coerced = executor.variable_values.coerced
        operation = executor.operation.name.value if executor.operation.name else None
        key = (operation, *(_frozen(coerced.get(name)) for name in plans.directive_variables))
        if key not in plans.by_key:
            if len(plans.by_key) >= PLANS_PER_DOCUMENT:
                return None  # each new value of its directives' variables a compilation on the loop, kept
            try:
                plans.by_key[key] = _Compilation(self._strawberry, executor).plan()
            except NotCompiled:
                plans.by_key[key] = None
        return plans.by_key[key]


class _DocumentPlans:
    __slots__ = ("by_key", "directive_variables")

    def __init__(self, directive_variables: tuple[str, ...]) -> None:
        self.directive_variables = directive_variables
        self.by_key: dict[tuple[Any, ...], Plan | None] = {}


def build_executor(
    schema: GraphQLSchema, document: DocumentNode, options: Mapping[str, Any]
) -> Executor[Any] | list[GraphQLError]:
    """What graphql-core's `execute` does first, with the keywords Strawberry gives it: the executor
    (variables coerced, our execution checks run), or the errors that stop the request."""
    kept = {k: v for k, v in options.items() if k not in ("executor_class", "variable_values")}
    executor_class = options.get("executor_class") or Executor
    return executor_class.build(schema, document, raw_variable_values=options.get("variable_values"), **kept)


async def run(plan: Plan, executor: Executor[Any]) -> ExecutionResult | None:
    """The plan's answer to the operation `executor` was built for; None when it met something off its
    happy path, and graphql-core must answer."""
    state = _Run(executor, plan.arguments)
    try:
        data = plan.root(state, executor.root_value, None)
        while state.pending:
            await _settle(state)
    except Exception:
        await _drop(state.pending)
        return None
    return ExecutionResult(data, None)


async def _settle(state: _Run) -> None:
    """Await the level's awaitables together (DataLoaders batch them) and complete their values,
    which may leave the next level's awaitables pending."""
    level, state.pending = state.pending, []
    if len(level) == 1:
        values: list[Any] = [await level[0][0]]
    else:
        values = await asyncio.gather(*(item[0] for item in level), return_exceptions=True)
    for (_, container, key, complete, path), value in zip(level, values, strict=True):
        if isinstance(value, Exception):
            raise value
        container[key] = complete(state, value, path)


async def _drop(pending: list[tuple[Any, dict[str, Any], str, Complete, Path | None]]) -> None:
    """Let the abandoned plan's awaitables finish (their errors are graphql-core's to report again): a
    DataLoader future cancelled here would stay cancelled in the loader's cache."""
    if pending:
        await asyncio.gather(*(item[0] for item in pending), return_exceptions=True)
        pending.clear()


class _Compilation:
    """Turns one operation, with one set of `@include`/`@skip` values, into a Plan."""

    def __init__(self, strawberry_schema: Any, executor: Executor[Any]) -> None:
        self._strawberry = strawberry_schema
        self._executor = executor
        self._fields = 0
        self._resolvers = 0  # resolver fields compiled so far: whether a field has any below it

    def plan(self) -> Plan:
        executor = self._executor
        schema = executor.schema
        root_type = schema.query_type
        if root_type is None:
            raise NotCompiled("no query type")
        collected = collect_fields(
            schema,
            executor.fragments,
            executor.variable_values,
            root_type,
            executor.operation,
            executor.hide_suggestions,
        )
        if collected.new_defer_usages:
            raise NotCompiled("@defer")
        root = self._object(root_type, collected.grouped_field_set)
        return Plan(root, self._fields)

    def _object(self, kind: GraphQLObjectType, grouped: Mapping[str, list[FieldDetails]]) -> Complete:
        definition = self._strawberry.get_type_by_name(kind.name)
        python_names = {}
        if definition is not None and hasattr(definition, "fields"):
            converter = self._strawberry.config.name_converter
            python_names = {converter.get_graphql_name(f): f.python_name for f in definition.fields}
        fields: list[_Field | str] = []
        for key, details in grouped.items():
            name = details[0].node.name.value
            if name == "__typename":
                fields.append(key)
                continue
            if name.startswith("__"):
                raise NotCompiled("introspection")
            field_definition = kind.fields.get(name)
            if field_definition is None or any(d.fragment_variable_values is not None for d in details):
                raise NotCompiled(f"{kind.name}.{name}")
            fields.append(self._field(kind, key, field_definition, details, python_names.get(name)))
        complete = _object_completion(kind.name, fields)
        origin = getattr(definition, "origin", None)
        # A generic type's class as well as its specialisation's: `Connection[Interaction]` is a class
        # of its own, and its values are made of `Connection` (each of 300 members' interactions).
        for own in origin.__mro__ if isinstance(origin, type) else ():
            if has_object_definition(own) and not hasattr(own, "__await__") and not hasattr(own, "__getattr__"):
                _NOT_AWAITABLE.add(own)
        if kind.is_type_of is None:
            return complete
        return _type_checked(kind.is_type_of, origin, complete)

    def _field(
        self,
        parent: GraphQLObjectType,
        key: str,
        definition: GraphQLField,
        details: list[FieldDetails],
        python_name: str | None,
    ) -> _Field:
        plain = (
            getattr(definition.resolve, "_is_default", False) and python_name is not None and not _guarded(definition)
        )
        if not plain and definition.resolve is None:
            raise NotCompiled(f"{parent.name}.{key} has no resolver")
        nodes = [d.node for d in details]
        resolvers_before = self._resolvers
        complete, inner = self._completions(definition.type, details)
        resolvers_below = self._resolvers > resolvers_before
        constant = None
        if not plain and not _reads_variables(nodes[0]):
            executor = self._executor
            try:
                constant = get_argument_values(definition, nodes[0], executor.variable_values, None)
            except Exception as exc:  # refused at execution, with graphql-core's words
                raise NotCompiled(str(exc)) from exc
        direct, scopes = self._direct(definition) if not plain else (None, ())
        if not plain and _sees_its_path(direct):
            self._resolvers += 1
        make_info = None
        if direct is not None:
            info_class, strawberry_field = self._strawberry.config.info_class, definition.extensions[DEFINITION]

            def make_info(raw: GraphQLResolveInfo[Any]) -> Any:
                return info_class(_raw_info=raw, _field=strawberry_field)

        leaf = _leaf_type(definition.type)
        self._fields += 1
        return _Field(
            key,
            python_name if plain else None,
            definition,
            details,
            nodes,
            parent,
            complete,
            inner,
            resolvers_below,
            constant,
            self._fields - 1,
            direct,
            scopes,
            make_info,
            leaf.name if isinstance(leaf, GraphQLScalarType) else None,
            leaf.coerce_output_value if leaf is not None else None,
        )

    def _direct(self, definition: GraphQLField) -> tuple[DirectCall | None, tuple[Scope, ...]]:
        """The resolver without Strawberry's wrapper, when the wrapper would only check scopes and
        rename arguments of built-in scalar types; (None, ()) otherwise."""
        field = definition.extensions.get(DEFINITION)
        if not isinstance(field, StrawberryField) or field.base_resolver is None:
            return None, ()
        if not callable(field.base_resolver.wrapped_func):
            return None, ()
        if self._strawberry.schema_converter._get_field_exception_handlers(field):
            return None, ()
        scopes: list[Scope] = []
        for extension in field.extensions:
            if not isinstance(extension, PermissionExtension) or extension.fail_silently:
                return None, ()
            for permission in extension.permissions:
                if not isinstance(permission, ScopeRequired):
                    return None, ()
                scopes.append(permission.scope)
        names = {}
        for argument in field.arguments:
            if not _plain_argument(argument.type):
                return None, ()
            names[self._strawberry.config.name_converter.from_argument(argument)] = argument.python_name
        return _direct_call(field, names), tuple(scopes)

    def _completions(self, kind: GraphQLOutputType, details: list[FieldDetails]) -> tuple[Complete, Complete]:
        """A value's completion: the checks of a nullable or a non-null type (one function, not one
        around the other: a list of 3,000 objects pays them per item) around the value's kind; and
        that inner completion alone, which callers that check the value themselves call directly."""
        checked = _nullable
        if isinstance(kind, GraphQLNonNull):
            checked, kind = _required, kind.of_type
        inner: Complete
        if isinstance(kind, GraphQLList):
            inner = _list(*self._completions(kind.of_type, details))
        elif isinstance(kind, (GraphQLScalarType, GraphQLEnumType)):
            inner = _leaf(kind.coerce_output_value)
        elif isinstance(kind, GraphQLObjectType):
            collected = self._executor.collect_subfields(kind, details)
            if collected.new_defer_usages:
                raise NotCompiled("@defer")
            inner = self._object(kind, collected.grouped_field_set)
        else:
            raise NotCompiled(f"{kind} is abstract")
        return checked(inner), inner


# Leaves whose values pass graphql-core's output coercion unchanged, told by a test on `v`; any other
# value goes through the type's own coercion (which serialises it, or refuses it).
UNCHANGED_LEAVES = {
    "String": "type(v) is str",
    "ID": "type(v) is str",
    "Boolean": "type(v) is bool",
    "Int": "type(v) is int and -2147483648 <= v <= 2147483647",
    "Float": "type(v) is float and v - v == 0.0",  # finite: inf - inf and nan are not 0
}


def _object_completion(type_name: str, fields: list[_Field | str]) -> Complete:
    """The object's completion as one generated function: its fields in response order, each a direct
    attribute read (a leaf passed through when its value needs no coercion), a resolver call or the
    type's name; no per-field dispatch left for the request. The objects below are written into this
    function too (a list of them as a loop), up to MAX_INLINE_DEPTH levels: a list of events with
    each one's segment and profile, or of members with their last interactions, completes thousands."""
    names = _generated_names()
    lines = ["def complete(state, source, path):", "    out = {}"]
    _ObjectCode(names, lines).fields(type_name, fields, source="source", out="out", path="path", depth=1)
    lines.append("    return out")
    complete = _made(lines, names)
    complete.inline_body = (type_name, fields)  # type: ignore[attr-defined]
    return complete


def _list_loop(item: Complete, body: tuple[str, list[_Field | str]], check: type | None, other: Complete) -> Complete:
    """A list of objects' completion as one generated loop, each item's fields written in it (as a
    list inside an object is, `_ObjectCode._value`): for a list whose parent could not write it in
    place, a resolver's awaited value (a segment's history of 500 events) called `item` for each.
    An item that is null, an error or of another class is `item`'s; a value not a list is `other`'s."""
    names = _generated_names()
    names["K0"], names["L0"] = item, other
    lines = [
        "def complete(state, value, path):",
        "    if type(value) is not list:",
        "        return L0(state, value, path)",
        "    out = []",
        "    for i, s in enumerate(value):",
        "        p = None if path is None else Path(path, i, None)",
    ]
    code = _ObjectCode(names, lines)
    own = code._own_class(check, "s", 0)
    lines += [
        f"        if s is None or s is Undefined or isinstance(s, Exception){f' or not ({own})' if own else ''}:",
        "            out.append(K0(state, s, p))",
        "            continue",
        "        o = {}",
    ]
    code.fields(*body, source="s", out="o", path="p", depth=2)
    lines += ["        out.append(o)", "    return out"]
    return _made(lines, names)


def _generated_names() -> dict[str, Any]:
    """What every generated function reads besides its own numbered names."""
    return {
        "Path": Path,
        "_resolve": _resolve,
        "_refused": _refused,
        "_Info": _Info,
        "_NOT_AWAITABLE": _NOT_AWAITABLE,
        "_NOT_HELD": NOT_HELD,
        "Undefined": Undefined,
        "_Abandoned": _Abandoned,
        "_PRESENT_CLASSES": _PRESENT_CLASSES,
        "_present": _present,
    }


def _made(lines: list[str], names: dict[str, Any]) -> Complete:
    # The text is made of Python attribute names from the schema, numbered names and repr()s of
    # response keys and type names (GraphQL names: letters, digits, underscores); nothing else of a request.
    exec("\n".join(lines), names)
    return cast(Complete, names["complete"])


class _ObjectCode:
    """Writes the lines completing an object's fields into a generated function, with the objects
    below written in place (`inline_body`; `inline_check`: the class an instance of which needs no
    type check, anything else goes to the object's own completion), up to MAX_INLINE_DEPTH levels.
    `path` is the expression of the object's path, made where a resolver below may read it."""

    def __init__(self, names: dict[str, Any], lines: list[str]) -> None:
        self.names, self.lines, self.count = names, lines, 0

    def fields(
        self, type_name: str, fields: list[_Field | str], *, source: str, out: str, path: str, depth: int
    ) -> None:
        pad = "    " * depth
        for field in fields:
            if isinstance(field, str):
                self.lines.append(f"{pad}{out}[{field!r}] = {type_name!r}")
                continue
            n = self.count = self.count + 1
            self.names[f"F{n}"], self.names[f"C{n}"], self.names[f"I{n}"] = field, field.complete, field.inner
            key = repr(field.key)
            if field.attribute is None:
                nodes = _page_nodes(field)
                if nodes is not None:
                    self._page_nodes(field, n, nodes, source, out, type_name, path, depth)
                elif field.direct is None:
                    self.lines.append(f"{pad}_resolve(state, F{n}, {source}, {path}, {out})")
                else:
                    self._call(field, n, source, out, type_name, path, depth)
                continue
            attribute = field.attribute
            if attribute is _THE_ITEM:
                read = source
            elif _safe_attribute(attribute):
                read = f"{source}.{attribute}"
            else:
                read = f"getattr({source}, {attribute!r})"
            self.lines.append(f"{pad}v = {read}")
            self._value(field, n, f"{out}[{key}]", type_name, path, depth)

    def _page_nodes(
        self,
        field: _Field,
        n: int,
        nodes: tuple[str, str, list[_Field | str]],
        source: str,
        out: str,
        type_name: str,
        path: str,
        depth: int,
    ) -> None:
        """A connection's edges asked for their node only, written as a loop over the page's nodes
        (`_page_nodes`): the same answer, paths included, with no edge made for each; a connection
        that holds no list of nodes is completed as any other resolver's value."""
        attribute, item_type, item_fields = nodes
        pad, lines, key = "    " * depth, self.lines, repr(field.key)
        item = f"s{depth}"
        lines.append(f"{pad}v = getattr({source}, {attribute!r}, None)")
        item_path = self._loop(field, item, _below(field, type_name, path), depth)
        lines.append(f"{pad}        o{depth} = {{}}")
        self.fields(item_type, item_fields, source=item, out=f"o{depth}", path=item_path, depth=depth + 2)
        lines += [f"{pad}        l{depth}.append(o{depth})", f"{pad}    {out}[{key}] = l{depth}", f"{pad}else:"]
        if field.direct is None:
            lines.append(f"{pad}    _resolve(state, F{n}, {source}, {path}, {out})")
        else:
            self._call(field, n, source, out, type_name, path, depth + 1)

    def _loop(self, field: _Field, item: str, below: str, depth: int) -> str:
        """The head of a loop over the list `v` into `l{depth}`, each item as `item`, with each item's
        path made when resolvers below read it; returns the expression of an item's path."""
        pad, lines = "    " * depth, self.lines
        lines += [f"{pad}if type(v) is list:", f"{pad}    l{depth} = []"]
        if not field.path_needed:
            lines.append(f"{pad}    for {item} in v:")
            return "None"
        lines += [f"{pad}    q{depth} = {below}", f"{pad}    for i{depth}, {item} in enumerate(v):"]
        lines.append(f"{pad}        p{depth} = Path(q{depth}, i{depth}, None)")
        return f"p{depth}"

    def _call(self, field: _Field, n: int, source: str, out: str, type_name: str, path: str, depth: int) -> None:
        """`_resolve`'s work for a resolver called directly, written in place: its value completed as
        an attribute's is (below), or left with the level's awaitables. A list of events asking for
        each one's segment and profile calls thousands of resolvers."""
        pad, lines, key = "    " * depth, self.lines, repr(field.key)
        if field.scopes:
            lines.append(f'{pad}if _refused(state, F{n}): raise _Abandoned("refused: graphql-core says why")')
        alone = _nodes_alone(field) if depth + 2 < MAX_INLINE_DEPTH else None
        if alone is not None:  # the nodes without the connection; the resolver when they cannot be
            self._nodes_alone(field, n, alone, source, out, type_name, path, depth)
            lines.append(f"{pad}else:")
            depth, pad = depth + 1, pad + "    "
        function, with_info = getattr(field.direct, "positional", (None, True))
        method = getattr(field.direct, "method", None)
        info = f"_Info(state, F{n}, {path})"
        if function is not None:  # (self) or (self, info)
            self.names[f"D{n}"] = function
            call = f"D{n}({source}, {info})" if with_info else f"D{n}({source})"
        elif (
            method is not None
            and field.constant_arguments is not None
            and all(_safe_attribute(method[1][name]) for name in field.constant_arguments)
        ):  # a method, its arguments known (each a parameter's name, which Python wrote: an identifier)
            resolver, names, info_name = method
            self.names[f"D{n}"] = resolver
            # Each argument by its keyword, its value a name of the function's: no dict unpacked for
            # each call (the interactions of each of 300 members).
            keywords = [f"{info_name}={info}"] if info_name else []
            for number, (name, value) in enumerate(field.constant_arguments.items()):
                self.names[f"W{n}_{number}"] = value
                keywords.append(f"{names[name]}=W{n}_{number}")
            call = f"D{n}({', '.join([source, *keywords])})"
        else:  # the arguments by their GraphQL names, renamed by the call
            self.names[f"D{n}"] = field.direct
            arguments = f"state.arguments_of(F{n})"
            if field.constant_arguments is not None:
                self.names[f"A{n}"] = field.constant_arguments
                arguments = f"A{n}"
            call = f"D{n}({source}, {info}, {arguments})"
        held = _held_in(field)
        if held is None:
            lines.append(f"{pad}v = {call}")
        else:  # the value the object holds, if it holds one (graphql_schema/held_values.py)
            lines += [f"{pad}v = {source}.{held}", f"{pad}if v is _NOT_HELD:", f"{pad}    v = {call}"]
        lines.append(f"{pad}if type(v) in _NOT_AWAITABLE or not state.is_awaitable(v):")
        self._value(field, n, f"{out}[{key}]", type_name, path, depth + 1)
        lines += [
            f"{pad}else:",
            f"{pad}    {out}[{key}] = None",  # keeps the key's place in the response
            f"{pad}    state.pending.append((v, {out}, {key}, C{n}, {_below(field, type_name, path)}))",
        ]

    def _nodes_alone(
        self, field: _Field, n: int, alone: tuple[Any, str, _Field], source: str, out: str, type_name: str, path: str,
        depth: int,
    ) -> None:  # fmt: skip
        """The head of `_call` for a connection asked for its edges' nodes alone (`_nodes_alone`): the
        nodes from the resolver's `nodes_alone`, and the edges written from them as `_page_nodes`
        writes a connection's (paths included); an `if` whose `else` the caller writes (the resolver)."""
        nodes, connection_type, edges = alone
        _, item_type, item_fields = cast(tuple[str, str, list[_Field | str]], _page_nodes(edges))
        self.names[f"N{n}"] = nodes
        pad, lines = "    " * depth, self.lines
        lines.append(f"{pad}v = N{n}({source}, state.executor.context_value)")
        below = _below(edges, connection_type, _below(field, type_name, path))
        item_path = self._loop(edges, f"s{depth}", below, depth)
        lines.append(f"{pad}        o{depth} = {{}}")
        self.fields(item_type, item_fields, source=f"s{depth}", out=f"o{depth}", path=item_path, depth=depth + 2)
        edges_out = f"{{{edges.key!r}: l{depth}}}"
        lines += [f"{pad}        l{depth}.append(o{depth})", f"{pad}    {out}[{field.key!r}] = {edges_out}"]

    def _value(self, field: _Field, n: int, target: str, type_name: str, path: str, depth: int) -> None:
        pad, lines = "    " * depth, self.lines
        unchanged = UNCHANGED_LEAVES.get(field.leaf) if field.leaf else None
        body = getattr(field.inner, "inline_body", None) if depth < MAX_INLINE_DEPTH else None
        item = getattr(field.inner, "inline_item", None) if depth < MAX_INLINE_DEPTH else None
        below = _below(field, type_name, path)
        if unchanged is not None:
            lines.append(f"{pad}{target} = v if {unchanged} else C{n}(state, v, None)")
        elif field.coerce is not None:  # _leaf's work inline: a response's times and enums, thousands
            self.names[f"S{n}"] = field.coerce
            kept = getattr(field.coerce, "kept_texts", None)  # see graphql_schema/datetime_scalar.py
            if kept is not None:
                self.names[f"M{n}"], self.names[f"Z{n}"], self.names[f"T{n}"] = kept
                lines += [
                    f"{pad}if type(v) is M{n} and v.tzinfo is Z{n} and (t := T{n}.get(v)) is not None:",
                    f"{pad}    {target} = t",
                    f"{pad}elif {PRESENT}:",
                ]
            else:
                lines.append(f"{pad}if {PRESENT}:")
            lines += [
                f"{pad}    v = S{n}(v)",
                f"{pad}    if v is None or v is Undefined:",
                f'{pad}        raise _Abandoned("a leaf that does not serialise")',
                f"{pad}    {target} = v",
                f"{pad}else:",
                f"{pad}    {target} = C{n}(state, v, None)",
            ]
        elif body is not None:  # an object: its fields here; a null, an error, another class: C{n}
            own = self._own_class(getattr(field.inner, "inline_check", None), "v", n)
            lines += [f"{pad}if {PRESENT}{f' and {own}' if own else ''}:", f"{pad}    s{depth} = v"]
            lines.append(f"{pad}    o{depth} = {{}}")
            inner_path = "None"
            if field.path_needed:
                inner_path = f"p{depth}"
                lines.append(f"{pad}    p{depth} = {below}")
            self.fields(*body, source=f"s{depth}", out=f"o{depth}", path=inner_path, depth=depth + 1)
            lines += [f"{pad}    {target} = o{depth}", f"{pad}else:", f"{pad}    {target} = C{n}(state, v, {below})"]
        elif item is not None and item[1] is not None:  # a list of objects: `_list`'s loop here
            checked, (item_type, item_fields), check = item
            self.names[f"K{n}"] = checked
            item_var = f"s{depth}"
            own = self._own_class(check, item_var, n)
            item_path = self._loop(field, item_var, below, depth)
            lines += [
                f"{pad}        if {item_var} is None or {item_var} is Undefined or isinstance({item_var}, Exception)"
                + (f" or not ({own})" if own else "")
                + ":",
                f"{pad}            l{depth}.append(K{n}(state, {item_var}, {item_path}))",
                f"{pad}            continue",
                f"{pad}        o{depth} = {{}}",
            ]
            self.fields(item_type, item_fields, source=item_var, out=f"o{depth}", path=item_path, depth=depth + 2)
            lines += [
                f"{pad}        l{depth}.append(o{depth})",
                f"{pad}    {target} = l{depth}",
                f"{pad}else:",
                f"{pad}    {target} = C{n}(state, v, {below})",
            ]
        else:  # the null checks inline, and the value's own completion called directly
            lines.append(f"{pad}{target} = I{n}(state, v, {below}) if {PRESENT} else C{n}(state, v, {below})")

    def _own_class(self, origin: type | None, value: str, n: int) -> str:
        """The test that `value` is an instance of the object type's own class, not cast to another
        type; '' for a type that checks no value."""
        if origin is None:
            return ""
        self.names[f"O{n}"] = origin
        return f"type({value}) is O{n} and {TYPE_CAST_ATTRIBUTE!r} not in {value}.__dict__"


def _guarded(definition: GraphQLField) -> bool:
    """An attribute field with permissions or extensions: Strawberry's resolver runs them (its
    `_is_default` mark says only that no resolver of ours was given)."""
    field = definition.extensions.get(DEFINITION)
    return isinstance(field, StrawberryField) and bool(field.permission_classes or field.extensions)


def _sees_its_path(direct: DirectCall | None) -> bool:
    """Whether a resolver may read its path: any but one called directly without an info (an edge
    list's `_edges`, a cursor), for which no path is made above it."""
    if direct is None:
        return True
    positional = getattr(direct, "positional", None)
    if positional is not None:
        return bool(positional[1])
    method = getattr(direct, "method", None)
    return method is None or method[2] is not None


# The attribute of an edge's node field read as the item itself (`_page_nodes`).
_THE_ITEM = "<the item>"


def _page_nodes(field: _Field) -> tuple[str, str, list[_Field | str]] | None:
    """(the attribute holding the page's nodes, the edge type, its fields with each `node` read as the
    item itself) when `field` is a connection's edges (a resolver marked with `page_nodes`, see
    graphql_schema/pagination.py) whose selection reads nothing of an edge but its plain `node` (and
    its type name); None otherwise: the edges are made and completed."""
    attribute = _resolver_mark(field, "page_nodes")
    item = getattr(field.inner, "inline_item", None)
    if attribute is None or field.scopes or item is None or item[1] is None:
        return None
    item_type, item_fields = item[1]
    if not all(isinstance(f, str) or f.attribute == "node" for f in item_fields):
        return None
    return attribute, item_type, [f if isinstance(f, str) else replace(f, attribute=_THE_ITEM) for f in item_fields]


def _nodes_alone(field: _Field) -> tuple[Any, str, _Field] | None:
    """(the page's nodes by source, the connection's type name, its edges field) when `field` is a
    connection with constant arguments asked for nothing but its edges' nodes (`_page_nodes`), and
    its resolver is marked with `nodes_alone` (graphql_schema/pagination.py), which gives a function
    for those arguments; None otherwise."""
    nodes_for = _resolver_mark(field, "nodes_alone")
    body = getattr(field.inner, "inline_body", None)
    if nodes_for is None or body is None or field.constant_arguments is None:
        return None
    connection_type, fields = body
    if len(fields) != 1 or isinstance(fields[0], str) or _page_nodes(fields[0]) is None:
        return None
    nodes = nodes_for(field.constant_arguments)
    return None if nodes is None else (nodes, connection_type, fields[0])


def _held_in(field: _Field) -> str | None:
    """The attribute in which the field's object may hold its value (`held_in`), when it has one."""
    attribute = _resolver_mark(field, "held_in")
    return attribute if isinstance(attribute, str) and _safe_attribute(attribute) else None


def _resolver_mark(field: _Field, name: str) -> Any:
    """What the field's resolver function is marked with under `name` (None: not marked)."""
    strawberry_field = field.definition.extensions.get(DEFINITION)
    resolver = getattr(strawberry_field, "base_resolver", None)
    return getattr(getattr(resolver, "wrapped_func", None), name, None)


def _below(field: _Field, type_name: str, path: str) -> str:
    """The expression of the path of `field`'s value, or None when nothing below reads it."""
    return f"Path({path}, {field.key!r}, {type_name!r})" if field.path_needed else "None"


MAX_INLINE_DEPTH = 12  # indentation levels of one generated function: objects, lists (2), resolver values (1)


# A value that is neither null nor an error: what the null checks of `_nullable`/`_required` let through.
# Tested first by its class (`_PRESENT_CLASSES`): a set lookup, where the three tests took twice as
# long, for each of the 3,000 interactions of a list of members.
PRESENT = "(type(v) in _PRESENT_CLASSES or _present(v))"

# Classes every instance of which is present, each added as a value of it is first met (`_present`).
_PRESENT_CLASSES: set[type] = {str, int, float, bool, list, tuple, dict}
_NOT_PRESENT_CLASSES = (type(None), type(Undefined))


def _present(value: Any) -> bool:
    if value is None or value is Undefined or isinstance(value, Exception):
        return False
    kind = type(value)
    # What isinstance reads besides the class (a `__class__` of its own) could differ by instance.
    if kind not in _NOT_PRESENT_CLASSES and all("__class__" not in vars(k) for k in kind.__mro__[:-1]):
        _PRESENT_CLASSES.add(kind)
    return True


def _safe_attribute(name: str) -> bool:
    return name.isidentifier() and not keyword.iskeyword(name)


def _resolve(state: _Run, field: _Field, source: Any, parent: Path | None, out: dict[str, Any]) -> None:
    """Call the field's own resolver, as graphql-core would, and complete what it returns (later, with
    the rest of its level, when it is an awaitable). The field's path is made only when something
    reads it: the fields below, a resolver that asks its info for more than the context."""
    if field.direct is not None:
        if field.scopes and _refused(state, field):
            raise _Abandoned("refused: graphql-core says why")
        path = None
        result = field.direct(source, _Info(state, field, parent), state.arguments_of(field))
    else:
        path = Path(parent, field.key, field.parent.name)
        info = state.executor.build_resolve_info(field.definition, field.nodes, field.parent, path)
        result = field.definition.resolve(source, info, **state.arguments_of(field))  # type: ignore[misc]
    below = (path or Path(parent, field.key, field.parent.name)) if field.path_needed else None
    if type(result) in _NOT_AWAITABLE or not state.is_awaitable(result):
        out[field.key] = field.complete(state, result, below)
    else:
        out[field.key] = None  # keeps the key's place in the response
        state.pending.append((result, out, field.key, field.complete, below))


def _refused(state: _Run, field: _Field) -> bool:
    """The caller lacks a scope the field's rule asks for (graphql-core answers, with the rule's words)."""
    principal = state.principal
    return principal is None or not all(principal.may(s) for s in field.scopes)


def _type_checked(is_type_of: Callable[[Any, Any], Any], origin: type | None, inner: Complete) -> Complete:
    """An object type that implements an interface checks each value's type, as graphql-core does
    (Strawberry's check is an isinstance and reads no resolve info; one that needs more fails here and
    graphql-core answers). An instance of the type's own class that was not cast to another type is
    one without asking (Strawberry's answer for it; a list of members checks hundreds)."""
    if origin is not None and (hasattr(origin, TYPE_CAST_ATTRIBUTE) or hasattr(origin, "__getattr__")):
        origin = None  # a cast read from the class, or computed: Strawberry's check decides every value

    def complete(state: _Run, value: Any, path: Path | None) -> Any:
        own = type(value) is origin and TYPE_CAST_ATTRIBUTE not in value.__dict__
        if not own and is_type_of(value, None) is not True:
            raise _Abandoned("a value of another type")
        return inner(state, value, path)

    if origin is not None:  # written in place for an instance of the class, checked here for the rest
        complete.inline_body = inner.inline_body  # type: ignore[attr-defined]
        complete.inline_check = origin  # type: ignore[attr-defined]
    return complete


def _leaf(coerce: Callable[[Any], Any]) -> Complete:
    def complete(_: _Run, value: Any, __: Path | None) -> Any:
        coerced = coerce(value)
        if coerced is None or coerced is Undefined:
            raise _Abandoned("a leaf that does not serialise")
        return coerced

    return complete


def _nullable(inner: Complete) -> Complete:
    def complete(state: _Run, value: Any, path: Path | None) -> Any:
        if value is None or value is Undefined:
            return None
        if isinstance(value, Exception):
            raise _Abandoned("a resolver returned an error")
        return inner(state, value, path)

    return complete


def _required(inner: Complete) -> Complete:
    """A non-null type's completion: a null (or an error) where the value must be is graphql-core's to
    report, with the nulls it propagates."""

    def complete(state: _Run, value: Any, path: Path | None) -> Any:
        if value is None or value is Undefined or isinstance(value, Exception):
            raise _Abandoned("null in a non-null field")
        completed = inner(state, value, path)
        if completed is None:
            raise _Abandoned("null in a non-null field")
        return completed

    return complete


def _list(item: Complete, inner: Complete) -> Complete:
    """A list's completion: each item's (`item`, or its `inner` completion for an item that is neither
    null nor an error, the checks made here: one call an item, not two)."""

    def complete(state: _Run, value: Any, path: Path | None) -> Any:
        if not isinstance(value, (list, tuple)):
            raise _Abandoned("not a list")  # graphql-core takes other iterables, or says why not
        if path is None:
            return [
                inner(state, v, None)
                if v is not None and v is not Undefined and not isinstance(v, Exception)
                else item(state, v, None)
                for v in value
            ]
        return [item(state, v, Path(path, i, None)) for i, v in enumerate(value)]

    inline_item = (item, getattr(inner, "inline_body", None), getattr(inner, "inline_check", None))
    complete.inline_item = inline_item  # type: ignore[attr-defined]
    if inline_item[1] is None:
        return complete
    loop = _list_loop(item, inline_item[1], inline_item[2], complete)
    loop.inline_item = inline_item  # type: ignore[attr-defined]
    return loop


class _Info:
    """What a resolver called directly gets as `info`: the request's `context` at hand (what resolvers
    here read), and anything else of Strawberry's Info (operation, field name, path, selections…) from
    the real one, built the first time something else is asked."""

    __slots__ = ("_field", "_parent", "_real", "_state", "context")

    def __init__(self, state: _Run, field: _Field, parent: Path | None) -> None:
        self.context = state.executor.context_value
        self._state, self._field, self._parent = state, field, parent
        self._real: Any = None

    @property
    def operation(self) -> Any:
        """The operation being run (the request's loaders ask whether it is a query, for every field)."""
        return self._state.executor.operation

    def __getattr__(self, name: str) -> Any:
        real = self._real
        if real is None:
            field = self._field
            path = Path(self._parent, field.key, field.parent.name)
            raw = self._state.executor.build_resolve_info(field.definition, field.nodes, field.parent, path)
            assert field.make_info is not None
            real = self._real = field.make_info(raw)
        return getattr(real, name)


def _direct_call(field: StrawberryField, names: Mapping[str, str]) -> DirectCall:
    """Call `field`'s resolver function as StrawberryField.get_result does, after the wrapper's
    get_arguments: arguments by their Python names, the source as self, root or parent, the info."""
    resolver = field.base_resolver
    assert resolver is not None
    function: Callable[..., Any] = resolver.wrapped_func  # type: ignore[assignment]
    with_self = resolver.self_parameter is not None
    info_name = resolver.info_parameter.name if resolver.info_parameter is not None else None
    source_names = [p.name for p in (resolver.parent_parameter, resolver.root_parameter) if p is not None]

    if not names and len(source_names) + with_self == 1:  # the source, and perhaps the info
        positional = _positional(function, info_name, source_names[0] if source_names else None)
        if positional is not None:
            return positional

    def call(source: Any, info: Any, arguments: dict[str, Any]) -> Any:
        kwargs = {names[name]: value for name, value in arguments.items()}
        if info_name is not None:
            kwargs[info_name] = info
        for name in source_names:
            kwargs[name] = source
        return function(source, **kwargs) if with_self else function(**kwargs)

    if with_self and not source_names:  # a method: what generated code calls with its arguments' keywords
        call.method = (function, names, info_name)  # type: ignore[attr-defined]
    return call


def _positional(function: Callable[..., Any], info_name: str | None, source_name: str | None) -> DirectCall | None:
    """A resolver without arguments, `(self)` or `(self, info)` (or a function of the source, `(root)`
    or `(root, info)`: an edge's cursor), called with its parameters in place: most of a query's fields,
    called for every item of a list (no keyword dict each time)."""
    parameters = list(inspect.signature(function).parameters.values())
    if any(p.kind not in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD) for p in parameters):
        return None
    if not parameters or (source_name is not None and parameters[0].name != source_name):
        return None
    call: Any
    if len(parameters) == 1 and info_name is None:
        call = lambda source, _info, _arguments: function(source)  # noqa: E731
    elif len(parameters) == 2 and info_name is not None and parameters[1].name == info_name:
        call = lambda source, info, _arguments: function(source, info)  # noqa: E731
    else:
        return None
    call.positional = (function, info_name is not None)  # what generated code calls in its place
    return cast(DirectCall, call)


PLAIN_ARGUMENT_TYPES = (str, int, float, bool, strawberry.ID)


def _plain_argument(kind: Any) -> bool:
    """An argument Strawberry passes on as graphql-core coerced it: a built-in scalar, optional or
    in a list."""
    while isinstance(kind, (StrawberryOptional, StrawberryList)):
        kind = kind.of_type
    return kind in PLAIN_ARGUMENT_TYPES


def _leaf_type(kind: GraphQLOutputType) -> GraphQLScalarType | GraphQLEnumType | None:
    """The field's scalar or enum type, when it is one (maybe non-null)."""
    inner = kind.of_type if isinstance(kind, GraphQLNonNull) else kind
    return inner if isinstance(inner, (GraphQLScalarType, GraphQLEnumType)) else None


def _has_middleware(executor: Executor[Any]) -> bool:
    manager = executor.middleware_manager
    return manager is not None and bool(getattr(manager, "_middleware_resolvers", None))


def _directive_variables(document: DocumentNode) -> tuple[str, ...]:
    """The variables any directive of the document reads (`@include(if: $x)`): they choose the fields."""
    names: list[str] = []

    class Directives(Visitor):
        def enter_directive(self, node: DirectiveNode, *_: Any) -> None:
            for argument in node.arguments or ():
                _variables_in(argument.value, names)

    visit(document, Directives())
    return tuple(dict.fromkeys(names))


def _reads_variables(node: FieldNode) -> bool:
    found: list[str] = []
    for argument in node.arguments or ():
        _variables_in(argument.value, found)
    return bool(found)


def _variables_in(value: Any, into: list[str]) -> None:
    if isinstance(value, VariableNode):
        into.append(value.name.value)
        return
    for nested in getattr(value, "values", None) or ():
        _variables_in(nested, into)
    for nested in getattr(value, "fields", None) or ():
        _variables_in(nested.value, into)


def _frozen(value: Any) -> Any:
    """A variable's value as part of a dict key."""
    if isinstance(value, Mapping):
        return tuple(sorted((k, _frozen(v)) for k, v in value.items()))
    if isinstance(value, Iterable) and not isinstance(value, (str, bytes)):
        return tuple(_frozen(v) for v in value)
    return value
