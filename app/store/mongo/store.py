"""The MongoDB backend, through PyMongo's native asyncio API (`AsyncMongoClient`).

Multi-document writes run in transactions, so MongoDB must be a replica set (a single-node one is
enough, see docker-compose.yml); `ping` says so plainly when it is not. The client is created with
majority write concern and retryable writes: an event reported ACCEPTED is on a majority of nodes.
"""

from __future__ import annotations

import asyncio
from bisect import bisect_right
from collections.abc import AsyncIterator, Awaitable, Callable, Collection, Mapping, Sequence
from contextlib import asynccontextmanager, suppress
from datetime import datetime
from types import MappingProxyType
from typing import Any, TypeVar, cast

import bson
from bson import json_util
from pymongo import ASCENDING, DESCENDING, AsyncMongoClient, DeleteOne, IndexModel, InsertOne, ReplaceOne, UpdateOne
from pymongo.errors import (
    BulkWriteError,
    CollectionInvalid,
    DuplicateKeyError,
    OperationFailure,
    PyMongoError,
    ServerSelectionTimeoutError,
)
from pymongo.read_concern import ReadConcern

from app.domain.access import ApiKey
from app.domain.clock import now, utc_ms
from app.domain.errors import InvalidInput, StoreUnavailable
from app.domain.events import REPLAY_TIME_SLACK
from app.domain.history_rebuild import joined_spans
from app.domain.identifiers import Identifier
from app.domain.matching.index import MATCH_VIEW_FIELDS, MatchView, match_view
from app.domain.merge import MergeRecord, MergeRefusal
from app.domain.privacy import ConsentDecision, Erasure
from app.domain.products import CoPurchase, Product
from app.domain.profile import Interaction, Profile
from app.domain.profile_change import ProfileChange
from app.domain.profile_query import InteractionFilter, InteractionPosition, ProfileFilter
from app.domain.segments.conditions import Condition
from app.domain.segments.segment import MembershipChange, Segment, SegmentEvent, is_event_id
from app.domain.segments.upkeep import EVERY_SEGMENT, awaits_upkeep, upkeep_due
from app.services.ports import (
    FeedPositionLost,
    IdentityTaken,
    MessageAlreadyProcessed,
    ProfileWrite,
    Snapshot,
    StoreTransaction,
    VersionConflict,
)
from app.store.mongo import profile_folds
from app.store.mongo.segment_query import membership_pipeline

T = TypeVar("T")
BUCKET_SIZE = 200
# A bucket's items as BSON, at most: half of MongoDB's 16 MB document limit. An event's properties are
# bounded as compact JSON (64 KB), which BSON can make 4-5 times larger (arrays of small numbers: a
# key, a type byte and 4 bytes each), so 200 of them could pass the limit and fail the batch's write.
BUCKET_BYTES = 8 * 1024 * 1024
_MATCH_PROJECTION = dict.fromkeys(MATCH_VIEW_FIELDS, 1)
_PAGE = "_page"  # which parent a document of a joined page read belongs to
_PAGES_PER_AGGREGATION = 100


# The change stream's errors that say a resume token can no longer be resumed from: the oplog no
# longer holds it (ChangeStreamHistoryLost), it is of another stream (InvalidResumeToken), or the
# stream cannot go on (ChangeStreamFatalError).
_POSITION_LOST = frozenset({286, 260, 280})
_INSERTS = [{"$match": {"operationType": "insert"}}]  # what the feed follows of segment_events: new changes
COLLECTIONS = frozenset(
    {
        "api_keys", "consent_log", "erasures", "identities", "interactions", "leases", "merge_refusals", "merges",
        "meta", "processed_messages", "products", "profiles", "segment_checks", "segment_events", "segments",
        "suppressions",
    }
)  # fmt: skip
DUPLICATE_KEY = 11000
NAMESPACE_EXISTS = 48
_SUPERSEDED_INDEXES = (
    ("segment_events", "segmentId_1_at_-1"),
    ("segment_events", "profileId_1"),
    ("profiles", "segments_1"),
    ("profiles", "lastName_1"),  # names and cities are filtered on their folds (profile_folds.py)
    ("profiles", "addresses.city_1"),
    ("products", "category_1_sales_-1"),  # best sellers: the id is the sort's last key
    ("products", "sales_-1"),
)
_INDEX_CONFLICTS = frozenset({85, 86})  # IndexOptionsConflict, IndexKeySpecsConflict: an index of that name or keys


class _Unreachable(Exception):
    """The server could not be reached within a transaction (its cause): not retried by PyMongo."""


# The format of the databases this code writes (a document of `meta`): raised with every change an
# older version would misread; a database of a higher format is refused (as the embedded store's).
STORE_FORMAT, STORE_FORMAT_KEY = 2, "storeFormat"  # 2: profiles hold their folds (profile_folds.py)
_KEYS_VERSION = "apiKeysVersion"  # a document of `meta`, moved with every change to `api_keys`


def update_document(change: ProfileChange) -> dict[str, Any]:
    """The `update_one` document for a ProfileChange: one atomic single-document update."""
    update: dict[str, Any] = {}
    sets = change.set | profile_folds.fold_updates(change.set)
    for operator, values in (("$set", sets), ("$inc", change.inc), ("$max", change.max), ("$min", change.min)):
        if values:
            update[operator] = dict(values)
    pushes: dict[str, Any] = {path: {"$each": items} for path, items in change.append.items()}
    for path, push in change.push.items():
        pushes[path] = {"$each": push.items, "$sort": dict(push.sort), "$slice": push.cap}
    if pushes:
        update["$push"] = pushes
    return update


def profile_query(query: ProfileFilter) -> dict[str, Any]:
    """Translate a typed ProfileFilter: every operator here is written by us, values are escaped."""
    clauses: list[dict[str, Any]] = [{"mergedInto": None}]
    if query.identifier_type:
        clauses.append({"identifiers.type": query.identifier_type})
    clauses.extend(profile_folds.filter_clauses(query))
    if query.segment:
        clauses.append({"segments": query.segment})
    for bound in query.stats:
        condition: dict[str, float] = {}
        if bound.min is not None:
            condition["$gte"] = bound.min
        if bound.max is not None:
            condition["$lte"] = bound.max
        if condition:
            clauses.append({f"stats.{bound.field.value}": condition})
    return clauses[0] if len(clauses) == 1 else {"$and": clauses}


