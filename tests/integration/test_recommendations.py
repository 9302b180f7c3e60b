"""Products and recommendations on every storage backend: validated catalogue writes with price
history, and recommendations that respect the personalisation consent, leave out recent purchases,
prefer the customer's categories and co-purchases, and say why each item was picked."""

from __future__ import annotations

import asyncio
import sqlite3
from datetime import timedelta
from typing import Any

import pytest

from app.domain import clock
from app.domain.errors import InvalidInput, LimitExceeded, NotFound
from app.domain.recommendation import NOT_PERSONALISED
from app.services import traits
from app.services.ingestion import IngestionPolicy, ingest_events
from app.services.ports import ProfileStore
from app.services.recommendations import recommendations, upsert_products
from app.store.sqlite.store import SQLiteStore
from tests.builders import event

CATALOGUE: list[dict[str, Any]] = [
    {"id": "shoe-1", "name": "Runner", "category": "shoes", "price": 80, "stock": 5},
    {"id": "shoe-2", "name": "Boot", "category": "shoes", "price": 120, "stock": 5, "new_item": True},
    {"id": "shoe-3", "name": "Loafer", "category": "shoes", "price": 90, "stock": 0},  # out of stock
    {"id": "bag-1", "name": "Tote", "category": "bags", "price": 40, "stock": 5},
    {"id": "bag-2", "name": "Clutch", "category": "bags", "price": 60, "stock": 5},
    {"id": "home-1", "name": "Candle", "category": "home", "price": 15, "stock": 50},
]


async def _land(store: ProfileStore, *events: Any) -> str:
    outcomes = await ingest_events(store, list(events), IngestionPolicy())
    assert all(o.profile_id for o in outcomes), outcomes
    return outcomes[-1].profile_id or ""


def _order(email: str, days_ago: float, order_id: str, *products: str) -> Any:
    lines = [{"productId": p, "quantity": 1, "price": 10.0} for p in products]
    return event(
        "order_completed",
        email=email,
        at=clock.now() - timedelta(days=days_ago),
        properties={"orderId": order_id, "total": 10.0 * len(products), "lines": lines},
    )


def _consent(email: str, granted: bool) -> Any:
    return event("consent_update", email=email, properties={"purpose": "personalisation", "granted": granted})


def _view(email: str, product: str, category: str) -> Any:
    at = clock.now() - timedelta(hours=1)
    return event("product_view", email=email, at=at, properties={"productId": product, "category": category})


@pytest.fixture
async def shop(store: ProfileStore) -> ProfileStore:
    """Others bought the tote with the clutch (a co-purchase) and candles a lot (the best seller)."""
    await upsert_products(store, CATALOGUE)
    await _land(store, _order("x@example.com", 5, "x1", "bag-1", "bag-2"), _order("x@example.com", 4, "x2", "home-1"))
    await _land(store, _order("y@example.com", 6, "y1", "bag-1", "bag-2", "home-1"))
    await _land(store, _order("z@example.com", 7, "z1", "home-1"))
    return store


async def _customer(store: ProfileStore, *, consent: bool | None) -> str:
    """Looks at shoes, bought the tote two days ago."""
    events = [_view("c@example.com", "shoe-1", "shoes"), _order("c@example.com", 2, "c1", "bag-1")]
    if consent is not None:
        events.append(_consent("c@example.com", consent))
    customer = await _land(store, *events)
    await traits.recompute_traits(store)
    return customer


async def test_a_consenting_customer_gets_personal_picks_with_reasons(shop: ProfileStore) -> None:
    customer = await _customer(shop, consent=True)

    items = await recommendations(shop, customer, first=10)

    by_id = {i.product.id: i for i in items}
    assert "bag-1" not in by_id  # bought two days ago
    assert "shoe-3" not in by_id  # out of stock
    assert all(i.reasons for i in items)
    assert any("preferred category shoes" in r for r in by_id["shoe-1"].reasons)
    assert any("often bought with Tote" in r for r in by_id["bag-2"].reasons)
    assert "new item" in by_id["shoe-2"].reasons and by_id["shoe-2"].score > by_id["shoe-1"].score
    assert not any(NOT_PERSONALISED in r for i in items for r in i.reasons)
    assert [i.score for i in items] == sorted((i.score for i in items), reverse=True)


