"""Storage: the only package that talks to a database. `open_store` picks the backend from a URL."""

from __future__ import annotations

from app.services.ports import ProfileStore


async def open_store(url: str, *, mongodb_database: str = "cdp") -> ProfileStore:
    """`sqlite:///path/to/file.sqlite3` (embedded) or `mongodb://…` / `mongodb+srv://…`."""
    if url.startswith(("mongodb://", "mongodb+srv://")):
        from app.store.mongo.store import MongoStore

        store = MongoStore.connect(url, mongodb_database)
        await store.ping()
        await store.ensure_indexes()
        return store
    if url.startswith("sqlite:///"):
        from app.store.sqlite.store import SQLiteStore

        return SQLiteStore(url.removeprefix("sqlite:///"))
    raise ValueError(f"unsupported database URL {url!r}: use sqlite:///<file> or mongodb://<host>/…")