class MongoTransaction(StoreTransaction):
    def __init__(self, db: Any, session: Any) -> None:
        self._db = db
        self._session = session

    async def owners_of(self, keys: Sequence[str]) -> dict[str, str]:
        if not keys:
            return {}
        cursor = self._db.identities.find({"_id": {"$in": list(keys)}}, {"profileId": 1}, session=self._session)
        return {doc["_id"]: doc["profileId"] for doc in await cursor.to_list(None)}

    async def profiles_holding_key_prefix(self, prefix: str, *, at_most: int) -> int:
        selector = {"blockingKeys": _key_under(prefix), "mergedInto": None}
        cursor = self._db.profiles.find(selector, {"_id": 1}, session=self._session).limit(at_most)
        return len(await cursor.to_list(None))

    async def claim_identities(self, profile_id: str, identifiers: Sequence[Identifier], at: datetime) -> None:
        if not identifiers:
            return
        documents = [{"_id": i.key, "profileId": profile_id, "type": i.type, "createdAt": at} for i in identifiers]
        try:
            await self._db.identities.insert_many(documents, ordered=True, session=self._session)
        except (DuplicateKeyError, BulkWriteError) as exc:
            # The transaction is aborted by the error: the caller re-reads the owners in a new one.
            raise IdentityTaken(identifiers[_failed_index(exc)].key) from None

    async def get_profile(self, profile_id: str) -> Profile | None:
        document = await self._db.profiles.find_one({"_id": profile_id}, session=self._session)
        return Profile.from_document(document) if document else None

    async def insert_profile(self, profile: Profile) -> None:
        await self._db.profiles.insert_one(profile_folds.with_folds(profile.to_document()), session=self._session)
        await self._schedule_upkeep([profile.id])

    async def update_profile(
        self, profile_id: str, change: ProfileChange, *, expected_version: int | None = None
    ) -> None:
        selector: dict[str, Any] = {"_id": profile_id}
        if expected_version is not None:
            selector["version"] = expected_version
        result = await self._db.profiles.update_one(selector, update_document(change), session=self._session)
        if result.matched_count != 1:
            raise VersionConflict(profile_id)
        if awaits_upkeep(change):
            await self._schedule_upkeep([profile_id])

    async def record_message(self, message_id: str, profile_id: str, expires_at: datetime) -> None:
        try:
            await self._db.processed_messages.insert_one(
                {"_id": message_id, "profileId": profile_id, "expiresAt": expires_at}, session=self._session
            )
        except DuplicateKeyError:
            raise MessageAlreadyProcessed(message_id) from None

    async def message_seen(self, message_id: str) -> bool:
        found = await self._db.processed_messages.find_one(
            {"_id": message_id, "expiresAt": {"$gt": now()}}, {"_id": 1}, session=self._session
        )
        return found is not None

    async def append_interaction(self, profile_id: str, interaction: dict[str, Any]) -> None:
        await self.append_interactions([(profile_id, interaction)])

    # -- batches -----------------------------------------------------------------------------
    async def get_profiles(self, profile_ids: Collection[str]) -> dict[str, Profile]:
        if not profile_ids:
            return {}
        cursor = self._db.profiles.find({"_id": {"$in": list(profile_ids)}}, session=self._session)
        return {document["_id"]: Profile.from_document(document) for document in await cursor.to_list(None)}

    async def get_profile_documents(self, profile_ids: Collection[str]) -> dict[str, dict[str, Any]]:
        # As stored, not rebuilt through Profile: a batch writes back whole what it read, and a rebuilt
        # document dropped what this version's model does not know (a field a newer replica wrote)
        # and cut free-form data nested past what a profile shows. The client reads times aware (UTC).
        if not profile_ids:
            return {}
        cursor = self._db.profiles.find({"_id": {"$in": list(profile_ids)}}, session=self._session)
        return {document["_id"]: document for document in await cursor.to_list(None)}

    async def changed_since(self, snapshot: Snapshot[Any]) -> set[str]:
        return set(snapshot.revisions)  # it takes none (read_snapshot): any given counts as written since

    async def unchanged(self, profile_ids: Collection[str]) -> None:
        return None  # documents are read as the driver decodes them; nothing is kept between units

    async def document_form(self) -> Callable[[Any], Any]:
        return _as_it_is

    async def encoded(self, writes: Sequence[ProfileWrite]) -> list[ProfileWrite]:
        return list(writes)  # the driver encodes each document as it sends it

    async def keys_purged_through(self) -> datetime | None:
        return now()  # the TTL index purges expired keys unseen

    async def held_messages(self, interactions: Collection[tuple[str, datetime, str]]) -> set[str]:
        if not interactions:
            return set()
        wanted: dict[tuple[str, str], list[datetime]] = {}
        for profile_id, at, message_id in interactions:
            wanted.setdefault((profile_id, message_id), []).append(at)
        times = [at for ats in wanted.values() for at in ats]
        selector = {
            "profileId": {"$in": list({p for p, _ in wanted})},
            # Only the buckets of the span asked about: a merge asks about an anonymous visitor's few
            # events, and the customer's older buckets were read for nothing.
            "minTs": {"$lte": max(times) + REPLAY_TIME_SLACK},
            "maxTs": {"$gte": min(times) - REPLAY_TIME_SLACK},
            "items.messageId": {"$in": list({m for _, m in wanted})},
        }
        projection = {"profileId": 1, "items.messageId": 1, "items.timestamp": 1}
        cursor = self._db.interactions.find(selector, projection, session=self._session)
        return {
            item["messageId"]
            for bucket in await cursor.to_list(None)
            for item in bucket["items"]
            if any(
                abs(item["timestamp"] - at) <= REPLAY_TIME_SLACK
                for at in wanted.get((bucket["profileId"], item["messageId"]), ())
            )
        }

    async def known_messages(self, message_ids: Collection[str]) -> set[str]:
        if not message_ids:
            return set()
        selector = {"_id": {"$in": list(message_ids)}}
        cursor = self._db.processed_messages.find(selector, {"_id": 1}, session=self._session)
        return {document["_id"] for document in await cursor.to_list(None)}

    async def claim_identity_keys(self, claims: Sequence[tuple[Identifier, str]], at: datetime) -> None:
        if not claims:
            return
        documents = [{"_id": i.key, "profileId": owner, "type": i.type, "createdAt": at} for i, owner in claims]
        try:
            await self._db.identities.insert_many(documents, ordered=True, session=self._session)
        except (DuplicateKeyError, BulkWriteError) as exc:
            raise IdentityTaken(claims[_failed_index(exc)][0].key) from None

    async def write_profiles(self, writes: Sequence[ProfileWrite]) -> None:
        if not writes:
            return
        documents = [(profile_folds.with_folds(w.document), w.expected_version) for w in writes]
        operations: list[Any] = [
            InsertOne(doc) if version is None else ReplaceOne({"_id": doc["_id"], "version": version}, doc)
            for doc, version in documents
        ]
        result = await self._db.profiles.bulk_write(operations, ordered=True, session=self._session)
        if result.matched_count != sum(1 for w in writes if w.expected_version is not None):
            raise VersionConflict("a profile of the batch changed since it was read")
        await self._schedule_upkeep([w.document["_id"] for w in writes])

    async def record_messages(self, records: Sequence[tuple[str, str]], expires_at: datetime) -> None:
        if not records:
            return
        documents = [{"_id": m, "profileId": p, "expiresAt": expires_at} for m, p in records]
        try:
            await self._db.processed_messages.insert_many(documents, ordered=True, session=self._session)
        except (DuplicateKeyError, BulkWriteError) as exc:
            raise MessageAlreadyProcessed(records[_failed_index(exc)][0]) from None

    async def append_interactions(self, items: Sequence[tuple[str, dict[str, Any]]]) -> None:
        # Bucket pattern: the full history lives in per-profile documents of at most BUCKET_SIZE
        # interactions, so no document grows without bound whatever a customer does. One ordered
        # bulk write: each update sees the buckets the ones before it filled or opened.
        if not items:
            return
        operations = []
        for profile_id, interaction in items:
            size = len(bson.encode(interaction))
            room = {"profileId": profile_id, "count": {"$lt": BUCKET_SIZE}, "bytes": {"$lte": BUCKET_BYTES - size}}
            added = {
                "$push": {"items": interaction},
                "$inc": {"count": 1, "bytes": size},
                "$min": {"minTs": interaction["timestamp"]},
                "$max": {"maxTs": interaction["timestamp"]},
                "$setOnInsert": {"profileId": profile_id},
            }
            operations.append(UpdateOne(room, added, upsert=True))
        await self._db.interactions.bulk_write(operations, ordered=True, session=self._session)

    # -- merges ------------------------------------------------------------------------------
    async def replace_profile(self, profile: Profile, *, expected_version: int) -> None:
        result = await self._db.profiles.replace_one(
            {"_id": profile.id, "version": expected_version},
            profile_folds.with_folds(profile.to_document()),
            session=self._session,
        )
        if result.matched_count != 1:
            raise VersionConflict(profile.id)
        await self._schedule_upkeep([profile.id])

    async def history(self, profile_id: str) -> list[Interaction]:
        cursor = self._db.interactions.find({"profileId": profile_id}, session=self._session)
        return [Interaction.model_validate(item) for bucket in await cursor.to_list(None) for item in bucket["items"]]

    async def activity_between(
        self, profile_id: str, windows: Sequence[tuple[datetime, datetime]]
    ) -> list[tuple[datetime, str, str]]:
        spans = joined_spans(windows)
        if not spans:
            return []
        overlapping = [{"minTs": {"$lte": high}, "maxTs": {"$gte": low}} for low, high in spans]
        fields = {"items.timestamp": 1, "items.type": 1, "items.channel": 1}  # not the events' properties
        cursor = self._db.interactions.find(
            {"profileId": profile_id, "$or": overlapping}, fields, session=self._session
        )
        lows = [low for low, _ in spans]
        found = []
        for bucket in await cursor.to_list(None):
            for item in bucket["items"]:
                at = item["timestamp"]
                place = bisect_right(lows, at) - 1  # the one span that may hold it: they do not overlap
                if place >= 0 and at <= spans[place][1]:
                    found.append((at, item["type"], item["channel"]))
        return found

    async def reassign_history(self, from_ids: Sequence[str], to_id: str) -> None:
        await self._db.interactions.update_many(
            {"profileId": {"$in": list(from_ids)}}, {"$set": {"profileId": to_id}}, session=self._session
        )

    async def assign_history(
        self, owner_id: str, moves: dict[str, str], rewrites: dict[str, dict[str, Any]]
    ) -> None:
        # Buckets mix items of several origins after a merge: rewrite the owner's buckets, split.
        cursor = self._db.interactions.find({"profileId": owner_id}, session=self._session)
        by_owner: dict[str, list[dict[str, Any]]] = {}
        for bucket in await cursor.to_list(None):
            for item in bucket["items"]:
                if (fields := rewrites.get(item["messageId"])) is not None:
                    item = {**item, **fields}
                by_owner.setdefault(moves.get(item["messageId"], owner_id), []).append(item)
        await self._db.interactions.delete_many({"profileId": owner_id}, session=self._session)
        buckets = [bucket for profile_id, items in by_owner.items() for bucket in _buckets(profile_id, items)]
        if buckets:
            await self._db.interactions.insert_many(buckets, session=self._session)
        by_target: dict[str, list[str]] = {}
        for message_id, target in moves.items():
            by_target.setdefault(target, []).append(message_id)
        for target, message_ids in by_target.items():
            selector = {"_id": {"$in": message_ids}, "profileId": owner_id}
            await self._db.processed_messages.update_many(
                selector, {"$set": {"profileId": target}}, session=self._session
            )

    async def identity_keys_of(self, profile_ids: Collection[str]) -> set[str]:
        selector = {"profileId": {"$in": list(profile_ids)}}
        cursor = self._db.identities.find(selector, {"_id": 1}, session=self._session)
        return {document["_id"] for document in await cursor.to_list(None)}

    async def identities_of(self, profile_id: str) -> dict[str, datetime]:
        cursor = self._db.identities.find({"profileId": profile_id}, session=self._session)
        return {doc["_id"]: utc_ms(doc["createdAt"]) for doc in await cursor.to_list(None)}

    async def reassign_identities(self, from_ids: Sequence[str], to_id: str) -> dict[str, str]:
        selector = {"profileId": {"$in": list(from_ids)}}
        cursor = self._db.identities.find(selector, {"profileId": 1}, session=self._session)
        moved = {doc["_id"]: doc["profileId"] for doc in await cursor.to_list(None)}
        await self._db.identities.update_many(selector, {"$set": {"profileId": to_id}}, session=self._session)
        return moved

    async def set_identity_owner(self, keys: Sequence[str], owner_id: str) -> None:
        await self._db.identities.update_many(
            {"_id": {"$in": list(keys)}}, {"$set": {"profileId": owner_id}}, session=self._session
        )

    async def insert_merge(self, record: MergeRecord) -> None:
        await self._db.merges.insert_one(record.to_document(), session=self._session)

    async def get_merge(self, merge_id: str) -> MergeRecord | None:
        document = await self._db.merges.find_one({"_id": merge_id}, session=self._session)
        return MergeRecord.from_document(document) if document else None

    async def replace_merge(self, record: MergeRecord) -> None:
        await self._db.merges.replace_one({"_id": record.id}, record.to_document(), session=self._session)

    async def merges_of(self, profile_id: str) -> list[MergeRecord]:
        return await merges_of(self._db, profile_id, session=self._session)

    async def merges_of_all(self, profile_ids: Collection[str]) -> list[MergeRecord]:
        ids = list(profile_ids)
        selector = {"$or": [{"survivorId": {"$in": ids}}, {"mergedIds": {"$in": ids}}]}
        cursor = self._db.merges.find(selector, session=self._session).sort([("at", ASCENDING), ("_id", ASCENDING)])
        return [MergeRecord.from_document(document) for document in await cursor.to_list(None)]

    async def products_of(self, product_ids: Collection[str]) -> dict[str, Product]:
        cursor = self._db.products.find({"_id": {"$in": list(dict.fromkeys(product_ids))}}, session=self._session)
        return {document["_id"]: Product.model_validate(document) for document in await cursor.to_list(None)}

    async def put_products(self, products: Sequence[dict[str, Any]]) -> None:
        for product in products:
            await self._db.products.replace_one({"_id": product["_id"]}, product, upsert=True, session=self._session)

    async def record_refusal(self, refusal: MergeRefusal) -> None:
        # The same refusal again (its id says which profiles, and why) keeps the first record.
        document = refusal.to_document()
        await self._db.merge_refusals.update_one(
            {"_id": document.pop("_id")}, {"$setOnInsert": document}, upsert=True, session=self._session
        )

    async def refusals_of(self, profile_id: str) -> list[MergeRefusal]:
        return await refusals_of(self._db, profile_id, session=self._session)

    # -- privacy -------------------------------------------------------------------------------
    async def append_consent(self, decision: ConsentDecision) -> None:
        await self._db.consent_log.insert_one(
            decision.model_dump(by_alias=True, exclude_none=True), session=self._session
        )

    async def consent_decisions(self, profile_id: str) -> list[ConsentDecision]:
        cursor = self._db.consent_log.find({"profileId": profile_id}, session=self._session).sort("_id", ASCENDING)
        return [ConsentDecision.model_validate(document) for document in await cursor.to_list(None)]

    async def assign_consents(
        self, owner_id: str, moves: Mapping[str, str], direct: Mapping[str, str] = MappingProxyType({})
    ) -> None:
        for field, by_id in (("messageId", moves), ("decisionId", direct)):
            by_target: dict[str, list[str]] = {}
            for named, target in by_id.items():
                if target != owner_id:
                    by_target.setdefault(target, []).append(named)
            for target, ids in by_target.items():
                await self._db.consent_log.update_many(
                    {"profileId": owner_id, field: {"$in": ids}}, {"$set": {"profileId": target}}, session=self._session
                )

    async def tombstones_of(self, profile_ids: Collection[str]) -> list[str]:
        selector = {"mergedInto": {"$in": list(profile_ids)}}
        cursor = self._db.profiles.find(selector, {"_id": 1}, session=self._session).sort("_id", 1)
        return [document["_id"] for document in await cursor.to_list(None)]

    async def erase(self, profile_ids: Sequence[str]) -> tuple[int, int]:
        ids = {"$in": list(profile_ids)}
        session = self._session
        await self._db.merges.delete_many({"$or": [{"survivorId": ids}, {"mergedIds": ids}]}, session=session)
        await self._db.merge_refusals.delete_many({"profileIds": ids}, session=session)
        identifiers = await self._db.identities.delete_many({"profileId": ids}, session=session)
        interactions = 0
        for bucket in await self._db.interactions.find({"profileId": ids}, {"count": 1}, session=session).to_list(None):
            interactions += int(bucket.get("count", 0))
        await self._db.interactions.delete_many({"profileId": ids}, session=session)
        for collection in (self._db.processed_messages, self._db.consent_log, self._db.segment_events):
            await collection.delete_many({"profileId": ids}, session=session)
        await self._db.segment_checks.delete_many({"profileId": ids}, session=session)
        await self._db.profiles.delete_many({"_id": ids}, session=session)
        return int(identifiers.deleted_count), interactions

    async def suppress(self, hashes: Sequence[str], at: datetime) -> None:
        for value in hashes:
            await self._db.suppressions.update_one(
                {"_id": value}, {"$setOnInsert": {"at": at}}, upsert=True, session=self._session
            )

    async def read_meta(self, key: str) -> str | None:
        found = await self._db.meta.find_one({"_id": key}, session=self._session)
        return str(found["value"]) if found else None

    async def write_meta(self, key: str, value: str) -> None:
        await self._db.meta.replace_one({"_id": key}, {"_id": key, "value": value}, upsert=True, session=self._session)

    async def suppressed(self, hashes: Sequence[str]) -> set[str]:
        if not hashes:
            return set()
        cursor = self._db.suppressions.find({"_id": {"$in": list(hashes)}}, {"_id": 1}, session=self._session)
        return {document["_id"] for document in await cursor.to_list(None)}

    async def insert_segment_event(self, event: SegmentEvent) -> None:
        await self._db.segment_events.insert_one(event.stored(), session=self._session)

    async def schedule_check(self, profile_id: str, segment_id: str, due_at: datetime | None) -> None:
        key = {"_id": f"{profile_id}|{segment_id}"}
        if due_at is None:
            await self._db.segment_checks.delete_one(key, session=self._session)
        else:
            await self._db.segment_checks.update_one(
                key, _check_due(profile_id, segment_id, due_at), upsert=True, session=self._session
            )

    async def record_erasure(self, erasure: Erasure) -> None:
        await self._db.erasures.insert_one(erasure.model_dump(by_alias=True), session=self._session)

    async def get_segments(self, segment_ids: Collection[str]) -> dict[str, Segment]:
        if not segment_ids:
            return {}
        cursor = self._db.segments.find({"_id": {"$in": list(dict.fromkeys(segment_ids))}}, session=self._session)
        return {document["_id"]: Segment.model_validate(document) for document in await cursor.to_list(None)}

    async def segment_memberships(self, profile_ids: Collection[str]) -> dict[str, tuple[int, list[str]]]:
        if not profile_ids:
            return {}
        selector = {"_id": {"$in": list(profile_ids)}}
        cursor = self._db.profiles.find(selector, {"version": 1, "segments": 1}, session=self._session)
        return {d["_id"]: (d.get("version", 0), d.get("segments", [])) for d in await cursor.to_list(None)}

    async def set_segments(self, memberships: Mapping[str, Sequence[str]]) -> None:
        if memberships:
            operations = [UpdateOne({"_id": p}, {"$set": {"segments": list(s)}}) for p, s in memberships.items()]
            await self._db.profiles.bulk_write(operations, ordered=False, session=self._session)

    async def insert_segment_events(self, events: Sequence[SegmentEvent]) -> None:
        if events:
            documents = [event.stored() for event in events]
            await self._db.segment_events.insert_many(documents, ordered=True, session=self._session)

    async def latest_segment_event_at(self) -> datetime | None:
        found = await self._db.segment_events.find_one(
            {}, {"at": 1}, sort=[("at", DESCENDING), ("_id", DESCENDING)], session=self._session
        )
        return found["at"] if found else None

    async def schedule_checks(self, checks: Sequence[tuple[str, str, datetime | None]]) -> None:
        operations: list[Any] = []
        for profile_id, segment_id, due_at in checks:
            key = {"_id": f"{profile_id}|{segment_id}"}
            if due_at is None:
                operations.append(DeleteOne(key))
            else:
                operations.append(UpdateOne(key, _check_due(profile_id, segment_id, due_at), upsert=True))
        if operations:
            await self._db.segment_checks.bulk_write(operations, ordered=True, session=self._session)

    async def clear_upkeep(self, counted: Mapping[str, int]) -> None:
        operations = [  # a check from before the count stands for one write, as pending_writes reads it
            DeleteOne(
                {
                    "_id": f"{profile_id}|{EVERY_SEGMENT}",
                    "$or": [{"writes": {"$lte": writes}}, {"writes": {"$exists": False}}],
                }
            )
            for profile_id, writes in counted.items()
        ]
        if operations:
            await self._db.segment_checks.bulk_write(operations, ordered=False, session=self._session)

    async def _schedule_upkeep(self, profile_ids: Sequence[str]) -> None:
        """The check of every segment that a write of these profiles leaves until its upkeep clears it
        (the earliest due time stands: a later write must not put off an earlier one's)."""
        due = upkeep_due(now())
        operations = [
            UpdateOne(
                {"_id": f"{profile_id}|{EVERY_SEGMENT}"},
                {
                    "$min": {"dueAt": due},
                    "$inc": {"writes": 1},
                    "$setOnInsert": {"profileId": profile_id, "segmentId": EVERY_SEGMENT},
                },
                upsert=True,
            )
            for profile_id in profile_ids
        ]
        await self._db.segment_checks.bulk_write(operations, ordered=False, session=self._session)


