"""What each operation of a document asks for once its fragments are spread: how deep it nests, how
many aliases and directives it uses, what it costs, which pages it asks for, and how often one field
is selected at one place of the response. graphql_schema/limits.py holds these against the limits.

Spreading fragments to measure them is exponential: `fragment F0 on Query {...F1 ...F1}` doubling
twenty times made 880 bytes take 22 s. Here each fragment is measured once, after every fragment it
spreads (a cycle is refused instead), and a spread adds its fragment's measure: the work is linear in
the size of the document, whatever it would expand to.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field

from graphql import (
    ArgumentNode,
    DirectiveNode,
    DocumentNode,
    FieldNode,
    FragmentDefinitionNode,
    FragmentSpreadNode,
    GraphQLError,
    GraphQLField,
    GraphQLInterfaceType,
    GraphQLNamedType,
    GraphQLObjectType,
    GraphQLSchema,
    InlineFragmentNode,
    IntValueNode,
    NullValueNode,
    OperationDefinitionNode,
    OperationType,
    SelectionSetNode,
    VariableNode,
    get_named_type,
)

from graphql_schema.field_costs import items_counted, weight
from graphql_schema.page_arguments import PAGE_ARGUMENTS, literal_page, page_maximum, page_refusal, usual_page

# Sums and products saturate here: fan-out doubles a cost past any limit within a few dozen levels,
# and the numbers must stay machine-sized however many levels follow.
_SATURATED = 2**62
GRAPHQL_VALIDATION_FAILED = "GRAPHQL_VALIDATION_FAILED"


def _capped(value: int) -> int:
    return value if value < _SATURATED else _SATURATED


@dataclass(slots=True)
class Measure:
    """What a selection set amounts to with its fragments spread."""

    depth: int = 0  # levels of fields (a leaf field is 1; introspection fields are not counted)
    aliases: int = 0
    cost: int = 0  # every field 1, times the pages above it; pages given as variables at their maximum
    least_cost: int = 0  # the same with pages given as variables at 1

    def add(self, other: Measure) -> None:
        self.depth = max(self.depth, other.depth)
        self.aliases = _capped(self.aliases + other.aliases)
        self.cost = _capped(self.cost + other.cost)
        self.least_cost = _capped(self.least_cost + other.least_cost)


@dataclass(frozen=True, slots=True)
class PageVariable:
    """A page argument given as a variable: checked once the variable's value is known."""

    variable: str
    argument: ArgumentNode
    maximum: int


@dataclass(slots=True)
class _Part:
    """A fragment's or an operation's measure, with what it brings along."""

    measure: Measure = field(default_factory=Measure)
    pages: dict[tuple[str, str, int], PageVariable] = field(default_factory=dict)
    written: int = 0  # selections written in it (its spreads not followed)


@dataclass(frozen=True, slots=True)
class OperationShape:
    operation: OperationDefinitionNode
    measure: Measure
    pages: tuple[PageVariable, ...]
    # Selections written in the operation and in every fragment it reaches, each fragment once: what
    # graphql-core's rules walk for this operation (several of them walk the fragments once per operation).
    walked: int


@dataclass(slots=True)
class DocumentShape:
    operations: list[OperationShape]
    cycles: list[GraphQLError]  # fragments spreading themselves: nothing else is measured then
    page_errors: list[GraphQLError]  # pages written in the document that are out of range
    crowded: list[tuple[int, FieldNode | FragmentSpreadNode | InlineFragmentNode]]  # (directives, where)


def measure_document(
    schema: GraphQLSchema,
    document: DocumentNode,
    *,
    page_limit: int,
    most_directives: int,
    variables: Mapping[str, object] | None = None,
) -> DocumentShape:
    """The shape of every operation of `document`. With `variables` (known at execution), pages given
    as variables count at their value; without, at 1 (least_cost) and at their maximum (cost)."""
    measurer = _Measurer(schema, document, page_limit, most_directives, variables)
    return measurer.run()


def fragments_by_name(document: DocumentNode) -> dict[str, FragmentDefinitionNode]:
    found: dict[str, FragmentDefinitionNode] = {}
    for definition in document.definitions:
        if isinstance(definition, FragmentDefinitionNode):
            found.setdefault(definition.name.value, definition)  # a second one is UniqueFragmentNames' to report
    return found


