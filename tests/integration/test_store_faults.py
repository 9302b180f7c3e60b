"""Store faults: a read the database could not answer is asked again (with backoff, a bounded number
of times), a write is not; whatever the driver raised for an outage reaches clients as
STORE_UNAVAILABLE, never as an internal error; a transaction that failed that way is re-run whole,
so the event counts once; `/readyz` says unready while the store is down and ready when it is back."""

from __future__ import annotations

import inspect
import sqlite3
import time
from collections import Counter
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TypeVar

import httpx
import pytest
from pymongo.errors import AutoReconnect, NetworkTimeout, OperationFailure, WTimeoutError

from app.bootstrap import Services
from app.domain.errors import StoreUnavailable
from app.domain.events import RawEvent
from app.main import create_app
from app.services.ingestion import EventStatus, IngestionPolicy, ingest_events
from app.services.ports import ProfileStore, StoreTransaction
from app.services.profile_writes import STORE_ATTEMPTS, with_retries
from app.settings import Settings
from app.store import open_store
from app.store.mongo.store import MongoStore
from app.store.retrying import READ_ATTEMPTS, READS, RetryingStore, mongo_unreachable, sqlite_unreachable
from app.store.sqlite.store import SQLiteStore
from tests.builders import event

T = TypeVar("T")
NOT_RETRIED = {  # writes (a retry could apply them twice), the lifecycle, and streams
    "close",
    "run_in_transaction",
    "batch",
    "run_batch",
    "set_product_signals",
    "blocking_groups",
    "insert_api_key",
    "revoke_api_key",
    "write_meta",
    "setdefault_meta",
    "mark_evaluated",
    "take_lease",
    "end_lease",
    "save_segment",
    "delete_segment",
    "watch_segment_events",
    "wipe_deleted",
    "forget_segment_events",
    "delete_segment_events",
}


class Outage:
    """The real store behind a switch: each call of a store method (or, with `in_transaction`, of a
    transaction's method) fails with `error` before reaching the database while `down`, or for the
    next `failures` calls. `calls` counts what was asked."""

    def __init__(self, inner: ProfileStore, error: BaseException, *, in_transaction: str | None = None) -> None:
        self.inner = inner
        self.error = error
        self.in_transaction = in_transaction
        self.down = False
        self.failures = 0
        self.calls: Counter[str] = Counter()

    def _fails(self, name: str) -> bool:
        self.calls[name] += 1
        if self.down:
            return True
        if self.failures > 0:
            self.failures -= 1
            return True
        return False

    def _guarded(self, name: str, call: Callable[..., Awaitable[Any]]) -> Callable[..., Awaitable[Any]]:
        async def guarded(*args: Any, **kwargs: Any) -> Any:
            if self._fails(name):
                raise self.error
            return await call(*args, **kwargs)

        return guarded

    async def run_in_transaction(self, work: Callable[[StoreTransaction], Awaitable[T]]) -> T:
        async def guarded_work(tx: StoreTransaction) -> T:
            return await work(_GuardedTransaction(tx, self))

        return await self.inner.run_in_transaction(guarded_work)

    def __getattr__(self, name: str) -> Any:
        attribute = getattr(self.inner, name)
        if self.in_transaction is not None or not inspect.iscoroutinefunction(attribute):
            return attribute
        return self._guarded(name, attribute)


class _GuardedTransaction:
    def __init__(self, inner: StoreTransaction, outage: Outage) -> None:
        self._inner = inner
        self._outage = outage

    def __getattr__(self, name: str) -> Any:
        attribute = getattr(self._inner, name)
        return self._outage._guarded(name, attribute) if name == self._outage.in_transaction else attribute


def _retrying(outage: Outage) -> ProfileStore:
    return RetryingStore(outage, unreachable=lambda e: sqlite_unreachable(e) or mongo_unreachable(e))  # type: ignore[arg-type]


def _order(message_id: str, email: str = "ann@example.com") -> RawEvent:
    return event("order_completed", email=email, message_id=message_id)


