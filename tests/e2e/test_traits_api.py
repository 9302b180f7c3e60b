"""Computed traits, products and recommendations over GraphQL, on every storage backend."""

from __future__ import annotations

from datetime import timedelta

from app.domain import clock
from tests.e2e.conftest import GraphQL

PRODUCTS = """mutation($products: [ProductInput!]!) {
  upsertProducts(products: $products) { id name category price stock newItem priceHistory { price from } }
}"""
INGEST = (
    """mutation($events: [EventInput!]!) { ingestEvents(events: $events) { accepted results { profileId reason } } }"""
)
RECOMPUTE = """mutation { recomputeTraits { jobId processed resumed durationSeconds
  boundaries { customers recencyDays frequency monetary } } }"""
PROFILE = """query($id: ID!) { profile(id: $id) {
  rfm { recencyScore frequencyScore monetaryScore segment computedAt }
  computed { nextOrderAt preferredCategories { category score }
             engagement { visitsPerWeek emailOpensPerMonth emailClickToOpenRate channels { channel eventsPerWeek } } }
} }"""
RECOMMEND = """query($id: ID!) { recommendations(profileId: $id, first: 5) {
  product { id name category price stock newItem } score reasons } }"""


def _event(message_id: str, type_: str, days_ago: float, properties: dict[str, object]) -> dict[str, object]:
    return {
        "messageId": message_id,
        "type": type_,
        "channel": "web",
        "timestamp": (clock.now() - timedelta(days=days_ago)).isoformat(),
        "identifiers": [{"type": "email", "value": "ana@example.com"}],
        "properties": properties,
    }


async def test_traits_and_recommendations_through_the_api(gql: GraphQL) -> None:
    catalogue = [
        {"id": "shoe-1", "name": "Runner", "category": "shoes", "price": 80, "stock": 4},
        {"id": "shoe-2", "name": "Boot", "category": "shoes", "price": 120, "stock": 4, "newItem": True},
    ]
    written = await gql(PRODUCTS, {"products": catalogue})
    assert [p["priceHistory"][0]["price"] for p in written["data"]["upsertProducts"]] == [80, 120]
    events = [
        _event(
            "e1", "order_completed", 20, {"orderId": "o1", "total": 80, "lines": [{"productId": "shoe-1", "price": 80}]}
        ),
        _event(
            "e2", "order_completed", 10, {"orderId": "o2", "total": 80, "lines": [{"productId": "shoe-1", "price": 80}]}
        ),
        _event("e3", "consent_update", 1, {"purpose": "personalisation", "granted": True}),
    ]
    ingested = (await gql(INGEST, {"events": events}))["data"]["ingestEvents"]
    assert ingested["accepted"] == 3, ingested
    profile_id = ingested["results"][0]["profileId"]

    job = (await gql(RECOMPUTE))["data"]["recomputeTraits"]
    assert (job["processed"], job["resumed"], job["boundaries"]["customers"]) == (1, False, 1)
    assert job["boundaries"]["frequency"] == [2, 2, None, None]  # a lone customer scores 3

    profile = (await gql(PROFILE, {"id": profile_id}))["data"]["profile"]
    assert profile["rfm"]["segment"] == "Needs attention"
    assert (profile["rfm"]["recencyScore"], profile["rfm"]["frequencyScore"]) == (3, 3)
    assert profile["computed"]["preferredCategories"] == [{"category": "shoes", "score": 1.0}]
    assert profile["computed"]["nextOrderAt"] is not None

    items = (await gql(RECOMMEND, {"id": profile_id}))["data"]["recommendations"]
    assert [i["product"]["id"] for i in items] == ["shoe-2"]  # shoe-1 was bought ten days ago
    assert "new item" in items[0]["reasons"] and any("preferred category shoes" in r for r in items[0]["reasons"])


async def test_bad_product_input_is_a_user_error_naming_the_field(gql: GraphQL) -> None:
    body = await gql(PRODUCTS, {"products": [{"id": "p1", "name": "A", "category": "x", "price": -3, "stock": 1}]})
    (error,) = body["errors"]
    assert error["extensions"] == {"code": "BAD_USER_INPUT", "field": "products[0].price"}
    assert (await gql('{ recommendations(profileId: "nobody") { score } }'))["errors"][0]["extensions"]["code"] == (
        "NOT_FOUND"
    )


async def test_an_unknown_profile_nulls_its_recommendations_and_export_not_the_fields_beside_them(gql: GraphQL) -> None:
    """A page asking a visitor's profile, their recommendations and the segments in one query: an id
    the store does not know (erased, another environment's) was NOT_FOUND on a field that could not be
    null, so `data` was null whole and the segments were lost too."""
    await gql('mutation { createSegment(input: {name: "Buyers", condition: {compare: '
              '{path: "stats.orders", op: "gte", value: 1}}}) { segment { id } } }')  # fmt: skip
    for field in ('recommendations(profileId: "nobody") { score }', 'exportProfile(id: "nobody")'):
        body = await gql(f'{{ profile(id: "nobody") {{ id }} {field} segments {{ name }} }}')
        name = field.split("(")[0]
        assert body["data"] == {"profile": None, name: None, "segments": [{"name": "Buyers"}]}, body
        [error] = body["errors"]
        assert (error["path"], error["extensions"]["code"]) == ([name], "NOT_FOUND"), error


async def test_a_best_seller_sold_past_graphqls_int_still_reads(gql: GraphQL) -> None:
    """Found by an audit of numbers: an order line may hold up to the largest Int, so a product's sales
    over the window may pass it, and every read selecting `sales` failed for the 90 days it lasted
    (upsertProducts too, after committing). It reads as the largest Int, as a profile's counters do."""
    await gql(PRODUCTS, {"products": [{"id": "sku-1", "name": "Pin", "category": "misc", "price": 1, "stock": 9}]})
    line = {"productId": "sku-1", "quantity": 2**31 - 1, "price": 0}
    orders = [
        _event(f"o{n}", "order_completed", 1 + n, {"orderId": f"o{n}", "total": 0, "lines": [line]}) for n in range(2)
    ]
    assert (await gql(INGEST, {"events": orders}))["data"]["ingestEvents"]["accepted"] == 2
    assert "errors" not in await gql(RECOMPUTE)
    written = await gql('mutation { upsertProducts(products: [{id: "sku-1", stock: 8}]) { id sales } }')
    assert written == {"data": {"upsertProducts": [{"id": "sku-1", "sales": 2**31 - 1}]}}
