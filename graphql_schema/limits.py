"""Limits on what one GraphQL document may ask for, checked before anything executes: depth, aliases,
tokens and a cost estimate that multiplies page sizes down nested lists. Each refusal carries the code
LIMIT_EXCEEDED. Introspection can be switched off (then field suggestions go too: "did you mean …"
would leak the schema)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from graphql import (
    FieldNode,
    FragmentSpreadNode,
    GraphQLError,
    GraphQLField,
    GraphQLNamedType,
    GraphQLObjectType,
    InlineFragmentNode,
    IntValueNode,
    OperationDefinitionNode,
    SelectionSetNode,
    ValidationContext,
    get_named_type,
)
from graphql.validation import ASTValidationRule, NoSchemaIntrospectionCustomRule
from strawberry.extensions import AddValidationRules, MaxAliasesLimiter, MaxTokensLimiter, QueryDepthLimiter
from strawberry.extensions.base_extension import SchemaExtension

LIMIT_EXCEEDED = "LIMIT_EXCEEDED"
# The messages of Strawberry's own limiters, so that their refusals get the same code as ours.
LIMIT_MESSAGES = ("exceeds maximum operation depth", "aliases found. Allowed", "tokens. Parsing aborted")
PAGE_ARGUMENTS = ("first", "last")


@dataclass(frozen=True, slots=True)
class QueryLimits:
    max_depth: int = 12
    max_aliases: int = 30
    max_tokens: int = 2000
    max_cost: int = 10_000
    page_size: int = 100  # what `first` counts for when it is a variable or absent on a paged field
    introspection: bool = True


def is_limit_message(message: str) -> bool:
    return any(text in message for text in LIMIT_MESSAGES)


def limit_extensions(limits: QueryLimits) -> list[Callable[[], SchemaExtension]]:
    """The rule classes are made here once, not per request: the validation cache
    (graphql_schema/document_cache.py) is keyed by them, and new ones each time would never hit it."""
    rules: list[type[ASTValidationRule]] = [
        *QueryDepthLimiter(max_depth=limits.max_depth).validation_rules,
        *MaxAliasesLimiter(max_alias_count=limits.max_aliases).validation_rules,
        cost_rule(limits.max_cost, limits.page_size),
    ]
    if not limits.introspection:
        rules.append(NoSchemaIntrospectionCustomRule)
    return [
        lambda: MaxTokensLimiter(max_token_count=limits.max_tokens),  # a parse option: part of the cache key
        lambda: AddValidationRules(rules),
    ]


def cost_rule(max_cost: int, page_size: int) -> type[ASTValidationRule]:
    """A validation rule: every field costs 1, and a field taking `first`/`last` multiplies the cost of
    what it selects by that page size (a variable or no argument counts as `page_size`)."""

    class QueryCost(ASTValidationRule):
        def enter_operation_definition(self, node: OperationDefinitionNode, *_: Any) -> None:
            context = self.context
            assert isinstance(context, ValidationContext)  # rules over a schema always get one
            schema = context.schema
            root = {"query": schema.query_type, "mutation": schema.mutation_type}.get(
                node.operation.value, schema.subscription_type
            )
            cost = _selection_cost(context, node.selection_set, root, page_size, frozenset())
            if cost > max_cost:
                self.report_error(
                    GraphQLError(
                        f"query cost {cost:,} exceeds the limit of {max_cost:,}: ask for smaller pages "
                        "(`first`) or fewer nested lists",
                        node,
                        extensions={"code": LIMIT_EXCEEDED},
                    )
                )

    return QueryCost


def _selection_cost(
    context: ValidationContext,
    selections: SelectionSetNode | None,
    parent: GraphQLNamedType | None,
    page_size: int,
    fragments: frozenset[str],
) -> int:
    if selections is None:
        return 0
    total = 0
    for selection in selections.selections:
        if isinstance(selection, FieldNode):
            definition = parent.fields.get(selection.name.value) if isinstance(parent, GraphQLObjectType) else None
            inner_type = get_named_type(definition.type) if definition else None
            inner = _selection_cost(context, selection.selection_set, inner_type, page_size, fragments)
            total += 1 + _page(selection, definition, page_size) * inner
        elif isinstance(selection, InlineFragmentNode):
            condition = selection.type_condition
            inner_parent = context.schema.get_type(condition.name.value) if condition else parent
            total += _selection_cost(context, selection.selection_set, inner_parent, page_size, fragments)
        elif isinstance(selection, FragmentSpreadNode):
            name = selection.name.value
            fragment = context.get_fragment(name)
            if fragment is not None and name not in fragments:  # cycles are refused by NoFragmentCycles
                inner_parent = context.schema.get_type(fragment.type_condition.name.value)
                total += _selection_cost(context, fragment.selection_set, inner_parent, page_size, fragments | {name})
    return total


def _page(field: FieldNode, definition: GraphQLField | None, page_size: int) -> int:
    """How many items the field returns at most: its page argument, else its default page, else 1."""
    for argument in field.arguments or ():
        if argument.name.value in PAGE_ARGUMENTS:
            return int(argument.value.value) if isinstance(argument.value, IntValueNode) else page_size
    for name in PAGE_ARGUMENTS:
        if definition is not None and name in definition.args:
            default = definition.args[name].default_value
            return default if isinstance(default, int) else page_size
    return 1
