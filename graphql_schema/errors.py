"""The one place where errors become GraphQL errors.

Domain errors keep their message and get `extensions.code` (and `extensions.field` when they name
one). GraphQL syntax and validation errors get a code too. Anything else is masked: the client gets
"Internal server error" and an `errorId` that finds the full log line; no stack trace, no database
message ever leaves the server.

With introspection off, graphql-core's suggestions ("Did you mean 'segments'?") are cut from every
message here, whichever step wrote them (validation, variable coercion, enum values): they would spell
out the schema that switching introspection off hides.
"""

from __future__ import annotations

import logging
import re
import uuid
from functools import lru_cache
from typing import Any

from graphql import Visitor, parse, visit
from graphql.error import GraphQLError
from graphql.language import ArgumentNode, Node, ObjectFieldNode, ValueNode
from strawberry.extensions import MaskErrors
from strawberry.schema.exceptions import CannotGetOperationTypeError

from app.domain.errors import DomainError
from graphql_schema.limits import LIMIT_EXCEEDED, is_limit_message
from graphql_schema.refusals import BAD_REQUEST

log = logging.getLogger("cdp.graphql")
# graphql-core's one wording for every suggestion (graphql/pyutils/did_you_mean.py): " Did you mean
# 'a', 'b', or 'c'?", or with words before the names ("the enum value"). Names cannot hold a "?".
SUGGESTION = re.compile(r" ?Did you mean [^?]*\?")
# The longest document whose refused values are named (parsed and walked again, on the event loop,
# ~15 µs a value): a frontend's documents are far shorter; a hostile one's values stay unnamed.
NAMED_DOCUMENT_CHARACTERS = 16 * 1024


def without_suggestions(message: str) -> str:
    return SUGGESTION.sub("", message)


def to_graphql_error(error: GraphQLError, *, hide_suggestions: bool = False) -> GraphQLError:
    original = error.original_error
    if isinstance(original, DomainError):
        extensions = {"code": original.code}
        if original.field:
            extensions["field"] = original.field
        return GraphQLError(original.message, error.nodes, error.source, error.positions, error.path, None, extensions)
    if isinstance(original, CannotGetOperationTypeError):  # the request names no operation it holds
        return GraphQLError(original.as_http_error_reason(), extensions={"code": BAD_REQUEST})
    if original is None or (error.path is None and error.message.startswith("Variable '$")):
        # Syntax, validation and variable-coercion errors: graphql-core wrote the message about the
        # client's own document, so it is safe and useful to return as is.
        code = (error.extensions or {}).get("code") or (
            LIMIT_EXCEEDED
            if is_limit_message(error.message)
            else "GRAPHQL_PARSE_FAILED"
            if error.message.startswith("Syntax Error")
            else "GRAPHQL_VALIDATION_FAILED"
        )
        message = without_suggestions(error.message) if hide_suggestions else error.message
        extensions = {**(error.extensions or {}), "code": code}
        if code == "GRAPHQL_VALIDATION_FAILED" and (field := _literal_at(error)) is not None:
            message, extensions["field"] = f"{field}: {message}", field
        return GraphQLError(message, error.nodes, error.source, error.positions, error.path, None, extensions)
    error_id = uuid.uuid4().hex[:12]
    log.error("unexpected error %s at %s", error_id, error.path, exc_info=original, extra={"errorId": error_id})
    return GraphQLError(
        "Internal server error",
        error.nodes,
        error.source,
        error.positions,
        error.path,
        None,
        {"code": "INTERNAL_SERVER_ERROR", "errorId": error_id},
    )


def _literal_at(error: GraphQLError) -> str | None:
    """Where a value written in the document that validation refused sits, as the input names it
    (`input.birthDate`, `events[0].timestamp`): graphql-core's message said what, never where, where
    the same value in variables is named (PRODUCT.md: a clear error names the field)."""
    node = error.nodes[0] if error.nodes else None
    if not isinstance(node, ValueNode) or node.loc is None or error.source is None:
        return None
    if len(error.source.body) > NAMED_DOCUMENT_CHARACTERS:  # walked on the loop: a large one is left unnamed
        return None
    try:
        return _value_places(error.source.body).get(node.loc.start)
    except GraphQLError:
        return None


@lru_cache(maxsize=4)
def _value_places(body: str) -> dict[int, str]:
    """Each value's place in the document `body`, by where it starts: the document is parsed and walked
    once, however many of its values are refused (validation says up to 100 errors of one request)."""
    places = _ValuePlaces()
    visit(parse(body), places)
    return places.found


class _ValuePlaces(Visitor):
    """The place of each value (argument, fields, list positions), each from its parent's: a walk in
    time linear in the document, however long its lists."""

    def __init__(self) -> None:
        super().__init__()
        self.found: dict[int, str] = {}
        self._places: dict[int, str] = {}  # id of a node entered → its place

    def enter(self, node: Node, key: Any, parent: Any, path: Any, ancestors: list[Any]) -> Any:
        holder = ancestors[-1] if ancestors else None
        if isinstance(node, ArgumentNode):
            place: str | None = node.name.value
        elif isinstance(node, ObjectFieldNode):
            above = self._places.get(id(holder))
            place = f"{above}.{node.name.value}" if above else node.name.value
        elif isinstance(node, ValueNode) and isinstance(key, int):  # an item of a list
            above = self._places.get(id(holder))
            place = f"{above}[{key}]" if above else None
        elif isinstance(node, ValueNode):  # the value of an argument or an object's field
            place = self._places.get(id(parent))
        else:
            return None
        if place is not None:
            self._places[id(node)] = place
            if isinstance(node, ValueNode) and node.loc is not None:
                self.found.setdefault(node.loc.start, place)
        return None


class ErrorCodes(MaskErrors):
    def __init__(self, *, hide_suggestions: bool = False) -> None:
        super().__init__()
        self.hide_suggestions = hide_suggestions

    def _process_errors(self, errors: list[GraphQLError]) -> list[GraphQLError]:
        return [to_graphql_error(error, hide_suggestions=self.hide_suggestions) for error in errors]

    def _process_result(self, result: object) -> None:
        # MaskErrors asks `isinstance` of a runtime-checkable Protocol first, which walks the
        # protocol's members each time: a twentieth of the CPU of delivering one subscription event
        # to a thousand subscribers. A result without errors has nothing to mask.
        if getattr(result, "errors", None):
            super()._process_result(result)
