"""Relay's Object Identification: the `Node` interface, implemented by the types that a root field
finds by id (Profile, Segment), so that Relay and similar clients can refetch any of them with
`node(id)` (app/services/nodes.py says what an id names)."""

from __future__ import annotations

import strawberry


@strawberry.interface(
    description="An object that node(id) finds again by its id: a Profile (an id merged away finds the surviving "
    "profile, as profile(id) does) or a Segment."
)
class Node:
    id: strawberry.ID
