"""The bound on the lists given in the variables keeps what it works out per operation of a document,
for the operations the document has: an operationName it does not have is graphql-core's to refuse."""

from __future__ import annotations

from graphql import parse

from graphql_schema import variable_limits
from graphql_schema.schema import schema


def test_an_operation_name_the_document_does_not_have_is_not_kept() -> None:
    """Found by an audit: every operationName sent with variables was kept beside the cached document
    (3,000 names of 4 KB: 12.9 MB), though the request was refused as naming no operation."""
    document = parse("query Q($t: [String!]) { segments { id } }")
    for n in range(50):
        found = variable_limits.list_refusal(schema._schema, document, f"n{n:05d}-" + "x" * 100, {"t": ["a"]}, 10)
        assert found is None
    assert variable_limits.list_refusal(schema._schema, document, "Q", {"t": ["a"] * 11}, 10) is not None
    kept = variable_limits._list_variables.get(document)
    assert kept is not None and set(kept) == {"Q"}