def _check_due(profile_id: str, segment_id: str, due_at: datetime) -> dict[str, Any]:
    """A check made due at `due_at`, keeping the writes it counts (pending_writes), as the embedded
    store's ON CONFLICT … DO UPDATE does: replaced whole, a check put off lost its count, and the next
    write's upkeep (counting only itself) cleared it, the earlier write's segments never decided."""
    return {"$set": {"dueAt": due_at}, "$setOnInsert": {"profileId": profile_id, "segmentId": segment_id}}


def _buckets(profile_id: str, items: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """`items` in buckets of at most BUCKET_SIZE items and BUCKET_BYTES, as append_interactions fills them."""
    found: list[dict[str, Any]] = []
    current: list[dict[str, Any]] = []
    held = 0
    for item in items:
        size = len(bson.encode(item))
        if current and (len(current) >= BUCKET_SIZE or held + size > BUCKET_BYTES):
            found.append(_bucket(profile_id, current, held))
            current, held = [], 0
        current.append(item)
        held += size
    if current:
        found.append(_bucket(profile_id, current, held))
    return found


def _bucket(profile_id: str, items: list[dict[str, Any]], size: int) -> dict[str, Any]:
    stamps = [item["timestamp"] for item in items]
    return {
        "profileId": profile_id,
        "count": len(items),
        "bytes": size,
        "minTs": min(stamps),
        "maxTs": max(stamps),
        "items": items,
    }


async def merges_of(db: Any, profile_id: str, *, session: Any = None) -> list[MergeRecord]:
    selector = {"$or": [{"survivorId": profile_id}, {"mergedIds": profile_id}]}
    cursor = db.merges.find(selector, session=session).sort([("at", ASCENDING), ("_id", ASCENDING)])
    return [MergeRecord.from_document(document) for document in await cursor.to_list(None)]


async def refusals_of(db: Any, profile_id: str, *, session: Any = None) -> list[MergeRefusal]:
    selector = {"profileIds": profile_id}
    cursor = db.merge_refusals.find(selector, session=session).sort([("at", ASCENDING), ("_id", ASCENDING)])
    return [MergeRefusal.model_validate(document) for document in await cursor.to_list(None)]


_LAST_CHARACTER = "\U0010ffff"  # after every key starting with a prefix, the prefix followed by it


def _key_under(prefix: str) -> dict[str, Any]:
    """A blocking-key array holding a key that starts with `prefix`: $elemMatch, one key within the
    range (a plain range on an array may match two keys apart)."""
    return {"$elemMatch": {"$gte": prefix, "$lt": prefix + _LAST_CHARACTER}}


def _failed_index(exc: PyMongoError) -> int:
    """Which document of an ordered insert_many hit the duplicate key: a lost race. Any other failure
    (a document too large, a write concern not met) is raised as it is: read as a lost race, it was
    retried as one and then reported as a conflict on an identifier or a message."""
    details = getattr(exc, "details", None) or {}
    errors = details.get("writeErrors") or []
    if errors and errors[0].get("code") == DUPLICATE_KEY:
        return int(errors[0].get("index", 0))
    if isinstance(exc, DuplicateKeyError) and not errors:
        return 0
    raise exc


class MongoStore:
    backend = "mongodb"

    def __init__(self, client: Any, database: str) -> None:
        self._client = client
        self._db = client[database]

    @classmethod
    def connect(cls, url: str, database: str, *, timeout_ms: int = 5000) -> MongoStore:
        client: AsyncMongoClient[dict[str, Any]] = AsyncMongoClient(
            url,
            tz_aware=True,
            w="majority",
            retryWrites=True,
            retryReads=True,
            serverSelectionTimeoutMS=timeout_ms,
            appname="cdp-core",
        )
        return cls(client, database)

    async def ensure_indexes(self) -> None:
        """The database made ready for this code (its indexes), once it is known to be of a format
        this code reads (STORE_FORMAT)."""
        db = self._db
        found = await db.meta.find_one({"_id": STORE_FORMAT_KEY})
        if found is not None and int(found["value"]) > STORE_FORMAT:
            raise InvalidInput(
                f"the MongoDB database {db.name} was written by a newer version of this server (store format "
                f"{found['value']}; this one reads up to {STORE_FORMAT}): run that version or a later one",
                field="CDP_DATABASE_URL",
            )
        # Made now, each of them: the first erasure made `erasures` and `suppressions` within its
        # transaction, which a sharded cluster refuses for a transaction writing to several shards.
        for name in COLLECTIONS - set(await db.list_collection_names()):
            try:
                await db.create_collection(name)
            except CollectionInvalid:  # another worker made it meanwhile, as the driver saw
                pass
            except OperationFailure as exc:
                if exc.code != NAMESPACE_EXISTS:  # as the server saw
                    raise
        try:
            await self._create_indexes()
        except OperationFailure as exc:
            if exc.code not in _INDEX_CONFLICTS:
                raise
            raise InvalidInput(
                f"an index of the MongoDB database {db.name} conflicts with one this server makes "
                f"({exc.details.get('errmsg') if exc.details else exc}): drop that index, then start again",
                field="CDP_DATABASE_URL",
            ) from None
        if found is None or int(found["value"]) < STORE_FORMAT:
            await profile_folds.fill_missing(db.profiles)
            await db.meta.update_one({"_id": STORE_FORMAT_KEY}, {"$set": {"value": STORE_FORMAT}}, upsert=True)

    async def _create_indexes(self) -> None:
        db = self._db
        for collection, name in _SUPERSEDED_INDEXES:  # each a prefix of one made below: a cost on every write
            with suppress(OperationFailure):  # not there (IndexNotFound), or dropped by another worker
                await db[collection].drop_index(name)
        await db.identities.create_indexes([IndexModel([("profileId", ASCENDING)])])
        await db.interactions.create_indexes(
            [
                IndexModel([("profileId", ASCENDING), ("count", ASCENDING)]),
                IndexModel([("profileId", ASCENDING), ("maxTs", DESCENDING)]),
            ]
        )
        await db.processed_messages.create_indexes([IndexModel([("expiresAt", ASCENDING)], expireAfterSeconds=0)])
        await db.merges.create_indexes(
            [IndexModel([("survivorId", ASCENDING)]), IndexModel([("mergedIds", ASCENDING)])]
        )
        await db.merge_refusals.create_indexes([IndexModel([("profileIds", ASCENDING)])])
        await db.consent_log.create_indexes([IndexModel([("profileId", ASCENDING), ("at", DESCENDING)])])
        await db.segment_events.create_indexes(
            [
                # A segment's or a profile's history, newest first, read in order, not sorted in memory.
                IndexModel([("segmentId", ASCENDING), ("at", DESCENDING), ("_id", DESCENDING)]),
                IndexModel([("profileId", ASCENDING), ("at", DESCENDING), ("_id", DESCENDING)]),
                # The whole history, newest first, without sorting every event for each request.
                IndexModel([("at", DESCENDING), ("_id", DESCENDING)]),
                # An erased person's exits: the server deletes them once `forgetAt` passes, should no
                # process of ours do it first (forget_segment_events).
                IndexModel([("forgetAt", ASCENDING)], expireAfterSeconds=0, sparse=True),
            ]
        )
        await db.segment_checks.create_indexes(
            [IndexModel([("dueAt", ASCENDING)]), IndexModel([("profileId", 1)]), IndexModel([("segmentId", 1)])]
        )
        await db.processed_messages.create_indexes([IndexModel([("profileId", ASCENDING)])])
        await db.products.create_indexes(  # recommendations: in-stock best sellers, of a category
            [  # in best_sellers' order to the last key (ties by id): an index of part of it sorted every product
                IndexModel([("category", ASCENDING), ("sales", DESCENDING), ("_id", ASCENDING)]),
                IndexModel([("sales", DESCENDING), ("_id", ASCENDING)]),
            ]
        )
        await db.profiles.create_indexes(
            [
                IndexModel([("mergedInto", ASCENDING), ("_id", ASCENDING)]),
                IndexModel([("identifiers.type", ASCENDING)]),
                *(IndexModel([(path, ASCENDING)]) for path in profile_folds.INDEXED),
                IndexModel([("segments", ASCENDING), ("_id", ASCENDING)]),  # a segment's members, page by page
                IndexModel([("blockingKeys", ASCENDING)]),  # multikey: fuzzy merge candidates by key
            ]
        )

    # -- lifecycle ---------------------------------------------------------------------------
    async def ping(self) -> None:
        try:
            hello = await self._db.command("hello")
        except PyMongoError as exc:
            raise StoreUnavailable(f"MongoDB is not reachable ({type(exc).__name__})") from exc
        if not hello.get("setName") and hello.get("msg") != "isdbgrid":
            raise StoreUnavailable(
                "MongoDB must run as a replica set (a single node started with --replSet is enough): "
                "merges and ingestion use transactions"
            )

    async def close(self) -> None:
        await self._client.close()

    # -- writes ------------------------------------------------------------------------------
    @asynccontextmanager
    async def batch(self) -> AsyncIterator[None]:
        yield  # each transaction commits with majority write concern on its own

    async def run_batch(self, work: Callable[[], Awaitable[T]]) -> T:
        async with self.batch():
            return await work()

    async def read_snapshot(self, work: Callable[[StoreTransaction], Awaitable[T]]) -> Snapshot[T] | None:
        return None  # a batch computes inside its transaction: MongoDB's writers do not queue for one lock

    async def run_in_transaction(self, work: Callable[[StoreTransaction], Awaitable[T]]) -> T:
        return await self._transaction(lambda session: work(MongoTransaction(self._db, session)))

    async def _transaction(self, work: Callable[[Any], Awaitable[T]]) -> T:
        """`work(session)` in one transaction. PyMongo's `with_transaction` runs it again on a transient
        error (a write conflict, a failover) for up to 120 s, a server that is down included: each run
        waited serverSelectionTimeoutMS, and under with_retries' three attempts a request waited 6
        minutes for STORE_UNAVAILABLE. No server to select ends it at once here; with_retries tries
        again after a backoff. (A commit whose outcome the server could not say is still asked again
        for up to 120 s: PyMongo's rule, which a client-side timeout would only apply to the server
        selection too.)"""

        async def once(session: Any) -> T:
            try:
                return await work(session)
            except ServerSelectionTimeoutError as exc:  # not retried as a TransientTransactionError
                raise _Unreachable from exc

        async with self._client.start_session() as session:
            try:
                # Snapshot: its reads one view of majority-committed data, on a sharded cluster too (where
                # the default reads each shard as of when it is asked).
                result: T = await session.with_transaction(once, read_concern=ReadConcern("snapshot"))
            except _Unreachable as exc:
                raise cast(BaseException, exc.__cause__) from None
            return result

    # -- reads -------------------------------------------------------------------------------
    async def get_profile(self, profile_id: str) -> Profile | None:
        document = await self._db.profiles.find_one({"_id": profile_id})
        return Profile.from_document(document) if document else None

    async def get_profiles(self, profile_ids: Collection[str]) -> dict[str, Profile]:
        if not profile_ids:
            return {}
        cursor = self._db.profiles.find({"_id": {"$in": list(profile_ids)}})
        return {document["_id"]: Profile.from_document(document) for document in await cursor.to_list(None)}

    async def find_profile_by_identity(self, key: str) -> Profile | None:
        identity = await self._db.identities.find_one({"_id": key})
        if identity is None:
            return None
        return await self.get_profile(identity["profileId"])

    async def list_profiles(
        self,
        query: ProfileFilter,
        *,
        after: str | None,
        limit: int,
        before: str | None = None,
        from_end: bool = False,
    ) -> list[Profile]:
        selector = _id_range(profile_query(query), after, before)
        cursor = self._db.profiles.find(selector).sort("_id", DESCENDING if from_end else ASCENDING).limit(limit)
        found = [Profile.from_document(document) for document in await cursor.to_list(None)]
        return found[::-1] if from_end else found

    async def count_profiles(self, query: ProfileFilter | None = None) -> int:
        return int(await self._db.profiles.count_documents(profile_query(query or ProfileFilter())))

    async def list_interactions(
        self,
        profile_id: str,
        *,
        before: InteractionPosition | None,
        where: InteractionFilter,
        limit: int,
        after: InteractionPosition | None = None,
        from_end: bool = False,
    ) -> list[Interaction]:
        pipeline = _history_page(profile_id, before=before, after=after, where=where, limit=limit, from_end=from_end)
        cursor = await self._db.interactions.aggregate(pipeline)
        found = [Interaction.model_validate(document) for document in await cursor.to_list(None)]
        return found[::-1] if from_end else found

    async def count_interactions(self, profile_ids: Collection[str], where: InteractionFilter) -> dict[str, int]:
        found = dict.fromkeys(profile_ids, 0)
        if not found:
            return found
        pipeline: list[dict[str, Any]] = [
            {"$match": {"profileId": {"$in": list(found)}}},
            {"$unwind": "$items"},
            *([{"$match": items}] if (items := _history_filter(where, prefix="items.")) else []),
            {"$group": {"_id": "$profileId", "count": {"$sum": 1}}},
        ]
        for document in await (await self._db.interactions.aggregate(pipeline)).to_list(None):
            found[document["_id"]] = int(document["count"])
        return found

    async def interactions_since(
        self, profile_ids: Collection[str], since: datetime, where: InteractionFilter
    ) -> dict[str, list[Interaction]]:
        if not profile_ids:
            return {}
        pipeline: list[dict[str, Any]] = [
            {"$match": {"profileId": {"$in": list(profile_ids)}, "maxTs": {"$gte": since}}},
            {"$unwind": "$items"},
            {"$match": {"items.timestamp": {"$gte": since}, **_history_filter(where, prefix="items.")}},
            {"$project": {"_id": 0, "profileId": 1, "items": 1}},
        ]
        found: dict[str, list[Interaction]] = {}
        for document in await (await self._db.interactions.aggregate(pipeline)).to_list(None):
            found.setdefault(document["profileId"], []).append(Interaction.model_validate(document["items"]))
        return found

    async def message_profiles(self, message_ids: Collection[str]) -> dict[str, str]:
        cursor = self._db.processed_messages.find({"_id": {"$in": list(dict.fromkeys(message_ids))}}, {"profileId": 1})
        return {document["_id"]: document["profileId"] for document in await cursor.to_list(None)}

    async def count_products(self) -> int:
        return int(await self._db.products.count_documents({}))

    async def get_products(self, product_ids: Sequence[str]) -> list[Product]:
        cursor = self._db.products.find({"_id": {"$in": list(dict.fromkeys(product_ids))}})
        return [Product.model_validate(document) for document in await cursor.to_list(None)]

    async def best_sellers(self, category: str | None, *, limit: int) -> list[Product]:
        selector: dict[str, Any] = {"stock": {"$gt": 0}}
        if category is not None:
            selector["category"] = category
        cursor = self._db.products.find(selector).sort([("sales", DESCENDING), ("_id", ASCENDING)]).limit(limit)
        return [Product.model_validate(document) for document in await cursor.to_list(None)]

    async def set_product_signals(self, signals: dict[str, tuple[int, list[CoPurchase]]]) -> None:
        # Derived data, rewritten whole by each traits job: no transaction needed, a rerun repairs it.
        await self._db.products.update_many({"_id": {"$nin": list(signals)}}, {"$set": {"sales": 0, "alsoBought": []}})
        for product_id, (sales, links) in signals.items():
            also = [link.model_dump(by_alias=True) for link in links]
            await self._db.products.update_one({"_id": product_id}, {"$set": {"sales": sales, "alsoBought": also}})

    # -- fuzzy matching ----------------------------------------------------------------------
    async def profiles_sharing_keys(self, keys: Sequence[str], *, max_block: int, limit: int) -> list[MatchView]:
        usable = await self._usable_keys(keys, max_block)
        if not usable:
            return []
        selector = {"blockingKeys": {"$in": usable}, "mergedInto": None}
        cursor = self._db.profiles.find(selector, _MATCH_PROJECTION).sort("_id", ASCENDING).limit(limit)
        return [match_view(document) for document in await cursor.to_list(None)]

    async def profile_ids_sharing_keys(self, keys: Sequence[str], *, max_block: int, limit: int) -> list[str]:
        usable = await self._usable_keys(keys, max_block)
        if not usable:
            return []
        selector = {"blockingKeys": {"$in": usable}, "mergedInto": None}
        cursor = self._db.profiles.find(selector, {"_id": 1}).sort("_id", ASCENDING).limit(limit)
        return [str(document["_id"]) for document in await cursor.to_list(None)]

    async def _usable_keys(self, keys: Sequence[str], max_block: int) -> list[str]:
        usable = []
        for key in keys:  # each count stops at max_block + 1: a flooded key costs no more than that
            held = await self._db.profiles.count_documents({"blockingKeys": key}, limit=max_block + 1)
            if held <= max_block:
                usable.append(key)
        return usable

    async def match_views(self, profile_ids: Sequence[str]) -> list[MatchView]:
        cursor = self._db.profiles.find({"_id": {"$in": list(profile_ids)}, "mergedInto": None}, _MATCH_PROJECTION)
        return [match_view(document) for document in await cursor.to_list(None)]

    async def blocking_groups(self) -> AsyncIterator[tuple[str, list[str]]]:
        pipeline: list[dict[str, Any]] = [
            {"$match": {"mergedInto": None, "blockingKeys.0": {"$exists": True}}},  # one key is enough to share
            {"$project": {"blockingKeys": 1}},
            {"$unwind": "$blockingKeys"},
            {"$group": {"_id": "$blockingKeys", "ids": {"$push": "$_id"}}},
            {"$match": {"ids.1": {"$exists": True}}},
            {"$sort": {"_id": ASCENDING}},
        ]
        cursor = await self._db.profiles.aggregate(pipeline, allowDiskUse=True)
        async for group in cursor:
            yield group["_id"], sorted(group["ids"])

    async def key_counts(self, prefix: str) -> dict[str, int]:
        inside = {"$and": [{"$gte": ["$$key", prefix]}, {"$lt": ["$$key", prefix + _LAST_CHARACTER]}]}
        pipeline: list[dict[str, Any]] = [
            {"$match": {"mergedInto": None, "blockingKeys": _key_under(prefix)}},
            # Only the keys within it are unwound (a profile holds some twenty others).
            {"$project": {"_id": 0, "keys": {"$filter": {"input": "$blockingKeys", "as": "key", "cond": inside}}}},
            {"$unwind": "$keys"},
            {"$group": {"_id": "$keys", "count": {"$sum": 1}}},
        ]
        cursor = await self._db.profiles.aggregate(pipeline, allowDiskUse=True)
        return {str(group["_id"]): int(group["count"]) async for group in cursor}

    async def insert_api_key(self, key: ApiKey) -> None:
        await self._changing_keys(lambda session: self._db.api_keys.insert_one(key.to_document(), session=session))

    async def get_api_key(self, key_id: str) -> ApiKey | None:
        found = await self._db.api_keys.find_one({"_id": key_id})
        return ApiKey.model_validate(found) if found else None

    async def list_api_keys(self) -> list[ApiKey]:
        cursor = self._db.api_keys.find({}).sort("_id", ASCENDING)
        return [ApiKey.model_validate(document) for document in await cursor.to_list(None)]

    async def revoke_api_key(self, key_id: str, at: datetime) -> bool:
        result = await self._changing_keys(
            lambda session: self._db.api_keys.update_one(
                {"_id": key_id, "revokedAt": None}, {"$set": {"revokedAt": at}}, session=session
            ),
            changed=lambda result: bool(result.modified_count),
        )
        return bool(result.modified_count == 1)

    async def api_keys_version(self) -> int:
        """One findOne per authenticated request: a round trip, as the key's own read was, but exact. A
        change stream on the keys would save it, and leave a revoked key usable until the change arrives."""
        found = await self._db.meta.find_one({"_id": _KEYS_VERSION})
        return int(found["value"]) if found else 0

    async def _changing_keys(
        self, change: Callable[[Any], Awaitable[T]], changed: Callable[[T], bool] = lambda _: True
    ) -> T:
        """`change` to the keys and, when it `changed` them, the move of their version, in one
        transaction: a version moved by nothing would make every process drop its verified keys."""

        async def work(session: Any) -> T:
            result = await change(session)
            if changed(result):
                await self._db.meta.update_one(
                    {"_id": _KEYS_VERSION}, {"$inc": {"value": 1}}, upsert=True, session=session
                )
            return result

        return await self._transaction(work)

    async def consent_history(self, profile_ids: Sequence[str], *, limit: int | None = None) -> list[ConsentDecision]:
        # Newest first; of decisions at one instant the refusal first (the one in effect: supersedes),
        # then in the order they were made (ObjectIds grow).
        order = [("at", DESCENDING), ("granted", ASCENDING), ("_id", DESCENDING)]
        if limit is None:
            cursor = self._db.consent_log.find({"profileId": {"$in": list(profile_ids)}}).sort(order)
            documents = await cursor.to_list(None)
        else:  # each profile's newest (a merged family: a few profiles)
            documents = []
            for profile_id in dict.fromkeys(profile_ids):
                documents += (
                    await self._db.consent_log.find({"profileId": profile_id}).sort(order).limit(limit).to_list(None)
                )
            documents.sort(key=lambda d: (d["at"], not d.get("granted"), d["_id"]), reverse=True)
        return [ConsentDecision.model_validate(document) for document in documents]

    async def consent_refusals(self) -> list[ConsentDecision]:
        cursor = self._db.consent_log.find({"granted": False}).sort([("at", ASCENDING), ("_id", ASCENDING)])
        return [ConsentDecision.model_validate(document) for document in await cursor.to_list(None)]

    async def save_segment(self, segment: Segment) -> None:
        document = segment.model_dump(by_alias=True)
        await self._db.segments.replace_one({"_id": segment.id}, document, upsert=True)

    async def mark_evaluated(self, segment: Segment, *, evaluated_at: datetime) -> bool:
        # A revision of None matches a document without one (saved before revisions), as it should.
        selector = {"_id": segment.id, "updatedAt": segment.updated_at, "revision": segment.revision}
        marked = await self._db.segments.update_one(selector, {"$set": {"evaluatedAt": evaluated_at}})
        return bool(marked.matched_count == 1)

    async def get_segment(self, segment_id: str) -> Segment | None:
        found = await self._db.segments.find_one({"_id": segment_id})
        return Segment.model_validate(found) if found else None

    async def list_segments(self) -> list[Segment]:
        cursor = self._db.segments.find({}).sort("_id", ASCENDING)
        return [Segment.model_validate(document) for document in await cursor.to_list(None)]

    async def delete_segment(self, segment_id: str) -> None:
        await self._db.segments.delete_one({"_id": segment_id})
        await self._db.segment_checks.delete_many({"segmentId": segment_id})

    async def matching_versions(self, tree: Condition, *, now: datetime) -> dict[str, int]:
        cursor = await self._db.profiles.aggregate(membership_pipeline(tree, now=now), allowDiskUse=True)
        found = await cursor.to_list(None)
        return {d["_id"]: d.get("version", 0) for d in sorted(found, key=lambda d: d["_id"])}

    async def member_ids(self, segment_id: str) -> list[str]:
        return list(await self.member_versions(segment_id))

    async def member_versions(self, segment_id: str) -> dict[str, int]:
        cursor = self._db.profiles.find({"segments": segment_id, "mergedInto": None}, {"version": 1}).sort("_id", 1)
        return {d["_id"]: d.get("version", 0) for d in await cursor.to_list(None)}

    async def count_members(self, segment_id: str) -> int:
        return int(await self._db.profiles.count_documents({"segments": segment_id, "mergedInto": None}))

    async def segment_events(
        self,
        *,
        segment_id: str | None = None,
        profile_id: str | None = None,
        limit: int,
        before: str | None = None,
        profile_ids: Sequence[str] | None = None,
    ) -> list[SegmentEvent]:
        selector: dict[str, Any] = {
            k: v for k, v in (("segmentId", segment_id), ("profileId", profile_id)) if v is not None
        }
        if profile_ids is not None:
            selector["profileId"] = {"$in": list(profile_ids)}
        if before is not None:  # after it in the list's order (at, then _id)
            place = await self._db.segment_events.find_one({"_id": before}, {"at": 1})
            if place is not None:
                selector["$or"] = [{"at": {"$lt": place["at"]}}, {"at": place["at"], "_id": {"$lt": before}}]
            elif is_event_id(before):  # deleted since: the events made before it
                selector["_id"] = {"$lt": before}
            else:
                raise InvalidInput(f"no segment event {before}", field="before")
        cursor = self._db.segment_events.find(selector).sort([("at", DESCENDING), ("_id", DESCENDING)]).limit(limit)
        return [SegmentEvent.model_validate(document) for document in await cursor.to_list(None)]

    async def pending_writes(self, profile_ids: Collection[str]) -> dict[str, int]:
        if not profile_ids:
            return {}
        keys = [f"{profile_id}|{EVERY_SEGMENT}" for profile_id in profile_ids]
        cursor = self._db.segment_checks.find({"_id": {"$in": keys}})
        return {document["profileId"]: int(document.get("writes", 1)) for document in await cursor.to_list(None)}

    async def due_checks(self, now: datetime, *, limit: int) -> list[tuple[str, str]]:
        cursor = self._db.segment_checks.find({"dueAt": {"$lte": now}}).sort("dueAt", ASCENDING).limit(limit)
        return [(document["profileId"], document["segmentId"]) for document in await cursor.to_list(None)]

    async def watch_segment_events(
        self, resume_token: str | None, *, committed_here: asyncio.Event | None = None
    ) -> AsyncIterator[tuple[str, SegmentEvent]]:
        # A change stream is pushed to us: nothing to wake (`committed_here` is for a polling store).
        resume_after = json_util.loads(resume_token) if resume_token else None
        try:
            async with await self._db.segment_events.watch(_INSERTS, resume_after=resume_after) as stream:
                async for change in stream:
                    yield json_util.dumps(change["_id"]), SegmentEvent.model_validate(change["fullDocument"])
        except OperationFailure as exc:
            if exc.code in _POSITION_LOST:
                raise FeedPositionLost(f"the change stream cannot resume ({exc.code}: {exc.details})") from exc
            raise
        # A stream ends only when invalidated (segment_events dropped or renamed: a mongorestore --drop),
        # after which it cannot be resumed from any token it gave.
        raise FeedPositionLost("the change stream of segment_events was invalidated")

    async def next_check_at(self) -> datetime | None:
        cursor = self._db.segment_checks.find({}, {"dueAt": 1}).sort("dueAt", ASCENDING).limit(1)
        found = await cursor.to_list(None)
        return found[0]["dueAt"] if found else None

    async def erasures(self, *, limit: int) -> list[Erasure]:
        cursor = self._db.erasures.find({}).sort("at", DESCENDING).limit(limit)
        return [Erasure.model_validate(document) for document in await cursor.to_list(None)]

    async def suppression_list(self) -> dict[str, datetime]:
        cursor = self._db.suppressions.find({})
        return {document["_id"]: document["at"] for document in await cursor.to_list(None)}

    async def identity_owners(self, *, after: str | None, limit: int) -> list[tuple[str, str]]:
        cursor = self._db.identities.find({"_id": {"$gt": after or ""}}, {"profileId": 1}).sort("_id", ASCENDING)
        return [(document["_id"], document["profileId"]) for document in await cursor.limit(limit).to_list(None)]

    async def feed_position(self) -> str | None:
        # The stream's position as opened now (the post-batch resume token its first, empty batch
        # gave): a follower started over after an error resumes from it rather than from the moment
        # it reopens. Not a getMore after it: a change committed meanwhile would be the batch, and the
        # token would point past it.
        async with await self._db.segment_events.watch(_INSERTS) as stream:
            token = stream.resume_token
        return json_util.dumps(token) if token is not None else None

    async def old_segment_changes(
        self, *, before: datetime, after: tuple[datetime, str] | None, limit: int
    ) -> list[SegmentEvent]:
        selector: dict[str, Any] = {"at": {"$lt": before}}
        if after is not None:  # one range of the (at, _id) index, the rest of `after`'s instant filtered
            selector["at"]["$gte"] = after[0]
            selector["$or"] = [{"at": {"$gt": after[0]}}, {"_id": {"$gt": after[1]}}]
        cursor = self._db.segment_events.find(selector).sort([("at", ASCENDING), ("_id", ASCENDING)]).limit(limit)
        return [SegmentEvent.model_validate(document) for document in await cursor.to_list(None)]

    async def delete_segment_events(self, event_ids: Collection[str]) -> int:
        if not event_ids:
            return 0
        deleted = await self._db.segment_events.delete_many({"_id": {"$in": list(event_ids)}})
        return int(deleted.deleted_count)

    async def forget_segment_events(self, *, now: datetime) -> int:
        forgotten = await self._db.segment_events.delete_many({"forgetAt": {"$lte": now}})
        return int(forgotten.deleted_count)

    async def wipe_owed(self) -> bool:
        return False  # see wipe_deleted

    async def wipe_deleted(self) -> bool:
        """Nothing the driver can ask for: the server's files, journal and oplog are the operator's."""
        return True

    async def read_meta(self, key: str) -> str | None:
        found = await self._db.meta.find_one({"_id": key})
        return str(found["value"]) if found else None

    async def write_meta(self, key: str, value: str) -> None:
        await self._db.meta.replace_one({"_id": key}, {"_id": key, "value": value}, upsert=True)

    async def take_lease(self, name: str, holder: str, *, now: datetime, until: datetime) -> bool:
        free = {"_id": name, "$or": [{"holder": holder}, {"until": {"$lte": now}}]}
        try:  # held by another and not over: the upsert's insert meets the held lease's _id
            await self._db.leases.update_one(free, {"$set": {"holder": holder, "until": until}}, upsert=True)
        except DuplicateKeyError:
            return False
        return True

    async def end_lease(self, name: str, holder: str) -> None:
        await self._db.leases.delete_one({"_id": name, "holder": holder})

    async def setdefault_meta(self, key: str, value: str) -> str:
        # Another upsert of the same key that inserted it first fails this one: theirs is kept.
        with suppress(DuplicateKeyError):
            await self._db.meta.update_one({"_id": key}, {"$setOnInsert": {"value": value}}, upsert=True)
        found = await self._db.meta.find_one({"_id": key})
        return str(found["value"])

    async def merges_of(self, profile_id: str) -> list[MergeRecord]:
        return await merges_of(self._db, profile_id)

    async def refusals_of(self, profile_id: str) -> list[MergeRefusal]:
        return await refusals_of(self._db, profile_id)

    # -- one read for the same question about many parents (GraphQL loaders) ------------------------
    async def get_segments(self, segment_ids: Collection[str]) -> dict[str, Segment]:
        if not segment_ids:
            return {}
        cursor = self._db.segments.find({"_id": {"$in": list(dict.fromkeys(segment_ids))}})
        return {document["_id"]: Segment.model_validate(document) for document in await cursor.to_list(None)}

    async def merges_of_profiles(self, profile_ids: Collection[str]) -> dict[str, list[MergeRecord]]:
        found: dict[str, list[MergeRecord]] = {profile_id: [] for profile_id in profile_ids}
        if not found:
            return found
        ids = list(found)
        selector = {"$or": [{"survivorId": {"$in": ids}}, {"mergedIds": {"$in": ids}}]}
        cursor = self._db.merges.find(selector).sort([("at", ASCENDING), ("_id", ASCENDING)])
        for document in await cursor.to_list(None):  # oldest first, so each profile's list is too
            record = MergeRecord.from_document(document)
            for profile_id in dict.fromkeys([record.survivor_id, *record.merged_ids]):
                if profile_id in found:
                    found[profile_id].append(record)
        return found

    async def refusals_of_profiles(self, profile_ids: Collection[str]) -> dict[str, list[MergeRefusal]]:
        found: dict[str, list[MergeRefusal]] = {profile_id: [] for profile_id in profile_ids}
        if not found:
            return found
        cursor = self._db.merge_refusals.find({"profileIds": {"$in": list(found)}}).sort(
            [("at", ASCENDING), ("_id", ASCENDING)]
        )
        for document in await cursor.to_list(None):
            refusal = MergeRefusal.model_validate(document)
            for profile_id in dict.fromkeys(refusal.profile_ids):
                if profile_id in found:
                    found[profile_id].append(refusal)
        return found

    async def member_counts(self, segment_ids: Collection[str]) -> dict[str, int]:
        found = dict.fromkeys(segment_ids, 0)
        if not found:
            return found
        wanted = {"$in": list(found)}
        pipeline: list[dict[str, Any]] = [
            {"$match": {"segments": wanted, "mergedInto": None}},
            {"$project": {"segments": 1}},
            {"$unwind": "$segments"},
            {"$match": {"segments": wanted}},
            {"$group": {"_id": {"profile": "$_id", "segment": "$segments"}}},  # a profile counts once
            {"$group": {"_id": "$_id.segment", "count": {"$sum": 1}}},
        ]
        for document in await (await self._db.profiles.aggregate(pipeline)).to_list(None):
            found[document["_id"]] = int(document["count"])
        return found

    async def segment_entries(self, profile_ids: Collection[str]) -> dict[str, dict[str, datetime]]:
        found: dict[str, dict[str, datetime]] = {profile_id: {} for profile_id in profile_ids}
        if not found:
            return found
        pipeline: list[dict[str, Any]] = [
            {"$match": {"profileId": {"$in": list(found)}, "change": MembershipChange.ENTERED.value}},
            {"$group": {"_id": {"profile": "$profileId", "segment": "$segmentId"}, "at": {"$max": "$at"}}},
        ]
        for document in await (await self._db.segment_events.aggregate(pipeline)).to_list(None):
            found[document["_id"]["profile"]][document["_id"]["segment"]] = utc_ms(document["at"])
        return found

    async def members_of_segments(
        self,
        segment_ids: Collection[str],
        *,
        after: str | None,
        limit: int,
        before: str | None = None,
        from_end: bool = False,
    ) -> dict[str, list[Profile]]:
        # One page per segment (an index range each, cut at `limit`), joined with $unionWith: one round trip.
        found: dict[str, list[Profile]] = {segment_id: [] for segment_id in segment_ids}
        pages: list[list[dict[str, Any]]] = []
        for segment_id in found:
            selector = _id_range(profile_query(ProfileFilter(segment=segment_id)), after, before)
            pages.append(
                [
                    {"$match": selector},
                    {"$sort": {"_id": -1 if from_end else 1}},
                    {"$limit": limit},
                    {"$addFields": {_PAGE: segment_id}},
                ]
            )
        for document in await self._union("profiles", pages):
            found[document.pop(_PAGE)].append(Profile.from_document(document))
        return {segment_id: members[::-1] for segment_id, members in found.items()} if from_end else found

    async def interactions_of_profiles(
        self,
        profile_ids: Collection[str],
        *,
        before: InteractionPosition | None,
        where: InteractionFilter,
        limit: int,
        after: InteractionPosition | None = None,
        from_end: bool = False,
    ) -> dict[str, list[Interaction]]:
        # `list_interactions`'s pipeline for each profile, joined with $unionWith: one round trip.
        found: dict[str, list[Interaction]] = {profile_id: [] for profile_id in profile_ids}
        pages = [
            [
                *_history_page(profile_id, before=before, after=after, where=where, limit=limit, from_end=from_end),
                {"$addFields": {_PAGE: profile_id}},
            ]
            for profile_id in found
        ]
        for document in await self._union("interactions", pages):
            found[document.pop(_PAGE)].append(Interaction.model_validate(document))
        return {profile_id: history[::-1] for profile_id, history in found.items()} if from_end else found

    async def _union(self, collection: str, pages: list[list[dict[str, Any]]]) -> list[dict[str, Any]]:
        """The documents of every pipeline in `pages` over `collection`, in order, by one aggregation
        per _PAGES_PER_AGGREGATION pipelines (each keeps its own index use, sort and limit)."""
        found: list[dict[str, Any]] = []
        for start in range(0, len(pages), _PAGES_PER_AGGREGATION):
            first, *rest = pages[start : start + _PAGES_PER_AGGREGATION]
            pipeline = first + [{"$unionWith": {"coll": collection, "pipeline": page}} for page in rest]
            found += await (await self._db[collection].aggregate(pipeline)).to_list(None)
        return found


def _id_range(selector: dict[str, Any], after: str | None, before: str | None) -> dict[str, Any]:
    """`selector` within ids strictly after `after` and strictly before `before` (None: unbounded)."""
    bounds = {operator: value for operator, value in (("$gt", after), ("$lt", before)) if value is not None}
    return {"$and": [selector, {"_id": bounds}]} if bounds else selector


def _history_filter(where: InteractionFilter, *, prefix: str = "") -> dict[str, Any]:
    """The match of an interaction filter on items (under `prefix` when not unwound to the root)."""
    item_match: dict[str, Any] = {}
    if where.types:
        item_match[f"{prefix}type"] = {"$in": sorted(where.types)}
    if where.channels:
        item_match[f"{prefix}channel"] = {"$in": sorted(where.channels)}
    return item_match


def _history_page(
    profile_id: str,
    *,
    before: InteractionPosition | None,
    after: InteractionPosition | None,
    where: InteractionFilter,
    limit: int,
    from_end: bool,
) -> list[dict[str, Any]]:
    """The pipeline of one page of a profile's history: its buckets, their items, the page's filters,
    the sort and the limit. Newest first; with `from_end` oldest first (the oldest of the range: the
    caller turns them round)."""
    bucket_match: dict[str, Any] = {"profileId": profile_id}
    item_match: dict[str, Any] = {}
    bounds = []
    if before is not None:
        bucket_match["minTs"] = {"$lte": before.timestamp}
        bounds.append(
            {
                "$or": [
                    {"timestamp": {"$lt": before.timestamp}},
                    {"timestamp": before.timestamp, "messageId": {"$lt": before.message_id}},
                ]
            }
        )
    if after is not None:
        bucket_match["maxTs"] = {"$gte": after.timestamp}
        bounds.append(
            {
                "$or": [
                    {"timestamp": {"$gt": after.timestamp}},
                    {"timestamp": after.timestamp, "messageId": {"$gt": after.message_id}},
                ]
            }
        )
    if bounds:
        item_match["$and"] = bounds
    item_match |= _history_filter(where)
    pipeline: list[dict[str, Any]] = [
        {"$match": bucket_match},
        {"$unwind": "$items"},
        {"$replaceRoot": {"newRoot": "$items"}},
    ]
    if item_match:
        pipeline.append({"$match": item_match})
    order = 1 if from_end else -1
    return [*pipeline, {"$sort": {"timestamp": order, "messageId": order}}, {"$limit": limit}]


def _as_it_is(value: Any) -> Any:
    """MongoDB's documents hold values as Python has them (BSON dates for datetimes)."""
    return value
