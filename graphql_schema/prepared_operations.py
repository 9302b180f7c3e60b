"""What graphql-core's `Executor.build` works out from a document alone, worked out once (issue 14).

For every request, `Executor.build` looks the operation up, collects the fragments, types each
variable from its AST (`get_variable_signature`) and coerces the variables with a walk that asks
type predicates at every value: a sixth of a compiled query's CPU in the server (bench/execution.py,
cProfile under wrk). Here the operation, its fragments and its variables' signatures are kept per
(document, operation name) as long as the document lives, and each request's variables are coerced
by the one-walk coercers of graphql_schema/variable_coercion.py, which return what graphql-core
returns. What they leave to graphql-core (a value they do not handle, a missing variable that has a
default or is required, variables on fragments, an executor other than ours) gives None, and
`Executor.build` decides, with its own words.
"""

from __future__ import annotations

from typing import Any

from graphql import (
    DocumentNode,
    FragmentDefinitionNode,
    GraphQLError,
    GraphQLNonNull,
    GraphQLSchema,
    OperationDefinitionNode,
    Undefined,
)
from graphql.execution.collect_fields import FragmentDetails
from graphql.execution.executor import default_field_resolver, default_type_resolver
from graphql.execution.get_variable_signature import GraphQLVariableSignature, get_variable_signature
from graphql.execution.values import VariableValues, VariableValueSource

from graphql_schema.document_memo import DocumentMemo
from graphql_schema.execution import CheckedExecution, refusals
from graphql_schema.variable_coercion import UNHANDLED, Coerce, Coercers


class PreparedOperation:
    """One operation of a document, with what building its executor needs besides the request's values."""

    __slots__ = ("fragment_definitions", "fragments", "operation", "variables")

    def __init__(
        self,
        operation: OperationDefinitionNode,
        fragment_definitions: dict[str, FragmentDefinitionNode],
        variables: tuple[tuple[GraphQLVariableSignature, Coerce, bool], ...],
    ) -> None:
        self.operation = operation
        self.fragment_definitions = fragment_definitions
        self.fragments = {name: FragmentDetails(definition, None) for name, definition in fragment_definitions.items()}
        self.variables = variables  # (signature, coercer, required)

    def variable_values(self, given: Any) -> VariableValues | None:
        """The variables as graphql-core coerces them; None when graphql-core must."""
        if given is None:
            given = {}
        elif not isinstance(given, dict):
            return None
        sources: dict[str, VariableValueSource] = {}
        coerced: dict[str, Any] = {}
        for signature, coerce, required in self.variables:
            name = signature.name
            value = given.get(name, Undefined)
            if value is Undefined:
                if required or signature.default is not None:
                    return None  # an error to word, or a default to coerce: graphql-core's
                sources[name] = VariableValueSource(signature)
                continue
            done = coerce(value, 0)
            if done is UNHANDLED:
                return None
            sources[name] = VariableValueSource(signature, value)
            coerced[name] = done
        return VariableValues(sources, coerced)


class PreparedOperations:
    """The prepared operations of one schema's documents, kept with each document."""

    def __init__(self, schema: GraphQLSchema) -> None:
        self._schema = schema
        self._coercers = Coercers()
        self._by_document: DocumentMemo[dict[str | None, PreparedOperation | None]] = DocumentMemo()

    def of(self, document: DocumentNode, operation_name: str | None) -> PreparedOperation | None:
        """The operation `operation_name` names in `document` (the only one when None), prepared; None
        when there is no such operation, or it needs what only `Executor.build` does."""
        by_name = self._by_document.setdefault(document, dict)
        if operation_name not in by_name:
            if len(by_name) >= len(document.definitions) + 1:
                return None  # names of no operation of the document, sent at random: not kept
            by_name[operation_name] = self._prepare(document, operation_name)
        return by_name[operation_name]

    def executor(
        self, prepared: PreparedOperation, document: DocumentNode, options: dict[str, Any]
    ) -> CheckedExecution | list[GraphQLError] | None:
        """What `CheckedExecution.build` returns for these options (compiled_queries.build_executor's),
        or None: `build` must run."""
        if options.get("executor_class") is not CheckedExecution:
            return None
        values = prepared.variable_values(options.get("variable_values"))
        if values is None:
            return None
        refused = refusals(document, prepared.operation, values.coerced)
        if refused:
            return refused
        return CheckedExecution(
            self._schema,
            prepared.fragment_definitions,
            prepared.fragments,
            options.get("root_value"),
            options.get("context_value"),
            prepared.operation,
            values,
            default_field_resolver,
            default_type_resolver,
            default_field_resolver,
            is_awaitable=options.get("is_awaitable"),
        )

    def _prepare(self, document: DocumentNode, operation_name: str | None) -> PreparedOperation | None:
        operation: OperationDefinitionNode | None = None
        fragments: dict[str, FragmentDefinitionNode] = {}
        for definition in document.definitions:
            if isinstance(definition, OperationDefinitionNode):
                if operation_name is None:
                    if operation is not None:
                        return None  # "Must provide operation name": graphql-core's error
                    operation = definition
                elif definition.name is not None and definition.name.value == operation_name:
                    operation = definition
            elif isinstance(definition, FragmentDefinitionNode):
                if definition.variable_definitions:
                    return None  # fragment arguments: their signatures are graphql-core's to check
                fragments[definition.name.value] = definition
        if operation is None:
            return None
        variables = []
        for declared in operation.variable_definitions or ():
            signature = get_variable_signature(self._schema, declared)
            if isinstance(signature, GraphQLError):
                return None
            required = isinstance(signature.type, GraphQLNonNull)
            variables.append((signature, self._coercers.of(signature.type), required))
        return PreparedOperation(operation, fragments, tuple(variables))