def root_type(schema: GraphQLSchema, operation: OperationDefinitionNode) -> GraphQLObjectType | None:
    return {
        OperationType.QUERY: schema.query_type,
        OperationType.MUTATION: schema.mutation_type,
        OperationType.SUBSCRIPTION: schema.subscription_type,
    }[operation.operation]


def fragment_order(
    fragments: Mapping[str, FragmentDefinitionNode], wanted: list[str] | None = None
) -> tuple[list[str], list[GraphQLError]]:
    """Fragment names, each after every fragment it spreads (only those reachable from `wanted` when
    given), and an error for each cycle found. Iterative: a chain of a thousand fragments is fine."""
    spreads = {name: list(dict.fromkeys(spread_names(fragment.selection_set))) for name, fragment in fragments.items()}
    order: list[str] = []
    errors: list[GraphQLError] = []
    state: dict[str, int] = {}  # 1: on the current path, 2: done
    for root in wanted if wanted is not None else list(fragments):
        if root in state or root not in fragments:
            continue
        path = [root]
        pending = [iter(spreads[root])]
        state[root] = 1
        while pending:
            for name in pending[-1]:
                if name not in fragments or state.get(name) == 2:
                    continue
                if state.get(name) == 1:
                    errors.append(_cycle(fragments, path[path.index(name) :]))
                    continue
                state[name] = 1
                path.append(name)
                pending.append(iter(spreads[name]))
                break
            else:
                pending.pop()
                done = path.pop()
                state[done] = 2
                order.append(done)
    return order, errors


def spread_names(selections: SelectionSetNode) -> Iterator[str]:
    """The fragments spread anywhere in `selections` (in document order, repeats included)."""
    stack = [selections]
    while stack:
        for selection in stack.pop().selections:
            if isinstance(selection, FragmentSpreadNode):
                yield selection.name.value
            elif isinstance(selection, (FieldNode, InlineFragmentNode)) and selection.selection_set is not None:
                stack.append(selection.selection_set)


def _reached(spreads: Mapping[str, set[str]], start: set[str]) -> set[str]:
    """Every fragment reachable from the spreads `start` (iterative)."""
    reached, todo = set(start), list(start)
    while todo:
        for name in spreads.get(todo.pop(), ()):
            if name not in reached:
                reached.add(name)
                todo.append(name)
    return reached


def _cycle(fragments: Mapping[str, FragmentDefinitionNode], names: list[str]) -> GraphQLError:
    # The words of graphql-core's NoFragmentCyclesRule, which would report the same cycle later.
    via = ", ".join(f"'{name}'" for name in names[1:])
    return GraphQLError(
        f"Cannot spread fragment '{names[0]}' within itself" + (f" via {via}." if via else "."),
        [fragments[name] for name in names],
        extensions={"code": GRAPHQL_VALIDATION_FAILED},
    )


def field_definition(parent: GraphQLNamedType | None, name: str) -> GraphQLField | None:
    if isinstance(parent, (GraphQLObjectType, GraphQLInterfaceType)):
        found: GraphQLField | None = parent.fields.get(name)
        return found
    return None


