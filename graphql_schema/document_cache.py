"""Documents a client sends again and again (a frontend's query, the mutation a connector repeats) are
parsed, checked and validated once, not per request: validation was half of a small mutation's time.

The cache is keyed by the document's text and bounded by what it holds, not by a count of entries: a
parsed document takes 100 to 300 times its text in memory (about 600 bytes a token), so each entry is
weighed as its text plus that, and the least recently used go once the total passes the budget. A
document over LARGEST_CACHED characters is never kept: checking it again costs less than the memory.
Refusals are kept too (a client repeating a refused document is refused from the cache).
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Hashable
from dataclasses import dataclass, field

from graphql import DocumentNode, GraphQLError

from graphql_schema.limits import ExecutionChecks

BUDGET_BYTES = 32 * 1024 * 1024
LARGEST_CACHED = 64 * 1024
BYTES_PER_TOKEN = 600  # measured with tracemalloc on this schema's documents: 560 to 600


@dataclass(frozen=True, slots=True)
class Prepared:
    """A document after parsing, the limits and validation: its errors, or the document to execute."""

    document: DocumentNode | None
    errors: tuple[GraphQLError, ...] = ()
    at_execution: dict[str | None, ExecutionChecks] = field(default_factory=dict)
    weight: int = 0  # bytes it holds, about


def weight_of(text: str, document: DocumentNode | None) -> int:
    tokens = 0
    token = document.loc.start_token if document is not None and document.loc is not None else None
    while token is not None:
        tokens += 1
        token = token.next
    return len(text) + BYTES_PER_TOKEN * tokens


class PreparedDocuments:
    """Least recently used first out, within `budget` bytes."""

    def __init__(self, budget: int = BUDGET_BYTES, largest: int = LARGEST_CACHED) -> None:
        self.budget = budget
        self.largest = largest
        self.held = 0
        self.hits = 0
        self.misses = 0
        self._entries: OrderedDict[Hashable, Prepared] = OrderedDict()

    def __len__(self) -> int:
        return len(self._entries)

    def get(self, key: Hashable) -> Prepared | None:
        found = self._entries.get(key)
        if found is None:
            self.misses += 1
            return None
        self.hits += 1
        self._entries.move_to_end(key)
        return found

    def put(self, key: Hashable, text: str, prepared: Prepared) -> None:
        if len(text) > self.largest or prepared.weight > self.budget or key in self._entries:
            return
        self._entries[key] = prepared
        self.held += prepared.weight
        while self.held > self.budget:
            _, gone = self._entries.popitem(last=False)
            self.held -= gone.weight
