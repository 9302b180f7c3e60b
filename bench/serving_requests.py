"""What the serving benchmark sends: the frontend's personalisation query (issue 14's document), the
filtered lists, ingest batches of the bench's mixed events (bench/dataset.py) whose message ids are
made unique per request by load.lua, and the cart-abandoners segment the ingests move profiles into
and out of. Bodies are encoded once, before any clock starts."""

from __future__ import annotations

import random
from datetime import UTC, datetime
from typing import Any

import orjson

from bench import dataset
from bench.ingest import INGEST_MUTATION

# The frontend's personalisation query, exactly as issue 14 gives it.
PROFILE_QUERY = """query Customer($type: String!, $value: String!) { profileByIdentifier(type: $type, value: $value) {
  id firstName lastName language gender traits segments consents { purpose granted at }
  stats { orders revenue averageOrderValue lastOrderAt cartAbandons visits lastSeenAt emailOpens emailClicks
          productViews pageViews channels { channel count } }
  qualitative { npsScore averageRating preferences } rfm { recencyScore frequencyScore monetaryScore segment }
  interactions(first: 10) { edges { node { type channel timestamp properties } }
    pageInfo { hasNextPage endCursor } } } }"""
PROFILE_EXPECT = '"firstName":'  # an existing customer was found (null would not hold it)

LIST_QUERY = """query Customers($filter: ProfileFilterInput) { profiles(first: 20, filter: $filter) {
  edges { cursor node { id firstName lastName segments stats { orders revenue lastSeenAt } } }
  pageInfo { hasNextPage endCursor } } }"""
LIST_EXPECT = '"edges":'

# As fixtures/segments.jsonl's "cart-abandoners-30d": an abandoned cart, then no order, within 30 days.
CART_ABANDONERS = {
    "and": [
        {"event": {"type": "cart_abandoned", "atLeast": 1, "withinDays": 30}},
        {"not": {"event": {"type": "order_completed", "atLeast": 1, "withinDays": 30}}},
    ]
}
CREATE_SEGMENT = """mutation Create($input: SegmentInput!) { createSegment(input: $input) { segment { id } } }"""
SUBSCRIPTION = (
    "subscription Changes($segmentId: ID) { segmentMembershipChanged(segmentId: $segmentId) "
    "{ id change profileId segmentId at } }"
)
INGEST_EXPECT = '"accepted":'
UID = "__UID__"  # load.lua puts a per-request token here


def create_segment_body() -> bytes:
    segment = {"name": "Cart abandoners (bench)", "condition": CART_ABANDONERS}
    return orjson.dumps({"query": CREATE_SEGMENT, "variables": {"input": segment}})


def profile_bodies(profiles: int, count: int, seed: int) -> list[bytes]:
    """`count` personalisation queries for random existing customers (by email)."""
    rng = random.Random(seed)
    picks = rng.sample(range(profiles), min(count, profiles))
    return [
        orjson.dumps({"query": PROFILE_QUERY, "variables": {"type": "email", "value": dataset.email_of(i)}})
        for i in picks
    ]


def list_filters(segment_id: str | None) -> list[dict[str, Any]]:
    """Filters a back-office list or an audience preview uses: by city, name prefix, counters, segment."""
    filters: list[dict[str, Any]] = [{"city": city} for city, _ in dataset.CITIES]
    filters += [{"name": name[:3]} for name in dataset.FIRST_NAMES[:6]]
    filters += [
        {"stats": [{"field": "ORDERS", "min": 1}]},
        {"stats": [{"field": "PAGE_VIEWS", "min": 2}]},
        {"identifierType": "anonymousId"},
        {"city": "Paris", "stats": [{"field": "EMAIL_OPENS", "min": 1}]},
    ]
    if segment_id is not None:
        filters.append({"segment": segment_id})
    return filters


def list_bodies(segment_id: str | None) -> list[bytes]:
    return [orjson.dumps({"query": LIST_QUERY, "variables": {"filter": f}}) for f in list_filters(segment_id)]


def ingest_bodies(profiles: int, *, batches: int, batch_size: int, seed: int) -> list[bytes]:
    """`batches` ingestEvents bodies of `batch_size` mixed events over `profiles` customers; each
    messageId holds UID, so every request load.lua sends is new events (never a replay)."""
    stream = dataset.event_stream(
        profiles,
        batches * batch_size,
        batch_size=batch_size,
        seed=seed,
        run_id=dataset.run_id(),
        now=datetime.now(UTC),
    )
    bodies = []
    for batch in stream.graphql:
        events = [{**event, "messageId": f"e-{UID}-{n}"} for n, event in enumerate(batch)]
        bodies.append(orjson.dumps({"query": INGEST_MUTATION, "variables": {"events": events}}))
    return bodies