class _Measurer:
    def __init__(
        self,
        schema: GraphQLSchema,
        document: DocumentNode,
        page_limit: int,
        most_directives: int,
        variables: Mapping[str, object] | None,
    ) -> None:
        self.schema = schema
        self.document = document
        self.page_limit = page_limit
        self.most_directives = most_directives
        self.variables = variables
        self.fragments = fragments_by_name(document)
        self.parts: dict[str, _Part] = {}
        self.page_errors: list[GraphQLError] = []
        self.crowded: list[tuple[int, FieldNode | FragmentSpreadNode | InlineFragmentNode]] = []

    def run(self) -> DocumentShape:
        order, cycles = fragment_order(self.fragments)
        if cycles:
            return DocumentShape([], cycles, [], [])
        for name in order:
            fragment = self.fragments[name]
            part = self.parts[name] = _Part()
            part.measure = self._selection_set(fragment.selection_set, self._type(fragment), part)
        spreads = {name: set(spread_names(fragment.selection_set)) for name, fragment in self.fragments.items()}
        operations = []
        for definition in self.document.definitions:
            if isinstance(definition, OperationDefinitionNode):
                part = _Part()
                part.measure = self._selection_set(definition.selection_set, root_type(self.schema, definition), part)
                reached = _reached(spreads, set(spread_names(definition.selection_set)))
                walked = part.written + sum(self.parts[name].written for name in reached if name in self.parts)
                operations.append(OperationShape(definition, part.measure, tuple(part.pages.values()), walked))
        return DocumentShape(operations, [], self.page_errors, self.crowded)

    def _type(self, fragment: FragmentDefinitionNode) -> GraphQLNamedType | None:
        return self.schema.get_type(fragment.type_condition.name.value)

    def _selection_set(self, selections: SelectionSetNode, parent: GraphQLNamedType | None, part: _Part) -> Measure:
        total = Measure()
        part.written += len(selections.selections)
        for selection in selections.selections:
            if isinstance(selection, FieldNode):
                self._directives(selection, selection.directives)
                total.add(self._field(selection, parent, part))
            elif isinstance(selection, InlineFragmentNode):
                self._directives(selection, selection.directives)
                condition = selection.type_condition
                inner = self.schema.get_type(condition.name.value) if condition else parent
                total.add(self._selection_set(selection.selection_set, inner, part))
            elif isinstance(selection, FragmentSpreadNode):
                self._directives(selection, selection.directives)
                spread = self.parts.get(selection.name.value)
                if spread is not None:  # an unknown fragment is KnownFragmentNames' to report
                    total.add(spread.measure)
                    part.pages.update(spread.pages)
        return total

    def _field(self, node: FieldNode, parent: GraphQLNamedType | None, part: _Part) -> Measure:
        name = node.name.value
        definition = field_definition(parent, name)
        inner = Measure()
        if node.selection_set is not None:
            inner_type = get_named_type(definition.type) if definition else None
            inner = self._selection_set(node.selection_set, inner_type, part)
        least, most = self._page(node, parent, definition, part)
        own = 1
        if parent is not None:  # an unpaged list counts as its usual most items; an expensive field, its weight
            items = items_counted(parent.name, name)
            least, most = max(least, items), max(most, items)
            own = weight(parent.name, name)
        return Measure(
            depth=0 if name.startswith("__") else 1 + inner.depth,
            aliases=_capped(inner.aliases + (1 if node.alias else 0)),
            cost=_capped(own + most * inner.cost),
            least_cost=_capped(own + least * inner.least_cost),
        )

    def _page(
        self, node: FieldNode, parent: GraphQLNamedType | None, definition: GraphQLField | None, part: _Part
    ) -> tuple[int, int]:
        """How many items the field returns at most: the least and the most its page may be (a
        connection's `first` or `last`, whichever is given; its default page when neither is)."""
        if definition is None or parent is None:
            return 1, 1
        given_page: tuple[int, int] | None = None
        usual = 1, 1
        for argument_name in PAGE_ARGUMENTS:  # each given one is checked (both given: the resolver refuses)
            if argument_name not in definition.args:
                continue
            maximum = page_maximum(parent.name, node.name.value, argument_name, page_limit=self.page_limit)
            if maximum is None:
                continue
            default = usual_page(parent.name, node.name.value, definition.args[argument_name].default_value, maximum)
            usual = default, default
            given = next((a for a in node.arguments or () if a.name.value == argument_name), None)
            page = self._given_page(given, maximum, part) if given is not None else None
            given_page = given_page or page
        return given_page or usual

    def _given_page(self, argument: ArgumentNode, maximum: int, part: _Part) -> tuple[int, int] | None:
        """None when the page is not given after all (null, or a variable without a value)."""
        value = argument.value
        if isinstance(value, NullValueNode):
            return None
        if isinstance(value, IntValueNode):
            page = literal_page(value.value)
            refusal = page_refusal(argument, maximum, page, digits=value.value)
            if refusal is not None:
                self.page_errors.append(refusal)
                return maximum, maximum
            assert page is not None  # in range
            return page, page
        if isinstance(value, VariableNode):
            name = value.name.value
            if self.variables is not None:
                known = self.variables.get(name)
                if known is None:  # not given: the other page argument, or the default, applies
                    return None
                page = known if isinstance(known, int) and 1 <= known <= maximum else maximum
                return page, page
            part.pages.setdefault((name, argument.name.value, maximum), PageVariable(name, argument, maximum))
            return 1, maximum
        return maximum, maximum  # not an Int: ValuesOfCorrectType refuses it

    def _directives(
        self, where: FieldNode | FragmentSpreadNode | InlineFragmentNode, directives: tuple[DirectiveNode, ...] | None
    ) -> None:
        if directives and len(directives) > self.most_directives:
            self.crowded.append((len(directives), where))
