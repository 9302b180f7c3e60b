"""Limits on what one GraphQL document may ask for, checked before anything executes and before
graphql-core's own validation rules run: its length and tokens (before parsing), then its depth,
aliases, directives, a cost that multiplies page sizes down nested lists, pages out of range, and how
often one field is selected at one place. Each is measured without spreading fragments
(graphql_schema/document_shape.py), so a document's checks take time linear in its size.

A refusal carries the code LIMIT_EXCEEDED (a page out of range: BAD_USER_INPUT). What depends on
the variables (a page given as one; the cost when it depends on such pages) is checked once they
are known, before any resolver (`ExecutionChecks`, run by graphql_schema/execution.py).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from graphql import DocumentNode, GraphQLError, GraphQLSchema, Node, OperationDefinitionNode

from graphql_schema.document_shape import DocumentShape, PageVariable, measure_document
from graphql_schema.document_tokens import more_tokens_than
from graphql_schema.field_repeats import most_repeated
from graphql_schema.page_arguments import page_refusal

LIMIT_EXCEEDED = "LIMIT_EXCEEDED"
# graphql-core's parser ends each message of a limit it enforces (tokens, nesting) with these words.
LIMIT_MESSAGES = ("Parsing aborted.",)


@dataclass(frozen=True, slots=True)
class QueryLimits:
    max_depth: int = 12  # levels of fields below the root fields (introspection fields not counted)
    max_aliases: int = 30
    max_tokens: int = 2000
    max_cost: int = 10_000
    page_size: int = 100  # the largest page of a paged field (Settings.max_page_size)
    introspection: bool = True  # off: no introspection, and no "did you mean" (graphql_schema/errors.py)
    max_length: int = 65_536  # characters of document text: larger values belong in variables
    max_repeats: int = 10  # selections of one field at one place of the response
    max_directives: int = 5  # directives on one field, spread or inline fragment
    max_list_items: int = 10_000  # items of a list given in the variables (graphql_schema/variable_limits.py)


def is_limit_message(message: str) -> bool:
    return any(text in message for text in LIMIT_MESSAGES)


def length_refusal(text: str, limits: QueryLimits) -> GraphQLError | None:
    """Refused before it is parsed: parsing costs about a microsecond a character."""
    if len(text) <= limits.max_length:
        return None
    return _exceeded(
        f"document of {len(text):,} characters exceeds the limit of {limits.max_length:,}: "
        "send large values as variables"
    )


def token_refusal(text: str, limits: QueryLimits) -> GraphQLError | None:
    """Refused before it is parsed: graphql-core's parser would read the first `max_tokens` at about
    20 µs a token before giving up (it still holds the same limit, as a backstop)."""
    if not more_tokens_than(text, limits.max_tokens):
        return None
    return _exceeded(f"document of more than {limits.max_tokens:,} tokens exceeds the limit: ask for less at once")


@dataclass(frozen=True, slots=True)
class ExecutionChecks:
    """What one operation's variables decide: its pages given as variables, and its cost when only
    their values can bound it."""

    schema: GraphQLSchema
    document: DocumentNode
    limits: QueryLimits
    pages: tuple[PageVariable, ...]
    cost_depends_on_variables: bool

    def refusals(self, operation: OperationDefinitionNode, values: Mapping[str, object]) -> list[GraphQLError]:
        errors: list[GraphQLError] = []
        for page in self.pages:
            value = values.get(page.variable)
            if isinstance(value, int):
                refusal = page_refusal(page.argument, page.maximum, value)
                if refusal is not None:
                    errors.append(refusal)
        if errors or not self.cost_depends_on_variables:
            return errors
        shape = measure_document(
            self.schema,
            self.document,
            page_limit=self.limits.page_size,
            most_directives=self.limits.max_directives,
            variables=values,
        )
        cost = next(found.measure.cost for found in shape.operations if found.operation is operation)
        return [_cost_refusal(operation, cost, self.limits)] if cost > self.limits.max_cost else []


@dataclass(frozen=True, slots=True)
class Checked:
    errors: list[GraphQLError]
    # By operation name (None: the one anonymous operation): what is left for execution to check.
    at_execution: dict[str | None, ExecutionChecks]


def check_document(schema: GraphQLSchema, document: DocumentNode, limits: QueryLimits) -> Checked:
    """The limits' refusals of a parsed document (empty when it may go on to validation)."""
    shape = measure_document(schema, document, page_limit=limits.page_size, most_directives=limits.max_directives)
    if shape.cycles:
        return Checked(shape.cycles, {})
    if shape.page_errors:  # the client's mistake to fix first: the cost of a page out of range means nothing
        return Checked(shape.page_errors, {})
    errors = _crowded(shape, limits)
    at_execution: dict[str | None, ExecutionChecks] = {}
    for found in shape.operations:
        measure, operation = found.measure, found.operation
        levels = measure.depth - 1  # the root fields are level 0
        if levels > limits.max_depth:
            errors.append(
                _exceeded(
                    f"query depth {levels} exceeds the limit of {limits.max_depth}: ask for fewer nested levels",
                    operation,
                )
            )
        if measure.aliases > limits.max_aliases:
            errors.append(_exceeded(f"{measure.aliases} aliases exceed the limit of {limits.max_aliases}", operation))
        if measure.least_cost > limits.max_cost:  # whatever its variables are
            errors.append(_cost_refusal(operation, measure.least_cost, limits))
        elif found.pages:
            name = operation.name.value if operation.name else None
            at_execution[name] = ExecutionChecks(
                schema, document, limits, found.pages, cost_depends_on_variables=measure.cost > limits.max_cost
            )
    walked = sum(found.walked for found in shape.operations)
    if len(shape.operations) > 1 and walked > limits.max_tokens:
        # One operation walks at most what is written, which the token limit bounds; operations
        # sharing fragments make graphql-core walk each fragment once per operation.
        errors.append(
            _exceeded(
                f"{len(shape.operations)} operations with the fragments each one spreads amount to {walked:,} "
                f"selections, over the limit of {limits.max_tokens:,}: send only the operations you run"
            )
        )
    if errors:
        return Checked(errors, {})
    # Bounded by the cost limit that just held (field_repeats.py says why): not before.
    for operation, path, count in most_repeated(document):
        if count > limits.max_repeats:
            name = path.rsplit(".", 1)[-1]
            errors.append(
                _exceeded(
                    f"'{name}' is selected {count} times at {path}: one field may be selected at most "
                    f"{limits.max_repeats} times at one place of the response",
                    operation,
                )
            )
    return Checked(errors, {} if errors else at_execution)


def _crowded(shape: DocumentShape, limits: QueryLimits) -> list[GraphQLError]:
    return [
        _exceeded(f"{count} directives on one selection exceed the limit of {limits.max_directives}", where)
        for count, where in shape.crowded
    ]


def _cost_refusal(operation: OperationDefinitionNode, cost: int, limits: QueryLimits) -> GraphQLError:
    return _exceeded(
        f"query cost {cost:,} exceeds the limit of {limits.max_cost:,}: ask for smaller pages (`first`) "
        "or fewer nested lists",
        operation,
    )


def _exceeded(message: str, node: Node | None = None) -> GraphQLError:
    return GraphQLError(message, node, extensions={"code": LIMIT_EXCEEDED})
