"""A request leaves no reference cycle behind: what it made (its executor, context, variables, the
HTTP request and the answer) is freed as soon as it is done with, not left for the cycle collector,
whose pauses (3-14 ms every 45 requests) were most of the personalisation query's tail latency
(graphql_schema/execution.py)."""

from __future__ import annotations

import gc

from graphql.execution.executor import Executor

from graphql_schema.context import Context
from tests.e2e.conftest import GraphQL

UPSERT = """mutation { upsertProfile(input: {identifiers: [{type: "email", value: "ada@example.com"}],
  firstName: "Ada"}) { id } }"""
QUERY = """query Customer($type: String!, $value: String!) { profileByIdentifier(type: $type, value: $value) {
  id firstName segments consents { purpose } stats { orders channels { channel count } }
  interactions(first: 10) { edges { node { type timestamp } } pageInfo { hasNextPage } } } }"""


SEGMENT = """mutation { createSegment(input: {name: "Buyers",
  condition: {compare: {path: "stats.orders", op: "gte", value: 1}}}) { segment { id } } }"""
ORDER = """mutation($id: String!) { ingestEvents(events: [{messageId: $id, type: "order_completed", channel: "web",
  timestamp: "2026-01-01T10:00:00Z", identifiers: [{type: "email", value: "ada@example.com"}],
  properties: {orderId: $id, total: 10, lines: []}}]) { accepted } }"""


def _ours(thing: object) -> bool:
    """A function defined in our own code."""
    module = getattr(thing, "__module__", None) or ""
    return module.startswith(("app.", "graphql_schema."))


async def _left_for_the_collector(gql: GraphQL, query: str, variables: dict[str, str] | None = None) -> list[str]:
    gc.collect()
    gc.disable()
    gc.set_debug(gc.DEBUG_SAVEALL)  # what the collector finds is kept in gc.garbage, not freed
    try:
        body = await gql(query, variables)
        assert "errors" not in body, body
        gc.collect()
        return sorted(
            {type(o).__name__ for o in gc.garbage if isinstance(o, (Context, Executor))}
            | {f"function {o.__qualname__}" for o in gc.garbage if type(o).__name__ == "function" and _ours(o)}
        )
    finally:
        gc.set_debug(0)
        gc.garbage.clear()
        gc.enable()


async def test_a_query_and_a_mutation_leave_nothing_for_the_cycle_collector(gql: GraphQL) -> None:
    await gql(UPSERT)
    variables = {"type": "email", "value": "ada@example.com"}
    for _ in range(3):  # documents parsed, validated and compiled: what stays is the caches' own
        await gql(QUERY, variables)
    assert await _left_for_the_collector(gql, QUERY, variables) == []
    assert await _left_for_the_collector(gql, UPSERT) == []


async def test_ingestion_and_segment_upkeep_leave_nothing_for_the_cycle_collector(gql: GraphQL) -> None:
    await gql(UPSERT)
    await gql(SEGMENT)
    for number in range(3):
        await gql(ORDER, {"id": f"warm-{number}"})
    assert await _left_for_the_collector(gql, ORDER, {"id": "measured"}) == []
