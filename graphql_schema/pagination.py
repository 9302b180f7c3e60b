"""Relay cursor connections: generic Connection/Edge/PageInfo types and opaque cursors."""

from __future__ import annotations

import base64
import binascii
from collections.abc import Callable, Sequence
from typing import Generic, TypeVar

import strawberry

from app.domain.errors import InvalidInput

T = TypeVar("T")
S = TypeVar("S")


@strawberry.type
class PageInfo:
    has_next_page: bool
    has_previous_page: bool
    start_cursor: str | None
    end_cursor: str | None


@strawberry.type
class Edge(Generic[T]):
    cursor: str
    node: T


@strawberry.type
class Connection(Generic[T]):
    edges: list[Edge[T]]
    page_info: PageInfo


def encode_cursor(kind: str, value: str) -> str:
    return base64.urlsafe_b64encode(f"{kind}:{value}".encode()).decode().rstrip("=")


def decode_cursor(kind: str, cursor: str, *, field: str = "after") -> str:
    try:
        text = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)).decode()
    except (binascii.Error, UnicodeDecodeError, ValueError):
        text = ""
    prefix = f"{kind}:"
    if not text.startswith(prefix):
        raise InvalidInput("not a cursor from this list: pass an endCursor you received", field=field)
    return text.removeprefix(prefix)


def connection(
    items: Sequence[S], *, has_next: bool, has_previous: bool, cursor: Callable[[S], str], node: Callable[[S], T]
) -> Connection[T]:
    edges = [Edge(cursor=cursor(item), node=node(item)) for item in items]
    return Connection(
        edges=edges,
        page_info=PageInfo(
            has_next_page=has_next,
            has_previous_page=has_previous,
            start_cursor=edges[0].cursor if edges else None,
            end_cursor=edges[-1].cursor if edges else None,
        ),
    )
