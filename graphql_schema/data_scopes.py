"""What a key may see depends on the data a document selects, not on the root field it entered by.

A root field's permission says who may *call* it (graphql_schema/permissions.py). The data it returns
has scopes of its own: a customer's profile, its history, its stats need `read:profiles` whether they
are reached through `profile`, through `upsertProfile`'s answer, a segment's `members`, a merge's result
or a subscription payload. The whole document is checked before anything runs, so a write whose answer
the key may not read is refused with nothing written, rather than written and then half-hidden.

Types are declared here, once; a test walks the schema and fails when a type reachable from `Profile`
is neither declared nor listed as holding no customer data.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Iterator

from graphql import (
    DocumentNode,
    ExecutionResult,
    FieldNode,
    FragmentDefinitionNode,
    FragmentSpreadNode,
    GraphQLError,
    GraphQLInterfaceType,
    GraphQLNamedType,
    GraphQLObjectType,
    GraphQLSchema,
    InlineFragmentNode,
    OperationDefinitionNode,
    SelectionSetNode,
    get_named_type,
)
from graphql.utilities import get_operation_ast
from strawberry.extensions import SchemaExtension
from strawberry.types.graphql import OperationType

from app.domain.access import Principal, Scope
from app.domain.errors import Forbidden

# The customer's data: every field of these types needs the scope, wherever the type is reached.
TYPE_SCOPES: dict[str, Scope] = {
    name: Scope.READ_PROFILES
    for name in (
        "Profile",
        "ProfileConnection",
        "ProfileEdge",
        "Identifier",
        "Address",
        "Consent",
        "ConsentDecision",
        "Qualitative",
        "Rating",
        "Stats",
        "ChannelCount",
        "Rfm",
        "ComputedTraits",
        "Engagement",
        "ChannelRate",
        "CategoryAffinity",
        "Interaction",
        "InteractionConnection",
        "InteractionEdge",
        "Recommendation",
        "SegmentMembership",
        "MergeCandidate",
        "MatchReason",
        "MergeCandidateConnection",
        "MergeCandidateEdge",
    )
}
# Reachable from a profile but about no customer: what a merge or a refusal did (ids, reasons, actors),
# page positions, a segment's definition, the catalogue. A merge:profiles key reads back the merge it made.
NOT_CUSTOMER_DATA = frozenset({"Merge", "MergeRefusal", "PageInfo", "Segment", "Product", "PricePoint"})
# What a key that wrote a profile may read back without read:profiles: what it wrote, not the customer.
ACKNOWLEDGEMENT_FIELDS = frozenset({"id", "version", "__typename"})

DOCUMENTS_KEPT = 512


class DataScopes(SchemaExtension):
    """Refuses, before execution, a document selecting data its key may not see (FORBIDDEN, naming
    the first field and the scope it needs). A caller without a key is left to the root fields'
    permissions, which say UNAUTHENTICATED."""

    def on_execute(self) -> Iterator[None]:
        context = self.execution_context
        refusal = self._refusal()
        if refusal is not None:
            if context.operation_type is OperationType.SUBSCRIPTION:
                raise refusal  # Strawberry answers the subscription with it, through the error masking
            # A result set before execution is what Strawberry returns instead of executing.
            context.result = ExecutionResult(data=None, errors=[GraphQLError(refusal.message, original_error=refusal)])
        yield

    def _refusal(self) -> Forbidden | None:
        context = self.execution_context
        principal = getattr(context.context, "principal", None)
        document = context.graphql_document
        if not isinstance(principal, Principal) or document is None:
            return None
        for scope, where in needed_scopes(context.schema._schema, document, context.operation_name).items():
            if not principal.may(scope):
                held = ", ".join(sorted(principal.scopes)) or "none"
                return Forbidden(f"{where} needs the scope {scope}; this key has {held}")
        return None


_needed: OrderedDict[tuple[int, str | None], tuple[DocumentNode, dict[Scope, str]]] = OrderedDict()


def needed_scopes(schema: GraphQLSchema, document: DocumentNode, operation_name: str | None) -> dict[Scope, str]:
    """Each scope the operation's selections need, with the first field needing it (`Profile.stats`).
    Linear in the document: each fragment is walked once. Kept per document object (repeated documents
    are the same object, graphql_schema/document_cache.py)."""
    key = (id(document), operation_name)
    found = _needed.get(key)
    if found is not None and found[0] is document:
        _needed.move_to_end(key)
        return found[1]
    operation = get_operation_ast(document, operation_name)
    needs = _Walk(schema, document).operation(operation) if operation is not None else {}
    _needed[key] = (document, needs)
    if len(_needed) > DOCUMENTS_KEPT:
        _needed.popitem(last=False)
    return needs


class _Walk:
    def __init__(self, schema: GraphQLSchema, document: DocumentNode) -> None:
        self.schema = schema
        self.fragments = {d.name.value: d for d in document.definitions if isinstance(d, FragmentDefinitionNode)}
        self.walked: dict[str, dict[Scope, str]] = {}

    def operation(self, operation: OperationDefinitionNode) -> dict[Scope, str]:
        return self.selections(operation.selection_set, self.schema.get_root_type(operation.operation))

    def selections(self, selection_set: SelectionSetNode | None, parent: GraphQLNamedType | None) -> dict[Scope, str]:
        needs: dict[Scope, str] = {}
        for selection in selection_set.selections if selection_set else ():
            if isinstance(selection, FieldNode):
                _add(needs, self.field(selection, parent))
            elif isinstance(selection, InlineFragmentNode):
                condition = selection.type_condition
                inner = self.schema.get_type(condition.name.value) if condition else parent
                _add(needs, self.selections(selection.selection_set, inner))
            elif isinstance(selection, FragmentSpreadNode):
                _add(needs, self.fragment(selection.name.value))
        return needs

    def field(self, node: FieldNode, parent: GraphQLNamedType | None) -> dict[Scope, str]:
        needs: dict[Scope, str] = {}
        name = node.name.value
        if parent is not None and (scope := TYPE_SCOPES.get(parent.name)) and name not in ACKNOWLEDGEMENT_FIELDS:
            needs[scope] = f"{parent.name}.{name}"
        if node.selection_set is not None and isinstance(parent, GraphQLObjectType | GraphQLInterfaceType):
            definition = parent.fields.get(name)
            inner = get_named_type(definition.type) if definition is not None else None
            _add(needs, self.selections(node.selection_set, inner))
        return needs

    def fragment(self, name: str) -> dict[Scope, str]:
        if name in self.walked:  # walked already, or being walked (a cycle, which validation refuses)
            return self.walked[name]
        self.walked[name] = {}
        definition = self.fragments.get(name)
        if definition is not None:
            parent = self.schema.get_type(definition.type_condition.name.value)
            self.walked[name] = self.selections(definition.selection_set, parent)
        return self.walked[name]


def _add(needs: dict[Scope, str], more: dict[Scope, str]) -> None:
    """Union, keeping the first field named for each scope."""
    for scope, where in more.items():
        needs.setdefault(scope, where)
