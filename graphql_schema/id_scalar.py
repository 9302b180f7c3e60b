"""GraphQL's ID scalar refusing an ID that is not valid Unicode.

JSON's "\\ud800" reads into Python as a lone surrogate, which no store can take as text: asked for
`profile(id: $id)` with one, SQLite's driver raised while encoding it, and the client got
INTERNAL_SERVER_ERROR where an ID nobody has is NOT_FOUND or a clear refusal. A GraphQL string is
Unicode text (the spec's source characters are Unicode scalar values, which a lone surrogate is
not), so the ID's input coercion refuses it in a variable, naming the variable as for any invalid
one (GRAPHQL_VALIDATION_FAILED); in the document's own text the parser refuses it already. Every ID
argument goes through it: profiles, segments, merges, keys, subscriptions' filters. No event field
is an ID: ingestion still judges each event's text alone (app/domain/event_limits.py).

graphql-core allows no other scalar named ID, so its own one's input coercion is wrapped, once per
process, when the schema is built (`refuse_invalid_unicode_ids`).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from graphql import GraphQLError, GraphQLID

from app.domain.event_limits import is_valid_unicode

NOT_UNICODE = "ID is not valid Unicode (it holds a lone surrogate)"


def refuse_invalid_unicode_ids() -> None:
    """Wrap GraphQLID's input coercion of variables with the Unicode check; idempotent."""
    if getattr(GraphQLID.coerce_input_value, "refuses_invalid_unicode", False):
        return
    value = _checked_value(GraphQLID.coerce_input_value)
    GraphQLID.coerce_input_value = GraphQLID.parse_value = value  # type: ignore[method-assign,assignment]


def _checked_value(read: Callable[[Any], Any]) -> Callable[[Any], Any]:
    def parse_value(value: Any) -> Any:
        parsed = read(value)
        if isinstance(parsed, str) and not is_valid_unicode(parsed):
            raise GraphQLError(NOT_UNICODE)
        return parsed

    parse_value.refuses_invalid_unicode = True  # type: ignore[attr-defined]
    return parse_value

