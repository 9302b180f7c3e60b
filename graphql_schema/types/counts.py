"""A count as GraphQL's Int (signed 32 bits) carries it."""

from __future__ import annotations

INT_MIN, INT_MAX = -(2**31), 2**31 - 1


def graphql_int(value: int) -> int:
    """A count as a GraphQL Int. What one event adds is bounded, but a total can still outgrow it (or
    was written before the bounds): it reads as the largest Int, never as a read that fails for good."""
    return max(INT_MIN, min(value, INT_MAX))
