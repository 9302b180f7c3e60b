"""One request for a personalisation page (issue 16 item 3): from an email, the profile, its segments
with their names and since when, its recommendations and its last 10 interactions; on every backend."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

import httpx

from app.domain import clock
from app.domain.access import Scope
from app.domain.recommendation import NOT_PERSONALISED
from app.services.api_keys import create_key
from app.services.ports import ProfileStore
from tests.e2e.conftest import GraphQL

EMAIL = "ana@example.com"
PERSONALISATION = """query($email: String!) { profileByIdentifier(type: "email", value: $email) {
  id firstName segments
  segmentMemberships { segment { id name } since }
  recommendations(first: 3) { product { id category } score reasons }
  interactions(first: 10) { edges { node { type timestamp } } }
} }"""
ROOT_RECOMMENDATIONS = """query($id: ID!) { recommendations(profileId: $id, first: 3) {
  product { id category } score reasons } }"""
PRODUCTS = "mutation($products: [ProductInput!]!) { upsertProducts(products: $products) { id } }"
INGEST = "mutation($events: [EventInput!]!) { ingestEvents(events: $events) { accepted results { profileId } } }"
CREATE_SEGMENT = """mutation($name: String!, $condition: JSON!) {
  createSegment(input: {name: $name, condition: $condition}) { segment { id } entered } }"""
HISTORY = "query($id: ID!) { segmentHistory(profileId: $id) { segmentId change at } }"
CATALOGUE = [
    {"id": "bag-1", "name": "Tote", "category": "bags", "price": 40, "stock": 5},
    {"id": "bag-2", "name": "Weekender", "category": "bags", "price": 90, "stock": 5, "newItem": True},
    {"id": "shoe-1", "name": "Runner", "category": "shoes", "price": 80, "stock": 5},
    {"id": "hat-1", "name": "Cap", "category": "hats", "price": 15, "stock": 5},
]


def _event(n: int, type_: str, hours_ago: float, properties: dict[str, Any]) -> dict[str, Any]:
    return {
        "messageId": f"ana-{n}",
        "type": type_,
        "channel": "web",
        "timestamp": (clock.now() - timedelta(hours=hours_ago)).isoformat(),
        "identifiers": [{"type": "email", "value": EMAIL}],
        "properties": properties,
    }


async def _shop(gql: GraphQL) -> tuple[str, str]:
    """Ana, who bought shoes five days ago, looked at bags, then read 12 pages (her newest interactions);
    a Buyers segment she entered and a Regulars one she did not. Her id and the Buyers segment's id."""
    assert "errors" not in await gql(PRODUCTS, {"products": CATALOGUE})
    order = {"orderId": "o1", "total": 80, "lines": [{"productId": "shoe-1", "price": 80}]}
    events = [
        _event(0, "identify", 24 * 6, {"firstName": "Ana"}),
        _event(1, "order_completed", 24 * 5, order),
        *(_event(2 + n, "product_view", 24 * 2 - n, {"productId": "bag-1", "price": 40}) for n in range(3)),
        *(_event(10 + n, "page_view", 12 - n, {"url": f"/p{n}"}) for n in range(12)),
    ]
    ingested = (await gql(INGEST, {"events": events}))["data"]["ingestEvents"]
    assert ingested["accepted"] == len(events), ingested
    segments = {}
    for name, condition in (
        ("Buyers", {"compare": {"path": "stats.orders", "op": "gte", "value": 1}}),
        ("Regulars", {"compare": {"path": "stats.orders", "op": "gte", "value": 5}}),
    ):
        body = await gql(CREATE_SEGMENT, {"name": name, "condition": condition})
        assert "errors" not in body, body["errors"]
        created = body["data"]["createSegment"]
        segments[name] = created["segment"]["id"]
    return ingested["results"][0]["profileId"], segments["Buyers"]


async def _grant_personalisation(gql: GraphQL, granted: bool, n: int) -> None:
    # Older than the page views (the newest interactions), each decision newer than the one before.
    consent = _event(100 + n, "consent_update", 20 - n, {"purpose": "personalisation", "granted": granted})
    assert (await gql(INGEST, {"events": [consent]}))["data"]["ingestEvents"]["accepted"] == 1