async def test_a_profiling_refusal_stops_preferred_categories_but_not_personalisation(shop: ProfileStore) -> None:
    """Preferred categories are inferred from the history: with personalisation granted and profiling
    refused, recommendations still said "in your preferred category shoes"."""
    profiling = event("consent_update", email="c@example.com", properties={"purpose": "profiling", "granted": False})
    customer = await _customer(shop, consent=True)
    await _land(shop, profiling)

    items = await recommendations(shop, customer, first=10)

    reasons = [r for i in items for r in i.reasons]
    assert not any("preferred category" in r for r in reasons), reasons
    assert any("often bought with Tote" in r for r in reasons)  # what others bought with theirs: personalisation
    assert not any(NOT_PERSONALISED in r for r in reasons)


@pytest.mark.parametrize("consent", [None, False], ids=["never-asked", "refused"])
async def test_without_consent_only_best_sellers_and_each_item_says_so(
    shop: ProfileStore, consent: bool | None
) -> None:
    customer = await _customer(shop, consent=consent)

    items = await recommendations(shop, customer, first=3)

    assert items[0].product.id == "home-1"  # sold three times: the best seller
    assert "bag-1" not in {i.product.id for i in items}  # still not what they just bought
    assert all(NOT_PERSONALISED in i.reasons for i in items)
    assert not any("preferred category" in r or "often bought" in r for i in items for r in i.reasons)


async def test_a_purchase_older_than_the_exclusion_window_may_come_back(shop: ProfileStore) -> None:
    customer = await _customer(shop, consent=True)
    assert "bag-1" not in {i.product.id for i in await recommendations(shop, customer, first=10)}
    assert "bag-1" in {i.product.id for i in await recommendations(shop, customer, first=10, exclude_days=1)}


async def test_unknown_profiles_and_bad_page_sizes_are_refused(shop: ProfileStore) -> None:
    with pytest.raises(NotFound) as missing:
        await recommendations(shop, "nobody")
    assert missing.value.field == "profileId"
    customer = await _customer(shop, consent=True)
    with pytest.raises(InvalidInput) as too_many:
        await recommendations(shop, customer, first=51)
    assert too_many.value.field == "first"


# -- the catalogue -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("products", "field"),
    [
        pytest.param([CATALOGUE[0], {**CATALOGUE[1], "price": -1}], "products[1].price", id="negative-price"),
        pytest.param([{**CATALOGUE[0], "stock": -2}], "products[0].stock", id="negative-stock"),
        pytest.param(
            [{k: v for k, v in CATALOGUE[0].items() if k != "category"}],
            "products[0].category",
            id="new-without-category",
        ),
        pytest.param([CATALOGUE[0], CATALOGUE[0]], "products[1].id", id="same-id-twice"),
        pytest.param([{**CATALOGUE[0], "currency": "euro"}], "products[0].currency", id="bad-currency"),
        pytest.param([{**CATALOGUE[0], "id": " "}], "products[0].id", id="blank-id"),
        pytest.param([{**CATALOGUE[0], "price": float("inf")}], "products[0].price", id="infinite-price"),
        pytest.param([{**CATALOGUE[0], "price": 0.004}], "products[0].price", id="a-price-rounded-to-nothing"),
    ],
)
async def test_bad_product_input_is_refused_naming_the_field_and_nothing_is_written(
    store: ProfileStore, products: list[dict[str, Any]], field: str
) -> None:
    with pytest.raises(InvalidInput) as refused:
        await upsert_products(store, products)
    assert refused.value.field == field
    assert await store.count_products() == 0