@pytest.mark.parametrize(
    "error",
    [
        pytest.param(sqlite3.OperationalError("database is locked"), id="sqlite-locked"),
        pytest.param(sqlite3.DatabaseError("file is not a database"), id="sqlite-file-replaced"),
        pytest.param(AutoReconnect("connection reset"), id="mongo-connection-reset"),
        pytest.param(NetworkTimeout("timed out"), id="mongo-timeout"),
        pytest.param(WTimeoutError("waiting for replication timed out", 64), id="mongo-write-concern-timeout"),
        pytest.param(OperationFailure("not primary", 10107, {"errorLabels": ["RetryableWriteError"]}), id="election"),
        pytest.param(StoreUnavailable("already mapped"), id="store-unavailable"),
    ],
)
async def test_a_read_the_database_could_not_answer_is_asked_again_after_a_backoff(
    sqlite_store: SQLiteStore, error: BaseException
) -> None:
    await sqlite_store.write_meta("greeting", "hello")
    outage = Outage(sqlite_store, error)
    outage.failures = READ_ATTEMPTS - 1
    started = time.perf_counter()
    assert await _retrying(outage).read_meta("greeting") == "hello"
    assert outage.calls["read_meta"] == READ_ATTEMPTS
    assert time.perf_counter() - started >= 0.05 + 0.1  # backoff doubles: 50 ms, then 100 ms


async def test_a_read_that_keeps_failing_stops_at_the_bound_as_store_unavailable(sqlite_store: SQLiteStore) -> None:
    outage = Outage(sqlite_store, sqlite3.OperationalError("disk I/O error"))
    outage.down = True
    with pytest.raises(StoreUnavailable) as raised:
        await _retrying(outage).get_profile("p-1")
    assert raised.value.code == "STORE_UNAVAILABLE" and "disk I/O" not in raised.value.message
    assert isinstance(raised.value.__cause__, sqlite3.OperationalError)
    assert outage.calls["get_profile"] == READ_ATTEMPTS


@pytest.mark.parametrize(
    "error",
    [
        pytest.param(sqlite3.IntegrityError("UNIQUE constraint failed"), id="sqlite-constraint"),
        pytest.param(sqlite3.ProgrammingError("Incorrect number of bindings"), id="sqlite-bug"),
        pytest.param(OperationFailure("unknown operator: $where", 2), id="mongo-bad-query"),
        pytest.param(ValueError("a bug of ours"), id="bug"),
    ],
)
async def test_a_bug_or_a_constraint_is_neither_retried_nor_renamed(
    sqlite_store: SQLiteStore, error: BaseException
) -> None:
    outage = Outage(sqlite_store, error)
    outage.failures = 1
    with pytest.raises(type(error)):
        await _retrying(outage).get_profile("p-1")
    assert outage.calls["get_profile"] == 1


async def test_a_write_outside_a_transaction_is_not_retried_and_reports_store_unavailable(
    sqlite_store: SQLiteStore,
) -> None:
    outage = Outage(sqlite_store, sqlite3.OperationalError("database is locked"))
    outage.failures = 1
    with pytest.raises(StoreUnavailable):
        await _retrying(outage).write_meta("greeting", "hello")
    assert outage.calls["write_meta"] == 1
    assert await sqlite_store.read_meta("greeting") is None


def test_every_store_method_is_either_a_retried_read_or_named_as_not_retried() -> None:
    methods = {name for name, _ in inspect.getmembers(ProfileStore, inspect.isfunction) if not name.startswith("_")}
    assert not READS & NOT_RETRIED
    assert methods == READS | NOT_RETRIED, "classify the new store method in app/store/retrying.py"


