"""What the storage layer retries, and what it reports as STORE_UNAVAILABLE.

A read or a ping changes nothing, so one the database could not answer (a dropped connection, a
timeout, a failover in progress, a file locked past `busy_timeout`) is asked again after a short
exponential backoff, at most READ_ATTEMPTS times. Writes are not retried here: a transaction that
failed rolled back whole, and the service layer re-runs it (`with_retries` in
app/services/profile_writes.py, where the messageId keeps a re-sent event from counting twice);
PyMongo retries a single write once by itself (retryable writes). Whatever a driver raises to say
"the database is not there" leaves this layer as StoreUnavailable, never as an internal error.
"""

from __future__ import annotations

import asyncio
import inspect
import logging
import sqlite3
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from typing import Any, TypeVar

from app.domain.errors import StoreUnavailable
from app.services.ports import ProfileStore, StoreTransaction

T = TypeVar("T")
log = logging.getLogger("cdp.store")

READ_ATTEMPTS = 3
BACKOFF_SECONDS = 0.05
# The ProfileStore methods that only read (see app/services/ports.py); a test keeps the list whole.
READS = frozenset(
    {
        "ping",
        "get_profile",
        "get_profiles",
        "find_profile_by_identity",
        "list_profiles",
        "count_profiles",
        "count_interactions",
        "list_interactions",
        "interactions_since",
        "merges_of",
        "refusals_of",
        "count_products",
        "message_profiles",
        "get_products",
        "best_sellers",
        "profiles_sharing_keys",
        "profile_ids_sharing_keys",
        "match_views",
        "key_counts",
        "read_meta",
        "wipe_owed",
        "feed_position",
        "get_api_key",
        "api_keys_version",
        "list_api_keys",
        "consent_history",
        "consent_refusals",
        "get_segment",
        "list_segments",
        "matching_versions",
        "member_ids",
        "member_versions",
        "count_members",
        "segment_events",
        "old_segment_changes",
        "due_checks",
        "pending_writes",
        "next_check_at",
        "erasures",
        "suppression_list",
        "identity_owners",
        "get_segments",
        "merges_of_profiles",
        "refusals_of_profiles",
        "member_counts",
        "segment_entries",
        "members_of_segments",
        "interactions_of_profiles",
        "read_snapshot",
    }
)
_MONGO_LABELS = ("TransientTransactionError", "RetryableWriteError", "RetryableReadError")


def sqlite_unreachable(exc: BaseException) -> bool:
    """Locked past the busy timeout, an I/O error, a file that is gone or not a database, a closed
    connection; not a constraint (the store turns those into IdentityTaken and the like)."""
    if isinstance(exc, sqlite3.ProgrammingError):
        return "closed" in str(exc)
    return isinstance(exc, sqlite3.OperationalError) or type(exc) is sqlite3.DatabaseError


def mongo_unreachable(exc: BaseException) -> bool:
    """No server, a dropped connection or a timeout, a write concern not met in time, or an error
    the server itself labels as worth retrying (an election in progress). PyMongo is imported here,
    where only a MongoDB store asks: the embedded store's processes no longer load it (~60 ms of
    each process's start)."""
    from pymongo.errors import ConnectionFailure, PyMongoError, WTimeoutError

    if isinstance(exc, ConnectionFailure | WTimeoutError):
        return True
    return isinstance(exc, PyMongoError) and any(exc.has_error_label(label) for label in _MONGO_LABELS)


class RetryingStore:
    """A backend with its reads retried and, on every call, a driver's outage reported as
    StoreUnavailable; attributes and streams (`blocking_groups`, the change stream) pass through."""

    def __init__(
        self,
        inner: ProfileStore,
        *,
        unreachable: Callable[[BaseException], bool],
        attempts: int = READ_ATTEMPTS,
        backoff_seconds: float = BACKOFF_SECONDS,
    ) -> None:
        self.inner = inner
        self._unreachable = unreachable
        self._attempts = attempts
        self._backoff = backoff_seconds

    def __getattr__(self, name: str) -> Any:
        attribute = getattr(self.inner, name)
        if not inspect.iscoroutinefunction(attribute):  # `backend`, streams, ...: as they are
            return attribute
        retried = self._retried(name, attribute, self._attempts if name in READS else 1)
        setattr(self, name, retried)  # every store call comes here: wrap each method once, not per call
        return retried

    def _unavailable(self, name: str, exc: BaseException) -> StoreUnavailable | None:
        if isinstance(exc, StoreUnavailable):
            return exc
        if self._unreachable(exc):
            return StoreUnavailable(f"the {self.inner.backend} store could not complete {name} ({type(exc).__name__})")
        return None

    def _retried(self, name: str, call: Callable[..., Awaitable[Any]], attempts: int) -> Callable[..., Awaitable[Any]]:
        async def retried(*args: Any, **kwargs: Any) -> Any:
            for attempt in range(1, attempts + 1):
                try:
                    return await call(*args, **kwargs)
                except Exception as exc:
                    unavailable = self._unavailable(name, exc)
                    if unavailable is None:
                        raise
                    if attempt == attempts:
                        log.warning("%s failed (attempt %d of %d): %s", name, attempt, attempts, exc)
                        if unavailable is exc:
                            raise
                        raise unavailable from exc
                    await asyncio.sleep(self._backoff * 2 ** (attempt - 1))
            raise AssertionError("unreachable")  # the loop returns or raises

        return retried

    def _raise_unavailable(self, name: str, exc: BaseException) -> None:
        """Raise the StoreUnavailable a driver's outage `exc` stands for; return for anything else."""
        unavailable = self._unavailable(name, exc)
        if unavailable is not None and unavailable is not exc:
            raise unavailable from exc

    async def run_in_transaction(self, work: Callable[[StoreTransaction], Awaitable[T]]) -> T:
        try:
            return await self.inner.run_in_transaction(work)
        except Exception as exc:
            self._raise_unavailable("a transaction", exc)
            raise

    async def run_batch(self, work: Callable[[], Awaitable[T]]) -> T:
        try:
            return await self.inner.run_batch(work)
        except Exception as exc:  # the commit at the end of an embedded batch can fail too
            self._raise_unavailable("a batch", exc)
            raise

    @asynccontextmanager
    async def batch(self) -> AsyncIterator[None]:
        try:
            async with self.inner.batch():
                yield
        except Exception as exc:  # the commit at the end of an embedded batch can fail too
            self._raise_unavailable("a batch", exc)
            raise
