"""Shared fixtures. `store` runs a test on every backend: the embedded SQLite store, the MongoDB
store on an in-memory fake, and on a real MongoDB when CDP_TEST_MONGODB_URI is set."""

from __future__ import annotations

import os
import uuid
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from app.services.ports import ProfileStore
from app.store.mongo.store import MongoStore
from app.store.sqlite.store import SQLiteStore
from tests.fakes.async_mongo import FakeClient

REAL_MONGODB = os.environ.get("CDP_TEST_MONGODB_URI")
BACKENDS = ["sqlite", "mongo-fake", *(["mongo-real"] if REAL_MONGODB else [])]


async def make_store(backend: str, tmp_path: Path) -> ProfileStore:
    if backend == "sqlite":
        return SQLiteStore(tmp_path / "cdp.sqlite3")
    if backend == "mongo-fake":
        store = MongoStore(FakeClient(), "cdp_test")
    else:
        assert REAL_MONGODB
        store = MongoStore.connect(REAL_MONGODB, f"cdp_test_{uuid.uuid4().hex[:8]}")
    await store.ping()
    await store.ensure_indexes()
    return store


@pytest.fixture(params=BACKENDS)
async def store(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[ProfileStore]:
    backend = await make_store(request.param, tmp_path)
    yield backend
    if request.param == "mongo-real":
        await backend._client.drop_database(backend._db.name)  # type: ignore[attr-defined]
    await backend.close()


@pytest.fixture
async def sqlite_store(tmp_path: Path) -> AsyncIterator[SQLiteStore]:
    backend = SQLiteStore(tmp_path / "cdp.sqlite3")
    yield backend
    await backend.close()
