"""Shared fixtures. `store` runs a test on every backend: the embedded SQLite store, the MongoDB
store on an in-memory fake, and on a real MongoDB when CDP_TEST_MONGODB_URI is set."""

from __future__ import annotations

import os
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import pytest

# anyio imports each of its parts when first used, and under pytest that import is rewritten (an
# ast.parse, anyio being a plugin's package): its file streaming, first used by a test server's
# response deep in a test, once raised CPython's "AST constructor recursion depth mismatch" (a count
# the interpreter's threads share: gh-106905). Imported here, at collection, before any thread runs.
from anyio import open_file  # noqa: F401

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


@asynccontextmanager
async def _store_of(backend: str, tmp_path: Path) -> AsyncIterator[ProfileStore]:
    store = await make_store(backend, tmp_path)
    try:
        yield store
    finally:
        if backend == "mongo-real":
            await store._client.drop_database(store._db.name)  # type: ignore[attr-defined]
        await store.close()


@pytest.fixture(params=BACKENDS)
async def store(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[ProfileStore]:
    async with _store_of(request.param, tmp_path) as backend:
        yield backend


@pytest.fixture(params=["sqlite", *(["mongo-real"] if REAL_MONGODB else [])])
async def store_at_scale(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[ProfileStore]:
    """`store` for a test of thousands of documents: not on the in-memory MongoDB fake, which reads
    every document for each query (a test of 1,112 profiles took 105 s there, 3 s on SQLite)."""
    async with _store_of(request.param, tmp_path) as backend:
        yield backend


@pytest.fixture
async def sqlite_store(tmp_path: Path) -> AsyncIterator[SQLiteStore]:
    backend = SQLiteStore(tmp_path / "cdp.sqlite3")
    yield backend
    await backend.close()
