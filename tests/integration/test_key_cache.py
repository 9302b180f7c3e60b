"""Verified API keys remembered per process (app/services/key_cache.py): a remembered key costs no
key read, the cache is bounded and holds only keys that passed the check, and a key revoked anywhere,
by any process, is refused on its very next request."""

from __future__ import annotations

import asyncio
import subprocess
import sys
from pathlib import Path

import httpx
import pytest

from app.bootstrap import Services
from app.domain.access import ApiKey, Principal, Scope
from app.domain.errors import Unauthenticated
from app.main import create_app
from app.services import api_keys
from app.services.api_keys import authenticate
from app.services.ingestion import IngestionPolicy
from app.services.key_cache import KeyCache
from app.services.key_revocations import watch_revocations
from app.services.ports import ProfileStore
from app.settings import Settings
from app.store.sqlite.store import SQLiteStore
from tests.interleaving import StandIn
from tests.server_process import ROOT

VERSION_READ = "SELECT n FROM api_keys_version"
KEY_READ = "SELECT doc FROM api_keys WHERE id = 'KEY'"


async def _new_key(store: ProfileStore, name: str) -> tuple[str, str]:
    key, token = await api_keys.create_key(store, name, [Scope.READ_PROFILES])
    return key.id, token


def _reads(store: SQLiteStore) -> list[str]:
    """The statements the store's read connections run from now on, each key id written as KEY."""
    statements: list[str] = []
    store.trace(statements.append)
    return statements


async def test_a_remembered_key_is_answered_from_memory_after_one_check(sqlite_store: SQLiteStore) -> None:
    key_id, token = await _new_key(sqlite_store, "crm")
    cache = KeyCache(size=10, seconds=60)
    reads = _reads(sqlite_store)
    first = await authenticate(sqlite_store, token, cache)
    # The version is read before the key: a revocation committed in between moves it, so what is
    # remembered at that version cannot be a key revoked before its check.
    assert [r.replace(key_id, "KEY") for r in reads] == [VERSION_READ, KEY_READ]
    reads.clear()
    again = await authenticate(sqlite_store, f" {token} ", cache)
    assert reads == [VERSION_READ]
    assert again == first == Principal(name="key:crm", scopes=frozenset({Scope.READ_PROFILES}), key_id=key_id)


async def test_a_key_revoked_after_it_was_remembered_is_refused_on_its_next_check(store: ProfileStore) -> None:
    key_id, token = await _new_key(store, "crm")
    cache = KeyCache(size=10, seconds=60)
    await authenticate(store, token, cache)
    await authenticate(store, token, cache)
    await api_keys.revoke_key(store, key_id)  # the cache is not told: the keys version says it
    with pytest.raises(Unauthenticated, match=f"API key {key_id} was revoked at"):
        await authenticate(store, token, cache)
    assert len(cache) == 0


async def test_the_cache_keeps_the_most_recently_used_keys_up_to_its_size(sqlite_store: SQLiteStore) -> None:
    (_, a), (b_id, b), (_, c) = [await _new_key(sqlite_store, name) for name in "abc"]
    cache = KeyCache(size=2, seconds=60)
    for token in (a, b, a, c):  # b is the least recently used when c comes in
        await authenticate(sqlite_store, token, cache)
    assert len(cache) == 2
    reads = _reads(sqlite_store)
    await authenticate(sqlite_store, a, cache)
    await authenticate(sqlite_store, c, cache)
    assert reads == [VERSION_READ, VERSION_READ]
    await authenticate(sqlite_store, b, cache)
    assert KEY_READ.replace("KEY", b_id) in reads and len(cache) == 2


async def test_refused_tokens_are_not_remembered_and_push_out_no_good_key(sqlite_store: SQLiteStore) -> None:
    key_id, token = await _new_key(sqlite_store, "crm")
    cache = KeyCache(size=2, seconds=60)
    await authenticate(sqlite_store, token, cache)
    garbage = [f"cdp_{n:012x}_{'x' * 43}" for n in range(50)]  # unknown keys
    garbage += [f"{token[:-6]}{n:06d}" for n in range(50)]  # the good key's id with wrong secrets
    garbage += ["hunter2", "cdp__", f"cdp_{key_id}_"]  # not keys of this server at all
    for bad in garbage:
        with pytest.raises(Unauthenticated):
            await authenticate(sqlite_store, bad, cache)
    assert len(cache) == 1
    reads = _reads(sqlite_store)
    await authenticate(sqlite_store, token, cache)
    assert reads == [VERSION_READ]


