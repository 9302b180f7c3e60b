"""Crash safety of merges and unmerges: a failure injected before every single write step leaves
either the whole operation or none of it, and never an identifier pointing at a missing profile."""

from __future__ import annotations

import textwrap
from pathlib import Path
from typing import Any

import pytest

from app.services import merging
from app.services.identity_policy import IdentityPolicy
from app.services.ports import ProfileStore
from app.store.sqlite.store import SQLiteStore
from tests.builders import stored_state
from tests.faults import FaultyStore, InjectedFault, run_script
from tests.integration.test_merging import _two_duplicates

KEYS = ["email:emma@example.com", "phone:+33612345678", "loyaltyId:L1"]


async def _state(store: ProfileStore, ids: list[str]) -> dict[str, Any]:
    return await stored_state(store, ids, KEYS)


async def _no_identifier_points_nowhere(store: ProfileStore, state: dict[str, Any]) -> None:
    for owner in state["identities"].values():
        profile = await store.get_profile(owner)
        assert profile is not None, f"an identifier points at missing profile {owner}"


async def test_a_merge_failing_at_any_write_leaves_all_or_nothing(store: ProfileStore) -> None:
    web, shop = await _two_duplicates(store)
    ids = [web.id, shop.id]
    before = await _state(store, ids)
    for writes in range(100):
        faulty = FaultyStore(store, writes)
        try:
            await merging.merge_profiles(faulty, web.id, [shop.id], reason="r", actor="t", policy=IdentityPolicy())  # type: ignore[arg-type]
        except InjectedFault:
            assert await _state(store, ids) == before, f"partial merge after {faulty.budget.done}"
            await _no_identifier_points_nowhere(store, before)
            continue
        break
    assert writes == 5, f"a merge of two profiles takes 5 writes, saw {writes}: extend the kill test below"
    after = await _state(store, ids)
    assert after[shop.id]["mergedInto"] == web.id and set(after["identities"].values()) == {web.id}
    await _no_identifier_points_nowhere(store, after)


async def test_an_unmerge_failing_at_any_write_leaves_all_or_nothing(store: ProfileStore) -> None:
    web, shop = await _two_duplicates(store)
    record, _ = await merging.merge_profiles(store, web.id, [shop.id], reason="r", actor="t", policy=IdentityPolicy())
    ids = [web.id, shop.id]
    merged = await _state(store, ids)
    for writes in range(100):
        faulty = FaultyStore(store, writes)
        try:
            await merging.unmerge_profile(faulty, record.id, actor="t")  # type: ignore[arg-type]
        except InjectedFault:
            assert await _state(store, ids) == merged, f"partial unmerge after {faulty.budget.done}"
            continue
        break
    assert writes >= 5
    after = await _state(store, ids)
    assert "mergedInto" not in after[shop.id]
    assert after["identities"]["phone:+33612345678"] == shop.id
    await _no_identifier_points_nowhere(store, after)


KILLER = textwrap.dedent(
    """
    import asyncio, sys
    from app.services import merging
    from app.services.identity_policy import IdentityPolicy
    from app.store.sqlite.store import SQLiteStore
    from tests.faults import FaultyStore

    async def main():
        store = FaultyStore(SQLiteStore(sys.argv[1]), int(sys.argv[2]), kill=True)
        await merging.merge_profiles(store, sys.argv[3], [sys.argv[4]], reason="r", actor="t", policy=IdentityPolicy())
        print("completed")

    asyncio.run(main())
    """
)


@pytest.mark.parametrize("writes", range(6))
async def test_a_process_killed_mid_merge_leaves_the_embedded_store_whole(tmp_path: Path, writes: int) -> None:
    path = tmp_path / "cdp.sqlite3"
    store = SQLiteStore(path)
    web, shop = await _two_duplicates(store)
    before = await _state(store, [web.id, shop.id])
    await store.close()
    run = run_script(KILLER, str(path), str(writes), web.id, shop.id)
    reopened = SQLiteStore(path)
    after = await _state(reopened, [web.id, shop.id])
    if run.returncode == 9:
        assert after == before
    else:
        assert run.returncode == 0 and "completed" in run.stdout, run.stderr
        assert after[shop.id]["mergedInto"] == web.id
    await _no_identifier_points_nowhere(reopened, after)
    await reopened.close()