async def test_too_many_products_in_one_call_are_refused(store: ProfileStore) -> None:
    with pytest.raises(LimitExceeded):
        await upsert_products(store, [{**CATALOGUE[0], "id": f"p{i}"} for i in range(1001)])
    assert await store.count_products() == 0


async def test_a_price_change_is_appended_to_the_history_and_omitted_fields_stay(store: ProfileStore) -> None:
    await upsert_products(store, [CATALOGUE[0]])
    await upsert_products(store, [{"id": "shoe-1", "stock": 2}])  # same price: no new history entry
    await upsert_products(store, [{"id": "shoe-1", "price": 69.99}])

    (shoe,) = await store.get_products(["shoe-1"])
    assert (shoe.name, shoe.category, shoe.price, shoe.stock) == ("Runner", "shoes", 69.99, 2)
    assert [p.price for p in shoe.price_history] == [80, 69.99]
    assert shoe.price_history[0].from_ <= shoe.price_history[1].from_


async def test_derived_signals_survive_a_catalogue_update(shop: ProfileStore) -> None:
    await traits.recompute_traits(shop)
    await upsert_products(shop, [{"id": "bag-1", "stock": 9}])
    (bag,) = await shop.get_products(["bag-1"])
    assert bag.sales == 2 and [link.product_id for link in bag.also_bought] == ["bag-2", "home-1"]


async def test_price_changes_made_at_once_all_stay_in_the_history(store: ProfileStore) -> None:
    """Six calls changing one price at once: each read the product outside its write, appended its
    price to the history it read, and the last write dropped the others' entries (README: past
    prices are never lost)."""
    await upsert_products(store, [CATALOGUE[0]])
    prices = [70.0 + n for n in range(6)]
    await asyncio.gather(*(upsert_products(store, [{"id": "shoe-1", "price": price}]) for price in prices))
    (shoe,) = await store.get_products(["shoe-1"])
    assert sorted(p.price for p in shoe.price_history) == sorted([80, *prices])
    assert shoe.price == shoe.price_history[-1].price


async def test_a_price_is_kept_in_cents_rounded_as_order_amounts_are(store: ProfileStore) -> None:
    """2.675 was a price of 2.67 (float rounding) where an order of it counts 2.68 (half up, in cents)."""
    await upsert_products(store, [{**CATALOGUE[0], "price": 2.675}, {**CATALOGUE[1], "price": -0.0}])
    prices = {p.id: p.price for p in await store.get_products([CATALOGUE[0]["id"], CATALOGUE[1]["id"]])}
    assert prices == {CATALOGUE[0]["id"]: 2.68, CATALOGUE[1]["id"]: 0.0}
    assert str(prices[CATALOGUE[1]["id"]]) == "0.0"  # not -0.0


async def test_the_whole_catalogues_best_sellers_are_read_off_an_index(sqlite_store: SQLiteStore) -> None:
    """Found by an audit: a recommendation without the personalisation consent sorted every product
    (103-130 ms at 100,000); an index in their order reads only the first in stock."""
    await upsert_products(sqlite_store, CATALOGUE)
    await _land(
        sqlite_store, _order("z@example.com", 7, "z1", "home-1", "home-1"), _order("y@example.com", 6, "y1", "bag-2")
    )
    await traits.recompute_traits(sqlite_store)  # the sales counts
    statements: list[str] = []
    sqlite_store.trace(statements.append)
    try:
        found = await sqlite_store.best_sellers(None, limit=3)
    finally:
        sqlite_store.trace(None)
    assert [p.id for p in found] == ["home-1", "bag-2", "bag-1"]  # by sales, then id; in stock only
    (statement,) = [s for s in statements if "FROM products" in s]
    with sqlite3.connect(sqlite_store.path) as db:
        plan = " | ".join(row[3] for row in db.execute(f"EXPLAIN QUERY PLAN {statement}"))
    assert "USING INDEX products_by_sales" in plan and "TEMP B-TREE" not in plan, plan
