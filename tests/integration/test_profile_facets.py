"""The rows profile lists filter on: a store made before them gets them when it is opened, and a
write rewrites a profile's city rows when its addresses moved and leaves them otherwise."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest

from app.domain.identifiers import Identifier
from app.domain.profile import Address, new_profile
from app.domain.profile_change import ProfileChange
from app.domain.profile_query import ProfileFilter, StatsField, StatsRange
from app.services.ingestion import EventStatus, ingest_events
from app.services.ports import StoreTransaction
from app.store.sqlite import profile_filter
from app.store.sqlite.store import SQLiteStore
from tests.builders import BASE_TIME, event

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


async def test_city_rows_follow_the_addresses_and_stay_when_a_write_leaves_them(sqlite_store: SQLiteStore) -> None:
    async def ingest(type_: str, properties: dict[str, object] | None = None) -> None:
        outcomes = await ingest_events(sqlite_store, [event(type_, email="emma@example.com", properties=properties)])
        assert outcomes[0].status is EventStatus.ACCEPTED

    async def listed(city: str) -> int:
        return len(await sqlite_store.list_profiles(ProfileFilter(city=city), after=None, limit=10))

    await ingest("identify", {"firstName": "Emma", "address": {"city": "Lyon"}})
    assert await listed("lyon") == 1
    await ingest("page_view")  # counters only: the city rows stay as they are
    await ingest("order_completed")
    assert await listed("lyon") == 1
    await ingest("identify", {"address": {"city": "Paris"}})
    assert await listed("paris") == 1
    stored = await sqlite_store.list_profiles(ProfileFilter(city="paris"), after=None, limit=10)
    assert {a.city for a in stored[0].addresses} == {"Lyon", "Paris"}  # an identify adds an address
    assert await listed("lyon") == 1


async def test_a_list_started_from_its_rarest_filter_pages_and_counts_as_a_walk_over_every_profile(
    sqlite_store: SQLiteStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A list filtered on a segment, an identifier type or a city with few profiles starts from those
    profiles (profile_filter.Driver); its pages, from either end, and its count are those of the walk
    over every profile's row. Profiles with two anonymous ids are listed once; a merged-away one never."""
    total = 40

    def traits(n: int) -> dict[str, bool]:
        return {"lyon": n % 3 == 0, "anonymous": n % 5 == 0, "member": n % 4 == 0, "orders": n % 2 == 0}

    async def fill(tx: StoreTransaction) -> None:
        for n in range(total):
            has = traits(n)
            identifiers = [Identifier("email", f"c{n}@example.com")]
            if has["anonymous"]:
                identifiers += [Identifier("anonymousId", f"a{n}"), Identifier("anonymousId", f"b{n}")]
            profile = new_profile(f"p{n:02}", BASE_TIME).model_copy(
                update={
                    "first_name": ["Marc", "Léa"][n % 2],
                    "addresses": [Address(city="Lyon" if has["lyon"] else "Paris")],
                    "segments": ["s1"] if has["member"] else [],
                }
            )
            await tx.claim_identities(profile.id, identifiers, BASE_TIME)
            await tx.insert_profile(profile)
            if has["orders"]:
                await tx.update_profile(profile.id, ProfileChange(inc={"stats.orders": 1}))
        await tx.update_profile("p20", ProfileChange(set={"mergedInto": "p00"}))  # in every list below but merged

    await sqlite_store.run_in_transaction(fill)
    orders = (StatsRange(StatsField.ORDERS, min=1),)
    queries = [
        ProfileFilter(segment="s1"),
        ProfileFilter(identifier_type="anonymousId"),
        ProfileFilter(city="LYON"),
        ProfileFilter(segment="s1", identifier_type="anonymousId", stats=orders),
        ProfileFilter(identifier_type="anonymousId", city="lyon", name_prefix="ma"),
        ProfileFilter(segment="s1", city="lyon"),
        ProfileFilter(segment="none"),
        ProfileFilter(identifier_type="email", stats=orders),
    ]

    async def pages(query: ProfileFilter) -> tuple[list[list[str]], list[list[str]], int]:
        forward, backward, after, before = [], [], None, None
        while page := [p.id for p in await sqlite_store.list_profiles(query, after=after, limit=3)]:
            forward.append(page)
            after = page[-1]
        while page := [
            p.id for p in await sqlite_store.list_profiles(query, after=None, before=before, limit=3, from_end=True)
        ]:
            backward.append(page)
            before = page[0]
        return forward, backward, await sqlite_store.count_profiles(query)

    started = [await pages(q) for q in queries]
    monkeypatch.setattr(profile_filter, "DRIVE_LIMIT", 0)  # no driver: every list walks every profile's row
    walked = [await pages(q) for q in queries]
    assert started == walked
    anonymous = [f"p{n:02}" for n in range(total) if traits(n)["anonymous"] and n != 20]
    forward, backward, count = started[1]
    assert [i for page in forward for i in page] == anonymous and count == len(anonymous)
    assert [i for page in reversed(backward) for i in page] == anonymous


async def test_rows_written_with_a_final_sigma_are_folded_once_when_the_store_is_opened(tmp_path: Path) -> None:
    """Rows written before names were folded hold the final sigma lower() gives a capital one ending a
    word: opening the store folds them once, and a prefix typed in capitals finds the name again."""
    path = tmp_path / "cdp.sqlite3"
    store = SQLiteStore(path)
    odysseas = "\u039f\u0394\u03a5\u03a3\u03a3\u0395\u0391\u03a3"  # ΟΔΥΣΣΕΑΣ, written in capitals

    async def fill(tx: StoreTransaction) -> None:
        await tx.insert_profile(new_profile("p1", BASE_TIME).model_copy(update={"first_name": odysseas}))

    await store.run_in_transaction(fill)
    prefix = ProfileFilter(name_prefix="\u03bf\u03b4\u03c5\u03c3")  # "odys", lower case
    assert [p.id for p in await store.list_profiles(prefix, after=None, limit=5)] == ["p1"]
    await store.close()

    with sqlite3.connect(path) as db:  # as an older version wrote the row: lower(), and no mark
        db.execute("UPDATE profile_facets SET first_name = ?", (odysseas.lower(),))
        db.execute("DELETE FROM meta WHERE key = 'profileFacetsFinalSigma'")
    assert odysseas.lower().endswith("\u03c2")
    reopened = SQLiteStore(path)
    try:
        assert [p.id for p in await reopened.list_profiles(prefix, after=None, limit=5)] == ["p1"]
        upper = ProfileFilter(name_prefix="\u039f\u0394\u03a5\u03a3\u03a3\u0395\u0391\u03a3")
        assert [p.id for p in await reopened.list_profiles(upper, after=None, limit=5)] == ["p1"]
    finally:
        await reopened.close()
