"""Storage: the only package that talks to a database. `open_store` picks the backend from a URL."""

from __future__ import annotations

from app.services.ports import ProfileStore
from app.store.retrying import RetryingStore, mongo_unreachable, sqlite_unreachable


async def open_store(url: str, *, mongodb_database: str = "cdp") -> ProfileStore:
    """`sqlite:///path/to/file.sqlite3` (embedded) or `mongodb://…` / `mongodb+srv://…`, with reads
    retried and driver failures reported as StoreUnavailable (app/store/retrying.py)."""
    if url.startswith(("mongodb://", "mongodb+srv://")):
        from app.store.mongo.store import MongoStore

        store = MongoStore.connect(url, mongodb_database)
        try:
            await store.ping()
            await store.ensure_indexes()
        except BaseException:
            await store.close()  # its connection pool and monitor threads, left running
            raise
        return RetryingStore(store, unreachable=mongo_unreachable)
    if url.startswith("sqlite:///"):
        from app.store.sqlite.store import SQLiteStore

        return RetryingStore(SQLiteStore(url.removeprefix("sqlite:///")), unreachable=sqlite_unreachable)
    raise ValueError(f"unsupported database URL {url!r}: use sqlite:///<file> or mongodb://<host>/…")


def database_url_problem(url: str) -> str | None:
    """Why the driver cannot read `url`, found without connecting; None when it can, or when only
    connecting can tell (a mongodb+srv:// URL's hosts come from DNS)."""
    if url.startswith("mongodb://"):
        from pymongo.errors import ConfigurationError
        from pymongo.uri_parser import parse_uri

        try:
            parse_uri(url)
        except (ValueError, ConfigurationError) as exc:
            return str(exc)
    return None
