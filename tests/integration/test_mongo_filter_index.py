"""On a real MongoDB, a list filtered on a name or a city reads the profiles it finds, not every one.

Found by an audit of the MongoDB backend: the filters were case-insensitive regexes, which no index
serves, so a list of three answers read all 100,000 profiles. They now compare the folds each profile
document keeps (app/store/mongo/profile_folds.py). Only a real server plans queries: skipped unless
CDP_TEST_MONGODB_URI is set."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from app.domain.profile import Address, new_profile
from app.domain.profile_query import ProfileFilter
from app.services.ports import ProfileWrite, StoreTransaction
from app.store.mongo.store import MongoStore, profile_query
from tests.conftest import REAL_MONGODB, _store_of

pytestmark = pytest.mark.skipif(not REAL_MONGODB, reason="needs a real MongoDB (CDP_TEST_MONGODB_URI)")

PROFILES = 3_000


def _examined(plan: dict[str, Any]) -> int:
    return int(plan["executionStats"]["totalDocsExamined"])


async def test_a_rare_name_or_city_is_found_without_reading_every_profile(tmp_path: Path) -> None:
    async with _store_of("mongo-real", tmp_path) as store:
        assert isinstance(store, MongoStore)
        at = datetime(2026, 1, 1, tzinfo=UTC)
        profiles = [
            new_profile(f"p{n:05}", at).model_copy(
                update={"first_name": f"Name{n}", "last_name": "Common", "addresses": [Address(city=f"City{n % 50}")]}
            )
            for n in range(PROFILES)
        ]
        profiles[1234] = profiles[1234].model_copy(
            update={"first_name": "Émilie", "addresses": [Address(city="Médan")]}
        )

        async def write(tx: StoreTransaction) -> None:
            await tx.write_profiles([ProfileWrite(p.to_document(), expected_version=None) for p in profiles])

        await store.run_in_transaction(write)
        for query in (ProfileFilter(name_prefix="ÉMI"), ProfileFilter(city="médan")):
            listed = await store.list_profiles(query, after=None, limit=10)
            assert [p.id for p in listed] == ["p01234"], query
            cursor = store._db.profiles.find(profile_query(query)).sort("_id", 1).limit(10)
            assert _examined(await cursor.explain()) <= 2, query


def _stages(plan: Any) -> set[str]:
    if isinstance(plan, dict):
        return ({plan["stage"]} if isinstance(plan.get("stage"), str) else set()) | {
            stage for value in plan.values() for stage in _stages(value)
        }
    return {stage for value in plan for stage in _stages(value)} if isinstance(plan, list) else set()


async def test_best_sellers_are_read_in_an_index_s_order_not_sorted(tmp_path: Path) -> None:
    """Found by an audit of the MongoDB backend: best_sellers sorts by (sales, _id), and the indexes
    held only (sales) and (category, sales): every in-stock product was sorted on each request."""
    async with _store_of("mongo-real", tmp_path) as store:
        assert isinstance(store, MongoStore)
        products = [
            {"_id": f"sku-{n:04}", "name": f"P{n}", "category": f"c{n % 5}", "price": 10.0, "stock": 1, "sales": n % 40}
            for n in range(1_000)
        ]

        async def write(tx: StoreTransaction) -> None:
            await tx.put_products(products)

        await store.run_in_transaction(write)
        for selector in ({"stock": {"$gt": 0}}, {"stock": {"$gt": 0}, "category": "c3"}):
            cursor = store._db.products.find(selector).sort([("sales", -1), ("_id", 1)]).limit(12)
            assert "SORT" not in _stages((await cursor.explain())["queryPlanner"]["winningPlan"]), selector
        assert [p.id for p in await store.best_sellers("c3", limit=3)] == ["sku-0038", "sku-0078", "sku-0118"]