async def test_one_request_from_an_email_gives_the_profile_segments_recommendations_and_last_interactions(
    gql: GraphQL,
) -> None:
    profile_id, buyers = await _shop(gql)
    await _grant_personalisation(gql, True, 1)

    body = await gql(PERSONALISATION, {"email": " ANA@example.com"})  # normalised as on ingestion
    assert "errors" not in body, body["errors"]
    profile = body["data"]["profileByIdentifier"]
    assert (profile["id"], profile["firstName"], profile["segments"]) == (profile_id, "Ana", [buyers])

    history = (await gql(HISTORY, {"id": profile_id}))["data"]["segmentHistory"]
    (entered,) = [e for e in history if e["change"] == "ENTERED"]
    assert entered["segmentId"] == buyers
    assert profile["segmentMemberships"] == [{"segment": {"id": buyers, "name": "Buyers"}, "since": entered["at"]}]

    items = profile["recommendations"]
    assert items == (await gql(ROOT_RECOMMENDATIONS, {"id": profile_id}))["data"]["recommendations"]
    assert len(items) == 3 and "shoe-1" not in [i["product"]["id"] for i in items]  # bought five days ago
    assert items[0]["product"]["category"] == "bags"
    assert any("preferred category bags" in r for r in items[0]["reasons"])
    assert not any(NOT_PERSONALISED in i["reasons"] for i in items)

    nodes = [e["node"] for e in profile["interactions"]["edges"]]
    assert [n["type"] for n in nodes] == ["page_view"] * 10  # the 10 newest of 17, newest first
    stamps = [datetime.fromisoformat(n["timestamp"]) for n in nodes]
    assert stamps == sorted(stamps, reverse=True)


async def test_profile_recommendations_without_the_personalisation_consent_are_best_sellers_saying_so(
    gql: GraphQL,
) -> None:
    profile_id, _ = await _shop(gql)
    query = "query($id: ID!) { profile(id: $id) { recommendations(first: 4) { product { id } reasons } } }"

    async def reasons() -> list[list[str]]:
        body = await gql(query, {"id": profile_id})
        assert "errors" not in body, body["errors"]
        return [i["reasons"] for i in body["data"]["profile"]["recommendations"]]

    never_asked = await reasons()
    assert never_asked and all(NOT_PERSONALISED in r for r in never_asked)
    await _grant_personalisation(gql, True, 1)
    assert not any(NOT_PERSONALISED in r for r in await reasons())
    await _grant_personalisation(gql, False, 2)  # withdrawn
    withdrawn = await reasons()
    assert withdrawn and all(NOT_PERSONALISED in r for r in withdrawn)


async def test_profile_recommendations_first_is_bounded_like_the_root_field(gql: GraphQL) -> None:
    profile_id, _ = await _shop(gql)
    query = "query($id: ID!, $first: Int!) { profile(id: $id) { recommendations(first: $first) { score } } }"
    for first in (0, 51):
        body = await gql(query, {"id": profile_id, "first": first})
        assert body["errors"][0]["extensions"] == {"code": "BAD_USER_INPUT", "field": "first"}
    literal = await gql(
        '{ profileByIdentifier(type: "email", value: "ana@example.com") { recommendations(first: 51) { score } } }'
    )
    assert literal["errors"][0]["extensions"] == {"code": "BAD_USER_INPUT", "field": "first"}


async def test_a_key_without_read_profiles_gets_neither_memberships_nor_recommendations(
    gql: GraphQL, client: httpx.AsyncClient, store: ProfileStore
) -> None:
    await _shop(gql)
    _, writer = await create_key(store, "writer", [Scope.WRITE_PROFILES])
    _, reader = await create_key(store, "reader", [Scope.READ_PROFILES])
    upsert = 'mutation { upsertProfile(input: {identifiers: [{type: "email", value: "new@example.com"}]}) { id %s } }'

    async def call(key: str, query: str, variables: dict[str, Any] | None = None) -> dict[str, Any]:
        headers = {"authorization": f"Bearer {key}"}
        response = await client.post("/graphql", json={"query": query, "variables": variables}, headers=headers)
        body: dict[str, Any] = response.json()
        return body

    refused = await call(writer, PERSONALISATION, {"email": EMAIL})
    assert refused["data"] is None and refused["errors"][0]["extensions"]["code"] == "FORBIDDEN"
    assert "needs the scope read:profiles" in refused["errors"][0]["message"]
    profiles_before = await store.count_profiles()
    for field in ("segmentMemberships { since }", "recommendations { score }"):  # a write's answer too
        refused = await call(writer, upsert % field)
        assert refused["data"] is None and refused["errors"][0]["extensions"]["code"] == "FORBIDDEN"
        assert f"Profile.{field.split()[0]} needs the scope read:profiles" in refused["errors"][0]["message"]
    assert await store.count_profiles() == profiles_before  # refused before anything was written

    allowed = await call(reader, PERSONALISATION, {"email": EMAIL})
    assert "errors" not in allowed and allowed["data"]["profileByIdentifier"]["segmentMemberships"]
