"""An asyncio face on mongomock-ng, shaped like the part of PyMongo's `AsyncMongoClient` API that
the MongoDB store uses, so the store's real query code runs in tests without a server.

mongomock-ng implements a transaction by snapshotting the collections it touches; two interleaved
transactions would overwrite each other's snapshot, so transactions here run one at a time (a real
server would isolate them instead). `hello` answers as a replica-set member. mongomock-ng sorts a
`$push` by one key only; `update_one` here finishes a compound `$sort` as MongoDB does.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any

import mongomock_ng
from pymongo.errors import OperationFailure


class FakeCursor:
    def __init__(self, cursor: Any) -> None:
        self._cursor = cursor

    def sort(self, *args: Any, **kwargs: Any) -> FakeCursor:
        self._cursor = self._cursor.sort(*args, **kwargs)
        return self

    def limit(self, count: int) -> FakeCursor:
        self._cursor = self._cursor.limit(count)
        return self

    def skip(self, count: int) -> FakeCursor:
        self._cursor = self._cursor.skip(count)
        return self

    async def to_list(self, length: int | None = None) -> list[dict[str, Any]]:
        items = list(self._cursor)
        return items if length is None else items[:length]

    def __aiter__(self) -> Any:
        async def iterate() -> Any:
            for item in self._cursor:
                yield item

        return iterate()


class FakeSession:
    def __init__(self, client: FakeClient) -> None:
        self._client = client
        self.inner = client.sync.start_session()

    async def __aenter__(self) -> FakeSession:
        return self

    async def __aexit__(self, *exc: object) -> None:
        self.inner.end_session()

    async def with_transaction(self, callback: Callable[[FakeSession], Awaitable[Any]], **options: Any) -> Any:
        # `options` (read and write concerns): one process's transactions, one at a time, read and
        # write as committed whatever they ask.
        async with self._client.transaction_lock:
            self.inner.start_transaction()
            try:
                result = await callback(self)
            except BaseException:
                self.inner.abort_transaction()
                raise
            self.inner.commit_transaction()
            return result


def _unwrap(kwargs: dict[str, Any]) -> dict[str, Any]:
    session = kwargs.get("session")
    if isinstance(session, FakeSession):
        kwargs["session"] = session.inner
    return kwargs


class FakeCollection:
    def __init__(self, collection: Any) -> None:
        self._c = collection

    def find(self, *args: Any, **kwargs: Any) -> FakeCursor:
        return FakeCursor(self._c.find(*args, **_unwrap(kwargs)))

    async def aggregate(self, pipeline: list[dict[str, Any]], **kwargs: Any) -> FakeCursor:
        kwargs.pop("allowDiskUse", None)  # memory is the only place the fake has (it warns otherwise)
        return FakeCursor(self._c.aggregate(pipeline, **_unwrap(kwargs)))

    async def update_one(self, selector: dict[str, Any], update: dict[str, Any], **kwargs: Any) -> Any:
        kwargs = _unwrap(kwargs)
        compound = {
            path: spec
            for path, spec in update.get("$push", {}).items()
            if isinstance(spec, dict) and isinstance(spec.get("$sort"), dict) and len(spec["$sort"]) > 1
        }
        if not compound:
            return self._c.update_one(selector, update, **kwargs)
        plain = {**update, "$push": {**update["$push"], **{p: {"$each": s["$each"]} for p, s in compound.items()}}}
        result = self._c.update_one(selector, plain, **kwargs)
        if result.matched_count:
            session = kwargs.get("session")
            target = result.upserted_id or selector["_id"]  # the store sorts only profiles, by _id
            document = self._c.find_one({"_id": target}, session=session)
            fixed = {}
            for path, spec in compound.items():
                items = list(_get(document, path))
                for key, direction in reversed(list(spec["$sort"].items())):
                    items.sort(key=lambda item, k=key: item[k], reverse=direction < 0)
                fixed[path] = items[: spec["$slice"]] if "$slice" in spec else items
            self._c.update_one({"_id": document["_id"]}, {"$set": fixed}, session=session)
        return result

    async def create_indexes(self, indexes: list[Any], **kwargs: Any) -> Any:
        try:
            return self._c.create_indexes(indexes, **_unwrap(kwargs))
        except OperationFailure as exc:  # as a server says it: IndexOptionsConflict (mongomock gives no code)
            if exc.code is None and "already exists with different options" in str(exc):
                raise OperationFailure(str(exc), code=85, details={"errmsg": str(exc), "code": 85}) from None
            raise

    def __getattr__(self, name: str) -> Callable[..., Awaitable[Any]]:
        method = getattr(self._c, name)

        async def call(*args: Any, **kwargs: Any) -> Any:
            return method(*args, **_unwrap(kwargs))

        return call


def _get(document: dict[str, Any], path: str) -> Any:
    for part in path.split("."):
        document = document[part]
    return document


class FakeDatabase:
    def __init__(self, database: Any) -> None:
        self._db = database

    def __getattr__(self, name: str) -> FakeCollection:
        return FakeCollection(self._db[name])

    def __getitem__(self, name: str) -> FakeCollection:
        return FakeCollection(self._db[name])

    async def list_collection_names(self) -> list[str]:
        return list(self._db.list_collection_names())

    async def create_collection(self, name: str) -> FakeCollection:
        return FakeCollection(self._db.create_collection(name))

    async def command(self, name: str, *args: Any, **kwargs: Any) -> dict[str, Any]:
        if name == "hello":
            return {"isWritablePrimary": True, "setName": "fake", "ok": 1.0}
        return dict(self._db.command(name, *args, **kwargs))


class FakeClient:
    def __init__(self) -> None:
        self.sync = mongomock_ng.MongoClient(tz_aware=True)
        self.transaction_lock = asyncio.Lock()

    def __getitem__(self, name: str) -> FakeDatabase:
        return FakeDatabase(self.sync[name])

    def start_session(self) -> FakeSession:
        return FakeSession(self)

    async def close(self) -> None:
        self.sync.close()
