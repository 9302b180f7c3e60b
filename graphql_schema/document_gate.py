"""Every GraphQL document passes here before it executes, cheapest check first, and nothing more
runs once one refuses: its length and its tokens (before parsing), the limits
(graphql_schema/limits.py, linear in its size), and only then graphql-core's validation rules, some
of which a hostile document could otherwise keep busy for seconds.

What comes out, a refusal or the validated document, is cached by text (graphql_schema/document_cache.py):
a document sent again costs a dictionary lookup. A document not seen yet is prepared on a worker thread
unless it is tiny (parsing and validating cost about 20 µs a token: a 2,000-token document 40 to 100 ms),
so that other requests, /healthz included, are answered meanwhile; clients sending the same new
document at once wait for one preparation.
"""

from __future__ import annotations

import asyncio
from collections.abc import Hashable
from concurrent.futures import ThreadPoolExecutor

from graphql import GraphQLError, GraphQLSchema, parse
from graphql.validation import ASTValidationRule, NoSchemaIntrospectionCustomRule
from strawberry.schema.schema import validate_document

from graphql_schema.document_cache import Prepared, PreparedDocuments, weight_of
from graphql_schema.execution import expect
from graphql_schema.limits import QueryLimits, check_document, length_refusal, token_refusal

# Up to this many characters (about 30 tokens) a document is prepared where it arrives, in a few
# milliseconds; a longer one holds the event loop longer than a thread hand-off costs (a typical
# 170-character query took 3 to 8 ms to parse and validate on a busy two-core machine).
INLINE_LENGTH = 128
# One thread: preparing is CPU work under the GIL, a second thread would only queue behind the first;
# and new documents from one client cannot take the threads that other work (store calls) needs.
_worker = ThreadPoolExecutor(max_workers=1, thread_name_prefix="graphql-documents")


class DocumentGate:
    def __init__(self, schema: GraphQLSchema, limits: QueryLimits, documents: PreparedDocuments | None = None) -> None:
        self.schema = schema
        self.limits = limits
        self.documents = documents if documents is not None else PreparedDocuments()
        self._extra_rules: tuple[type[ASTValidationRule], ...] = (
            () if limits.introspection else (NoSchemaIntrospectionCustomRule,)
        )
        self._preparing: dict[Hashable, asyncio.Future[Prepared]] = {}

    async def prepare(self, text: str, rules: tuple[type[ASTValidationRule], ...]) -> Prepared:
        """`text` parsed, held against the limits and validated with `rules`: its errors or its document."""
        refusal = length_refusal(text, self.limits)
        if refusal is not None:
            return Prepared(None, (refusal,))
        key = (text, rules)
        found = self.documents.get(key)
        if found is not None:
            return found
        if len(text) <= INLINE_LENGTH:
            prepared = self.prepare_now(text, rules)
            self.documents.put(key, text, prepared)
            return prepared
        preparing = self._preparing.get(key)
        if preparing is None:
            preparing = asyncio.get_running_loop().run_in_executor(_worker, self.prepare_now, text, rules)
            self._preparing[key] = preparing
            preparing.add_done_callback(lambda done: self._prepared(key, text, done))
        # Shielded: a client that goes away must not cancel what others sending the same text wait for.
        return await asyncio.shield(preparing)

    def prepare_now(self, text: str, rules: tuple[type[ASTValidationRule], ...]) -> Prepared:
        refusal = token_refusal(text, self.limits)
        if refusal is not None:
            return Prepared(None, (refusal,), weight=len(text))
        try:
            document = parse(text, max_tokens=self.limits.max_tokens)
        except GraphQLError as error:
            return Prepared(None, (_detached(error),), weight=len(text))
        checked = check_document(self.schema, document, self.limits)
        errors = checked.errors or validate_document(self.schema, document, (*rules, *self._extra_rules))
        weight = weight_of(text, document)  # refusals point into the document too
        if errors:
            return Prepared(None, tuple(_detached(error) for error in errors), weight=weight)
        expect(document, checked.at_execution)
        return Prepared(document, (), checked.at_execution, weight)

    def _prepared(self, key: Hashable, text: str, done: asyncio.Future[Prepared]) -> None:
        self._preparing.pop(key, None)
        if not done.cancelled() and done.exception() is None:
            self.documents.put(key, text, done.result())


def _detached(error: GraphQLError) -> GraphQLError:
    """The error without the frames it was raised through: a cached error must not keep them alive."""
    error.__traceback__ = None
    error.__context__ = None
    error.__cause__ = None
    return error
