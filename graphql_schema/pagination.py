"""Relay cursor connections: generic Connection/Edge/PageInfo types with `totalCount`, opaque cursors,
and the window that `first`/`after`/`last`/`before` ask for."""

from __future__ import annotations

import base64
import binascii
import functools
from collections.abc import Awaitable, Callable, Sequence
from typing import Any, Generic, TypeVar, cast

import strawberry

from app.domain.errors import InvalidInput
from app.domain.paging import Window

T = TypeVar("T")
S = TypeVar("S")
P = TypeVar("P")
F = TypeVar("F", bound=Callable[..., Any])

# How a connection counts its whole list, called only when `totalCount` is selected.
Count = Callable[[], Awaitable[int]]


def _start_cursor(root: PageInfo) -> str | None:
    return root.cursor_of(root.items[0]) if root.items else None


def _end_cursor(root: PageInfo) -> str | None:
    return root.cursor_of(root.items[-1]) if root.items else None


@strawberry.type
class PageInfo:
    has_next_page: bool
    has_previous_page: bool
    # Made when selected, as edges' cursors are: a list of connections (each member's last interactions)
    # would otherwise encode two cursors for each, rarely read.
    start_cursor: str | None = strawberry.field(resolver=_start_cursor)
    end_cursor: str | None = strawberry.field(resolver=_end_cursor)
    items: strawberry.Private[Sequence[Any]]
    cursor_of: strawberry.Private[Callable[[Any], str]]


def _edge_cursor(root: Edge[Any]) -> str:
    return root.cursor_of(root.item)


@strawberry.type
class Edge(Generic[T]):
    # Made when selected: a page's cursors are rarely read but at its ends (pageInfo), and a list of
    # connections (each member's history) would otherwise encode thousands of them.
    cursor: str = strawberry.field(resolver=_edge_cursor)
    node: T
    item: strawberry.Private[Any]
    cursor_of: strawberry.Private[Callable[[Any], str]]


def _edges(root: Connection[Any]) -> list[Edge[Any]]:
    """The page's edges, made when selected: a list of members with their last 10 interactions each
    made 3,000 of them, read only for their node (the compiled plans read `page_nodes` then)."""
    page = root.page_info
    items, cursor_of, edges = page.items, page.cursor_of, []
    for item, node in zip(items, root.page_nodes, strict=True):
        edge = _new(Edge)
        edge.node, edge.item, edge.cursor_of = node, item, cursor_of
        edges.append(edge)
    return edges


# What graphql_schema/compiled_queries.py reads instead of calling `_edges` when a selection asks the
# edges for their node only: the attribute holding the page's nodes, in order.
_edges.page_nodes = "page_nodes"  # type: ignore[attr-defined]

# (source, request context) -> the page's nodes, or None: the resolver makes the page.
PageNodes = Callable[[Any, Any], list[Any] | None]
# The arguments a document writes (by their GraphQL names) -> the PageNodes for them, or None: the
# resolver always makes the page. See `nodes_alone`.
NodesAlone = Callable[[dict[str, Any]], PageNodes | None]


def nodes_alone(nodes: NodesAlone) -> Callable[[F], F]:
    """Mark a connection's resolver with what gives its page's nodes without the connection: a
    compiled plan asking the connection for nothing but its edges' nodes (a list of 300 members
    with their last 10 interactions each) asks `nodes` once, with the arguments its document
    writes, for a function of (source, context), and calls that instead of the resolver
    (graphql_schema/compiled_queries.py): no page info, count or connection made for each member,
    nor its arguments looked at again. The resolver is called when `nodes` answers None, or the
    function does. The function must give the nodes the resolver's page would hold, in order."""

    def mark(resolver: F) -> F:
        resolver.nodes_alone = nodes  # type: ignore[attr-defined]
        return resolver

    return mark


@strawberry.type
class Connection(Generic[T]):
    edges: list[Edge[T]] = strawberry.field(resolver=_edges)
    page_info: PageInfo
    counter: strawberry.Private[Count]
    page_nodes: strawberry.Private[list[T]]  # the page's nodes, in order (an edge's node is the one at its place)

    @strawberry.field(
        description="How many items the whole list holds: the same on every page, whatever the cursors "
        "(counted by the store when asked for)."
    )
    async def total_count(self) -> int:
        return await self.counter()


@functools.lru_cache(maxsize=1024)
def counted(total: int) -> Count:
    """A count known already (one function for each total, shared: a list of members makes hundreds)."""

    async def count() -> int:
        return total

    return count


def encode_cursor(kind: str, value: str) -> str:
    return base64.urlsafe_b64encode(f"{kind}:{value}".encode()).decode().rstrip("=")


def decode_cursor(kind: str, cursor: str, *, field: str = "after") -> str:
    try:
        text = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)).decode()
    except (binascii.Error, UnicodeDecodeError, ValueError):
        text = ""
    prefix = f"{kind}:"
    if not text.startswith(prefix):
        raise foreign_cursor(field)
    return text.removeprefix(prefix)


def foreign_cursor(field: str) -> InvalidInput:
    received = "a startCursor" if field == "before" else "an endCursor"
    return InvalidInput(f"not a cursor from this list: pass {received} you received", field=field)


def page_window(
    first: int | None,
    after: str | None,
    last: int | None,
    before: str | None,
    *,
    default: int,
    position: Callable[[str, str], P],
) -> Window[P]:
    """The window Relay's arguments ask for: the first `first` items (`default` when neither is given)
    or the last `last`, between the positions of the cursors, each read by `position(cursor, argument)`.
    The page sizes are the services' to check."""
    if first is not None and last is not None:
        raise InvalidInput("pass first or last, not both: first pages forwards, last backwards", field="last")
    size = last if last is not None else first if first is not None else default
    if not after and not before:  # a first page, of a list in a list most often: one window for them all
        return _end_window(size, last is not None)
    return Window(
        size,
        after=position(after, "after") if after else None,
        before=position(before, "before") if before else None,
        from_end=last is not None,
    )


@functools.lru_cache(maxsize=256)
def _end_window(size: int, from_end: bool) -> Window[Any]:
    return Window(size, from_end=from_end)  # frozen: shared by every page of this size from this end


_new = object.__new__


def connection(
    items: Sequence[S],
    *,
    has_next: bool,
    has_previous: bool,
    cursor: Callable[[S], str],
    node: Callable[[S], T] | None,
    count: Count,
) -> Connection[T]:
    """A page as a connection, each item's node made by `node` (None: the items are the nodes, with no
    call per item: a list of members' last interactions makes thousands of nodes). Its edges are made
    only when selected (`_edges`)."""
    # Each object made as its type's generated __init__ makes it (attributes set in order), without
    # a call by keywords: three times the cost, for each of thousands of pages.
    page_info = _new(PageInfo)
    page_info.has_next_page, page_info.has_previous_page = has_next, has_previous
    page_info.items, page_info.cursor_of = items, cursor
    made: Connection[T] = _new(Connection)
    made.page_info, made.counter = page_info, count
    nodes = (items if items.__class__ is list else list(items)) if node is None else [node(item) for item in items]
    made.page_nodes = cast(list[T], nodes)
    return made
