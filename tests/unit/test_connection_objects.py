"""`connection()` makes its page info and connection, `_edges` the edges when selected, and
`Profile.from_domain` a profile, without calling their constructors (a list of members' last interactions
makes thousands): each must be what the type's own constructor makes, attribute for attribute and
in order, so a field added to a type fails here, not in a response."""

from __future__ import annotations

from datetime import UTC, datetime

import strawberry

from app.domain import profile as domain
from graphql_schema.pagination import Connection, Edge, PageInfo, _edges, connection, counted
from graphql_schema.types.profile import Profile


def _cursor(item: str) -> str:
    return f"c:{item}"


def test_the_objects_are_those_the_types_constructors_make() -> None:
    items = ["a", "b"]
    count = counted(2)
    for node in (None, str.upper):
        made = connection(items, has_next=True, has_previous=False, cursor=_cursor, node=node, count=count)
        edges = [Edge(node=node(i) if node else i, item=i, cursor_of=_cursor) for i in items]
        page_info = PageInfo(has_next_page=True, has_previous_page=False, items=items, cursor_of=_cursor)
        nodes = [node(i) if node else i for i in items]
        expected = Connection(page_info=page_info, counter=count, page_nodes=nodes)

        assert type(made) is Connection and list(vars(made)) == list(vars(expected))
        assert made.page_nodes == nodes
        assert [list(vars(e).items()) for e in _edges(made)] == [list(vars(e).items()) for e in edges]
        assert all(type(e) is Edge for e in _edges(made))
        assert type(made.page_info) is PageInfo
        assert list(vars(made.page_info).items()) == list(vars(page_info).items())
        assert made.counter is count


def test_a_profile_is_what_its_constructor_makes() -> None:
    """`Profile.from_domain` sets its attributes without the constructor (500 profiles in a segment's
    history): the same attributes in the same order, so a field added to the type fails here."""
    stored = domain.new_profile("p1", datetime(2026, 1, 1, tzinfo=UTC)).model_copy(
        update={"gender": "f", "language": "fr", "company": "Acme", "job_title": "CTO"}
    )
    made = Profile.from_domain(stored)
    expected = Profile(
        profile=stored, id=strawberry.ID("p1"), gender="f", language="fr", company="Acme", job_title="CTO"
    )
    assert type(made) is Profile and list(vars(made).items()) == list(vars(expected).items())
