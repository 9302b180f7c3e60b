"""Persisted queries: Apollo's automatic persisted queries (APQ), and the trusted-documents mode.

APQ: a client sends `extensions.persistedQuery {version: 1, sha256Hash}` without the document. A hash
this process knows stands for its document; an unknown one is answered `PersistedQueryNotFound`
(code PERSISTED_QUERY_NOT_FOUND, HTTP 200: Apollo Client before 3.8 stops using APQ on a 400), and
the client sends the hash again with the document, which is checked against the hash and remembered
(least recently used dropped first). Each process learns its own: behind several replicas a client is
told "not found" once by each. Over GET the request is a short URL (hash, operation name, variables)
that a CDN can key on; mutations stay refused over GET whatever names them.

Trusted documents (CDP_TRUSTED_DOCUMENTS): only the manifest's documents run, named by hash (or their
manifest id) or sent as their exact text; any other document is refused (403) and an unknown hash is
404, both with the code PERSISTED_QUERY_NOT_IN_LIST, before anything is parsed. Nothing is learned.

What `resolve` returns carries the document's text and no `persistedQuery` extension, so the request
then goes the way of any other (the prepared-document cache and the compiled queries' shorter way
find it by its text).
"""

from __future__ import annotations

import dataclasses
import re
from collections import OrderedDict
from typing import Any

from strawberry.http import GraphQLRequestData

from app.settings import Settings
from app.trusted_documents import TrustedDocuments, document_hash, read_manifest
from graphql_schema.refusals import Refused

NOT_FOUND = "PERSISTED_QUERY_NOT_FOUND"
NOT_SUPPORTED = "PERSISTED_QUERY_NOT_SUPPORTED"
NOT_IN_LIST = "PERSISTED_QUERY_NOT_IN_LIST"
SHA256 = re.compile(r"^[0-9a-fA-F]{64}\Z")
# Document text the process keeps for APQ, in characters, whatever the count allows.
BUDGET_CHARACTERS = 16 * 1024 * 1024
EXTENSION = "persistedQuery"


class PersistedQueries:
    def __init__(
        self, *, size: int, largest: int, trusted: TrustedDocuments | None, budget: int = BUDGET_CHARACTERS
    ) -> None:
        self.size = size
        self.largest = largest  # longer documents are refused by the limits anyway: not worth keeping
        self.trusted = trusted
        self.budget = budget
        self.held = 0
        self._known: OrderedDict[str, str] = OrderedDict()

    @classmethod
    def of(cls, settings: Settings) -> PersistedQueries:
        manifest = settings.trusted_documents
        return cls(
            size=settings.apq_cache_size,
            largest=settings.max_query_length,
            trusted=read_manifest(manifest) if manifest is not None else None,
        )

    def resolve(self, request: GraphQLRequestData) -> GraphQLRequestData:
        """`request` with its document's text and without the persistedQuery extension; Refused
        when there is no document to run."""
        extensions = request.extensions or {}
        persisted = extensions.get(EXTENSION)
        if persisted is None:
            if self.trusted is not None and request.query not in self.trusted.texts:
                raise _not_in_list(403, "this document is not one of the server's trusted documents")
            return request
        digest = _hash_of(persisted)
        text = request.query
        if text is None:
            text = self._find(digest)
        elif document_hash(text) != digest:
            raise Refused(
                400,
                "extensions.persistedQuery.sha256Hash is not the SHA-256 of the document sent "
                f"(which is {document_hash(text)}): hash the exact text of `query`",
            )
        elif self.trusted is not None:
            if text not in self.trusted.texts:
                raise _not_in_list(403, "this document is not one of the server's trusted documents")
        elif self.size:
            self._remember(digest, text)
        rest: dict[str, Any] = {k: v for k, v in extensions.items() if k != EXTENSION}
        return dataclasses.replace(request, query=text, extensions=rest or None)

    def _find(self, digest: str) -> str:
        if self.trusted is not None:
            found = self.trusted.by_id.get(digest)
            if found is None:
                raise _not_in_list(404, "no trusted document has this sha256Hash")
            return found
        if not self.size:
            raise Refused(200, "PersistedQueryNotSupported", code=NOT_SUPPORTED)
        text = self._known.get(digest)
        if text is None:
            raise Refused(200, "PersistedQueryNotFound", code=NOT_FOUND)
        self._known.move_to_end(digest)
        return text

    def _remember(self, digest: str, text: str) -> None:
        if len(text) > self.largest or digest in self._known:
            return
        self._known[digest] = text
        self.held += len(text)
        while len(self._known) > self.size or self.held > self.budget:
            _, gone = self._known.popitem(last=False)
            self.held -= len(gone)

    def __len__(self) -> int:
        return len(self._known)


def _hash_of(persisted: object) -> str:
    if not isinstance(persisted, dict) or persisted.get("version") != 1:
        raise Refused(400, "extensions.persistedQuery must be {version: 1, sha256Hash: …}: only version 1 is known")
    digest = persisted.get("sha256Hash")
    if not isinstance(digest, str) or not SHA256.match(digest):
        raise Refused(400, "extensions.persistedQuery.sha256Hash must be 64 hexadecimal digits (a SHA-256)")
    return digest.lower()


def _not_in_list(status: int, message: str) -> Refused:
    return Refused(
        status,
        f"{message}: this server runs only the documents of its manifest (CDP_TRUSTED_DOCUMENTS)",
        code=NOT_IN_LIST,
    )
