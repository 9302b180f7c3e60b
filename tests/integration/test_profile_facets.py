"""A store made before profile lists had their own filter rows gets them when it is opened."""

from __future__ import annotations

import sqlite3
from pathlib import Path

from app.domain.profile import Address, new_profile
from app.domain.profile_change import ProfileChange
from app.domain.profile_query import ProfileFilter, StatsField, StatsRange
from app.services.ports import StoreTransaction
from app.store.sqlite.store import SQLiteStore
from tests.builders import BASE_TIME

QUERIES = [
    ProfileFilter(),
    ProfileFilter(city="lyon"),
    ProfileFilter(name_prefix="ma"),
    ProfileFilter(stats=(StatsRange(StatsField.ORDERS, min=1),)),
]


async def _listed(store: SQLiteStore) -> list[list[str]]:
    return [[p.id for p in await store.list_profiles(q, after=None, limit=50)] for q in QUERIES]


async def test_an_older_store_gets_its_filter_rows_when_opened(tmp_path: Path) -> None:
    path = tmp_path / "cdp.sqlite3"
    store = SQLiteStore(path)

    async def fill(tx: StoreTransaction) -> None:
        for n in range(12):
            city = ["Lyon", "Paris", "Lille"][n % 3]
            profile = new_profile(f"p{n:02}", BASE_TIME).model_copy(
                update={"first_name": ["Marc", "Léa"][n % 2], "addresses": [Address(city=city)]}
            )
            await tx.insert_profile(profile)
        await tx.update_profile("p04", ProfileChange(inc={"stats.orders": 1}))
        await tx.update_profile("p05", ProfileChange(set={"mergedInto": "p04"}))

    await store.run_in_transaction(fill)
    expected = await _listed(store)
    assert expected[1] == ["p00", "p03", "p06", "p09"] and expected[3] == ["p04"] and "p05" not in expected[0]
    await store.close()

    with sqlite3.connect(path) as db:  # as a store from before the rows: no tables, no mark
        db.executescript(
            "DROP TABLE profile_facets; DROP TABLE profile_cities; DELETE FROM meta WHERE key = 'profileFacets';"
        )
    reopened = SQLiteStore(path)
    try:
        assert await _listed(reopened) == expected
    finally:
        await reopened.close()
