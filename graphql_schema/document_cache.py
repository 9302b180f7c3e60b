"""Documents a client sends again and again (a frontend's query, the mutation a connector repeats) are
parsed and validated once, not per request: validation was half of a small mutation's time.

Validation results come from Strawberry's ValidationCache, keyed by the document object, the schema
and the rule classes. The parse is ours: Strawberry's ParserCache parses inside its hook, where a
syntax or token-limit error escapes the error handling every other request error gets; here a
document not seen yet is left to Strawberry's own parse, and kept once it parsed.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable, Iterator

from graphql import DocumentNode
from strawberry.extensions import SchemaExtension, ValidationCache

# Distinct documents kept (the least recently used go first).
DOCUMENTS_CACHED = 512

_parsed: OrderedDict[tuple[str, tuple[tuple[str, object], ...]], DocumentNode] = OrderedDict()


class ParsedDocuments(SchemaExtension):
    """The same document text (with the same parse options: the token limit) gives the same
    document object each time, which is what the validation cache recognises."""

    def on_parse(self) -> Iterator[None]:
        context = self.execution_context
        if context.query is None:
            yield
            return
        key = (context.query, tuple(sorted(context.parse_options.items())))
        found = _parsed.get(key)
        if found is not None:
            _parsed.move_to_end(key)
            context.graphql_document = found
        yield
        if found is None and context.graphql_document is not None:
            _parsed[key] = context.graphql_document
            if len(_parsed) > DOCUMENTS_CACHED:
                _parsed.popitem(last=False)


def document_caches() -> list[Callable[[], SchemaExtension]]:
    return [ParsedDocuments, lambda: ValidationCache(maxsize=DOCUMENTS_CACHED)]