async def test_a_driver_error_inside_a_transaction_reruns_it_and_the_event_counts_once(
    sqlite_store: SQLiteStore,
) -> None:
    outage = Outage(sqlite_store, sqlite3.OperationalError("disk I/O error"), in_transaction="append_interactions")
    outage.failures = 1  # after the profile write, before the history append: the whole unit rolls back
    [outcome] = await ingest_events(_retrying(outage), [_order("m-1")])
    assert outcome.status is EventStatus.ACCEPTED
    assert outage.calls["append_interactions"] == 2
    profile = await sqlite_store.find_profile_by_identity("email:ann@example.com")
    assert profile is not None and profile.stats.orders == 1
    with sqlite3.connect(sqlite_store.path) as db:
        assert db.execute("SELECT count(*) FROM history").fetchone() == (1,)


async def test_a_batch_the_store_cannot_take_fails_whole_as_store_unavailable(sqlite_store: SQLiteStore) -> None:
    outage = Outage(sqlite_store, sqlite3.OperationalError("disk I/O error"), in_transaction="append_interactions")
    outage.down = True
    with pytest.raises(StoreUnavailable):
        await ingest_events(_retrying(outage), [_order("m-1"), _order("m-2", "bob@example.com")])
    assert outage.calls["append_interactions"] == 3  # the unit was re-run, boundedly
    # Nothing half-written: no profile, no identifier, no message marked as seen.
    assert await sqlite_store.count_profiles() == 0
    assert await sqlite_store.find_profile_by_identity("email:ann@example.com") is None
    [replayed] = await ingest_events(sqlite_store, [_order("m-1")])
    assert replayed.status is EventStatus.ACCEPTED


async def test_readyz_is_unready_while_the_store_is_down_and_ready_when_it_is_back(sqlite_store: SQLiteStore) -> None:
    outage = Outage(sqlite_store, sqlite3.OperationalError("unable to open database file"))
    services = Services(
        settings=Settings(seed_fixtures=False, auth=False), store=_retrying(outage), ingestion=IngestionPolicy()
    )
    transport = httpx.ASGITransport(app=create_app(services=services))
    async with httpx.AsyncClient(transport=transport, base_url="http://t") as http:
        assert (await http.get("/readyz")).status_code == 200
        outage.down = True
        down = await http.get("/readyz")
        assert down.status_code == 503 and down.json()["status"] == "unavailable"
        assert outage.calls["ping"] == 1 + READ_ATTEMPTS  # a blip does not make the replica unready
        query = await http.post("/graphql", json={"query": '{ profile(id: "p-1") { id } }'})
        assert [e["extensions"]["code"] for e in query.json()["errors"]] == ["STORE_UNAVAILABLE"]
        outage.down = False
        assert (await http.get("/readyz")).json() == {"status": "ready", "store": "sqlite"}


async def test_the_opened_store_reports_a_closed_database_as_store_unavailable(tmp_path: Path) -> None:
    store = await open_store(f"sqlite:///{tmp_path}/cdp.sqlite3")
    await store.write_meta("opened", datetime.now(UTC).isoformat())
    await store.close()  # what the real driver raises now is sqlite3.ProgrammingError
    with pytest.raises(StoreUnavailable):
        await store.get_profile("p-1")
    with pytest.raises(StoreUnavailable):
        await store.write_meta("k", "v")


async def test_a_transaction_with_no_mongodb_server_to_reach_runs_once_per_attempt() -> None:
    """Found by an audit: PyMongo's with_transaction re-ran a transaction whose server could not be
    selected as a transient error for 120 s (121 runs), and with_retries' three attempts made a request
    wait 6 minutes for STORE_UNAVAILABLE. A real client, with nothing listening where it points."""
    store = MongoStore.connect("mongodb://127.0.0.1:1/?replicaSet=rs0", "cdp", timeout_ms=100)
    runs = 0

    async def work(tx: StoreTransaction) -> None:
        nonlocal runs
        runs += 1
        await tx.read_meta("k")

    try:
        with pytest.raises(StoreUnavailable):
            await with_retries(RetryingStore(store, unreachable=mongo_unreachable), work)
    finally:
        await store.close()
    assert runs == STORE_ATTEMPTS