async def test_a_remembered_key_is_checked_again_once_its_time_is_up(sqlite_store: SQLiteStore) -> None:
    key_id, token = await _new_key(sqlite_store, "crm")
    now = [1000.0]
    cache = KeyCache(size=10, seconds=60, clock=lambda: now[0])
    await authenticate(sqlite_store, token, cache)
    reads = _reads(sqlite_store)
    now[0] += 59.9
    await authenticate(sqlite_store, token, cache)
    assert reads == [VERSION_READ]
    now[0] += 0.2
    await authenticate(sqlite_store, token, cache)
    assert reads[1:] == [VERSION_READ, KEY_READ.replace("KEY", key_id)]


async def test_a_cache_of_no_size_or_no_time_checks_every_request(sqlite_store: SQLiteStore) -> None:
    key_id, token = await _new_key(sqlite_store, "crm")
    for cache in (KeyCache(size=0, seconds=60), KeyCache(size=10, seconds=0)):
        await authenticate(sqlite_store, token, cache)
        reads = _reads(sqlite_store)
        await authenticate(sqlite_store, token, cache)
        assert KEY_READ.replace("KEY", key_id) in reads and len(cache) == 0


async def test_a_key_revoked_by_another_process_is_refused_on_the_next_request_here(tmp_path: Path) -> None:
    """This process serves the application and remembers the key; another process (the CLI, as an
    operator would) revokes it in the same SQLite file; the very next request here is refused."""
    database = tmp_path / "cdp.sqlite3"
    store = SQLiteStore(database)
    services = Services(settings=Settings(seed_fixtures=False), store=store, ingestion=IngestionPolicy())
    key_id, token = await _new_key(store, "dashboard")
    transport = httpx.ASGITransport(app=create_app(services=services))
    headers = {"authorization": f"Bearer {token}"}
    query = {"query": "{ profiles(first: 1) { edges { cursor } } }"}
    async with httpx.AsyncClient(transport=transport, base_url="http://t", headers=headers) as client:
        for _ in range(2):
            served = await client.post("/graphql", json=query)
            assert served.status_code == 200 and "errors" not in served.json(), served.text
        assert len(services.key_cache) == 1  # remembered: the second request did not check it again

        subprocess.run(
            [sys.executable, "-m", "app", "keys", "revoke", key_id],
            cwd=ROOT,
            env={"PATH": "/usr/bin:/bin", "CDP_DATABASE_URL": f"sqlite:///{database}", "PYTHONPATH": str(ROOT)},
            capture_output=True,
            check=True,
        )
        refused = await client.post("/graphql", json=query)
    assert refused.status_code == 401
    error = refused.json()["errors"][0]
    assert error["extensions"]["code"] == "UNAUTHENTICATED"
    assert error["message"].startswith(f"API key {key_id} was revoked at ")
    await store.close()


class _CountingKeyLists(StandIn):
    def __init__(self, inner: ProfileStore) -> None:
        super().__init__(inner)
        self.lists = 0

    async def list_api_keys(self) -> list[ApiKey]:
        self.lists += 1
        return list(await self._inner.list_api_keys())


async def test_revocations_are_watched_by_reading_the_keys_only_when_they_changed(store: ProfileStore) -> None:
    """Found by an audit: every worker read every key (revoked ones are kept) each 2 s on its loop,
    1.2 s at 100,000 keys. The list is read when the keys' version moves; the revoked ones are told
    at every turn (a socket its key let in just before the revocation is closed at the next)."""
    leaked, _ = await api_keys.create_key(store, "leaked", ["read:profiles"])
    counting, told = _CountingKeyLists(store), asyncio.Queue[set[str]]()

    async def on_revoked(ids: set[str]) -> None:
        told.put_nowait(ids)

    watching = asyncio.create_task(watch_revocations(counting, on_revoked, every_seconds=0.001))  # type: ignore[arg-type]
    try:
        for _ in range(20):
            await asyncio.sleep(0.002)
        assert counting.lists == 1 and told.empty()  # read once, nothing revoked
        await api_keys.revoke_key(store, leaked.id)
        assert await asyncio.wait_for(told.get(), 10) == {leaked.id}
        assert await asyncio.wait_for(told.get(), 10) == {leaked.id}  # again at the next turn, unread
        assert counting.lists == 2
    finally:
        watching.cancel()
