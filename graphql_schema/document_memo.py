"""Values kept beside a parsed document for as long as it lives.

The document cache (graphql_schema/document_cache.py) hands out one document object per text, so what
is worked out once for a document (its execution checks, its compiled plans) is kept by the object's
identity and dropped with it: no second cache to size, and an id reused by a later object never finds
the earlier one's value.
"""

from __future__ import annotations

import weakref
from collections.abc import Callable
from typing import Generic, TypeVar

from graphql import DocumentNode

V = TypeVar("V")


class DocumentMemo(Generic[V]):
    """A value per live document object."""

    def __init__(self) -> None:
        self._held: dict[int, tuple[weakref.ref[DocumentNode], V]] = {}

    def get(self, document: DocumentNode) -> V | None:
        found = self._held.get(id(document))
        return found[1] if found is not None and found[0]() is document else None

    def put(self, document: DocumentNode, value: V) -> V:
        key = id(document)

        def forget(gone: weakref.ref[DocumentNode]) -> None:
            if self._held.get(key, (None,))[0] is gone:
                del self._held[key]

        self._held[key] = (weakref.ref(document, forget), value)
        return value

    def setdefault(self, document: DocumentNode, make: Callable[[], V]) -> V:
        found = self.get(document)
        return self.put(document, make()) if found is None else found

    def __len__(self) -> int:
        return len(self._held)
