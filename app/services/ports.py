"""The storage interface the services depend on. Both backends (app/store/mongo, app/store/sqlite)
implement it, and the storage contract tests hold them to the same behaviour.

It speaks the domain: profiles, identities, interactions, processed messages. Writes that must
happen together run inside `run_in_transaction`, whose unit of work may be re-run after a
transient conflict, so it must have no side effects outside the transaction it is given.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable, Collection, Mapping, Sequence
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass
from datetime import datetime
from types import MappingProxyType
from typing import Any, Generic, Protocol, TypeVar

from app.domain.access import ApiKey
from app.domain.identifiers import Identifier
from app.domain.matching.index import MatchView
from app.domain.merge import MergeRecord, MergeRefusal
from app.domain.privacy import ConsentDecision, Erasure
from app.domain.products import CoPurchase, Product
from app.domain.profile import Interaction, Profile
from app.domain.profile_change import ProfileChange
from app.domain.profile_query import InteractionFilter, InteractionPosition, ProfileFilter
from app.domain.segments.conditions import Condition
from app.domain.segments.segment import Segment, SegmentEvent

T = TypeVar("T")


class IdentityTaken(Exception):
    """Another profile claimed the identifier first (its key is the identities primary key)."""

    def __init__(self, key: str) -> None:
        # No owner: MongoDB's duplicate-key error names none, and a second read to find it would
        # be one more round trip in a transaction about to be retried (the callers read owners then).
        super().__init__(f"identifier {key} already belongs to another profile")
        self.key = key


class MessageAlreadyProcessed(Exception):
    def __init__(self, message_id: str) -> None:
        super().__init__(f"message {message_id} was already processed")
        self.message_id = message_id


class VersionConflict(Exception):
    """The profile changed (or vanished) since the caller read the version it expected."""


@dataclass(frozen=True, slots=True)
class Snapshot(Generic[T]):
    """What a unit of work computed on a consistent read-only view of the store (read_snapshot),
    with what the store needs to tell later which of the profile documents it read have been written
    since (`revisions`: profile id → the store's own mark of the document as read)."""

    value: T
    revisions: Mapping[str, object]


class FeedPositionLost(Exception):
    """The feed of membership changes cannot resume from the position given (MongoDB's oplog no longer
    holds it, or the collection was dropped or renamed since): only following from now is left."""


@dataclass(frozen=True, slots=True)
class ProfileWrite:
    """A whole profile document to write, as `Profile.to_document()` gives it (one per profile per
    batch): inserted when `expected_version` is None, else replaced if the stored version is still
    `expected_version` (VersionConflict otherwise). `keys_moved`: its blockingKeys changed;
    `addresses_moved`: its addresses may have changed (what a store derives from them is rewritten);
    `matched_moved`: the fields matching reads may have changed (`index.MATCH_PATHS`)."""

    document: dict[str, Any]
    expected_version: int | None
    keys_moved: bool = True
    addresses_moved: bool = True
    matched_moved: bool = True
    # The document as the store writes it (StoreTransaction.encoded), made where the write was planned;
    # None: encoded when written.
    encoded: Any = None
    # The entries the changes applied to the document left out of its capped recent list (a store that
    # keeps an interaction once, in the list or else beside it, writes those beside it).
    pushed_out: Sequence[dict[str, Any]] = ()


class StoreTransaction(Protocol):
    async def owners_of(self, keys: Sequence[str]) -> dict[str, str]:
        """identity key → profile id, for the keys that are claimed."""

    async def claim_identities(self, profile_id: str, identifiers: Sequence[Identifier], at: datetime) -> None:
        """Point each identifier at `profile_id`; raise IdentityTaken if one is claimed already."""

    async def get_profile(self, profile_id: str) -> Profile | None: ...

    async def profiles_holding_key_prefix(self, prefix: str, *, at_most: int) -> int:
        """How many live profiles hold a blocking key starting with `prefix`, counted up to `at_most`
        (how common a given name is: `blocking.given_name_prefix`)."""

    async def insert_profile(self, profile: Profile) -> None: ...

    async def update_profile(
        self, profile_id: str, change: ProfileChange, *, expected_version: int | None = None
    ) -> None:
        """Apply `change` in one single-document update; VersionConflict if the version moved."""

    async def record_message(self, message_id: str, profile_id: str, expires_at: datetime) -> None:
        """Remember a processed message id; MessageAlreadyProcessed if it is known."""

    async def message_seen(self, message_id: str) -> bool: ...

    async def append_interaction(self, profile_id: str, interaction: dict[str, Any]) -> None:
        """Keep the full history beyond the embedded `recent` list: the interaction of an event whose
        change of the profile this unit wrote already (its push into `recent`), as ingestion does. The
        embedded store writes it only where the list as written no longer holds it."""

    # -- batches: one statement (or one round trip) for many rows --------------------------------
    async def get_profiles(self, profile_ids: Collection[str]) -> dict[str, Profile]:
        """id → profile, for those of `profile_ids` that exist (merged-away ones included)."""

    async def get_profile_documents(self, profile_ids: Collection[str]) -> dict[str, dict[str, Any]]:
        """id → the stored document in this store's own form (see document_form), for those of
        `profile_ids` that exist: what a batch changes with apply_change and writes back with
        write_profiles, without building a profile from it (Profile.for_change reads what a change
        needs from it)."""

    async def document_form(self) -> Callable[[Any], Any]:
        """How a value takes the form of this store's documents, which apply_change compares with
        it and write_profiles takes: as JSON reads it back (the embedded store), or as it is."""

    async def known_messages(self, message_ids: Collection[str]) -> set[str]:
        """Those of `message_ids` recorded as processed (expired or not: until purged, recording
        one again fails, so it counts as a duplicate either way)."""

    async def keys_purged_through(self) -> datetime | None:
        """The latest expiry of an idempotency key the store has purged: a key expiring after it is
        still recorded. None when it has never purged one; now when it cannot say (MongoDB's TTL
        index purges unseen)."""

    async def held_messages(self, interactions: Collection[tuple[str, datetime, str]]) -> set[str]:
        """The message ids of those (profile id, timestamp, message id) the profile's history holds
        already, at a time within REPLAY_TIME_SLACK of the one given (an event replayed after its
        idempotency key was purged, perhaps re-dated by its sender); one read for them all."""

    async def claim_identity_keys(self, claims: Sequence[tuple[Identifier, str]], at: datetime) -> None:
        """Point each identifier at its profile id; IdentityTaken if one is claimed already."""

    async def write_profiles(self, writes: Sequence[ProfileWrite]) -> None:
        """Insert or replace each profile (see ProfileWrite); VersionConflict if one moved."""

    async def encoded(self, writes: Sequence[ProfileWrite]) -> list[ProfileWrite]:
        """`writes` with each document in the form write_profiles stores (ProfileWrite.encoded), which
        the caller no longer changes: a batch planned on a snapshot encodes its documents there, before
        the write lock, which it then holds for the writes alone (the embedded store's JSON text was a
        quarter of a planned batch's writes). A store that writes documents as they are returns them."""

    async def changed_since(self, snapshot: Snapshot[Any]) -> set[str]:
        """Those of the profiles `snapshot` read whose document has been written (or removed) since:
        what a batch computed on it must compute again, under the write lock."""

    async def unchanged(self, profile_ids: Collection[str]) -> None:
        """Documents read with get_profile_documents that the unit of work left as they were read:
        the store may keep them for a later read (the embedded store does). Those handed to
        write_profiles it may keep too: the caller changes neither kind afterwards."""

    async def record_messages(self, records: Sequence[tuple[str, str]], expires_at: datetime) -> None:
        """Remember (message id, profile id) pairs; MessageAlreadyProcessed if one is known."""

    async def append_interactions(self, items: Sequence[tuple[str, dict[str, Any]]]) -> None:
        """`append_interaction` for each (profile id, interaction), in order."""

    # -- merges ------------------------------------------------------------------------------
    async def replace_profile(self, profile: Profile, *, expected_version: int) -> None:
        """Write the whole document; VersionConflict if the stored version is not `expected_version`."""

    async def history(self, profile_id: str) -> list[Interaction]:
        """Every interaction of the profile, in no particular order."""

    async def activity_between(
        self, profile_id: str, windows: Sequence[tuple[datetime, datetime]]
    ) -> list[tuple[datetime, str, str]]:
        """(time, type, channel) of the profile's interactions within any of `windows` (both ends
        included), in no particular order: what a merge reads of the history it does not replay."""

    async def reassign_history(self, from_ids: Sequence[str], to_id: str) -> None: ...

    async def assign_history(
        self, owner_id: str, moves: dict[str, str], rewrites: dict[str, dict[str, Any]]
    ) -> None:
        """Move the interactions of `owner_id` named by message id to the profile each maps to; those
        named in `rewrites` get the fields given there (`identifiers`, `origin`), wherever they go.
        Their idempotency keys recorded under `owner_id` go with them: an erasure deletes a person's
        keys by profile id, and the owner's erasure took the other person's (a replay then counted
        twice) while theirs outlived them."""

    async def identities_of(self, profile_id: str) -> dict[str, datetime]:
        """identity key → when it was claimed, for the identifiers pointing at the profile."""

    async def identity_keys_of(self, profile_ids: Collection[str]) -> set[str]:
        """The keys of the identifiers pointing at any of the profiles: one read for a whole family."""

    async def reassign_identities(self, from_ids: Sequence[str], to_id: str) -> dict[str, str]:
        """Point every identifier of `from_ids` at `to_id`; returns key → previous owner."""

    async def set_identity_owner(self, keys: Sequence[str], owner_id: str) -> None: ...

    async def insert_merge(self, record: MergeRecord) -> None: ...

    async def get_merge(self, merge_id: str) -> MergeRecord | None: ...

    async def replace_merge(self, record: MergeRecord) -> None: ...

    async def merges_of(self, profile_id: str) -> list[MergeRecord]:
        """Merges the profile took part in, as survivor or as merged, oldest first."""

    async def merges_of_all(self, profile_ids: Collection[str]) -> list[MergeRecord]:
        """Merges any of the profiles took part in, each once, oldest first: one read for many."""

    async def record_refusal(self, refusal: MergeRefusal) -> None: ...

    async def refusals_of(self, profile_id: str) -> list[MergeRefusal]:
        """Refusals the profile took part in, oldest first, as this transaction reads them."""

    async def products_of(self, product_ids: Collection[str]) -> dict[str, Product]:
        """The known ones of `product_ids`, as this transaction reads them (a write of them follows)."""

    async def put_products(self, products: Sequence[dict[str, Any]]) -> None:
        """Insert or replace each product document."""

    # -- privacy -------------------------------------------------------------------------------
    async def append_consent(self, decision: ConsentDecision) -> None: ...

    async def consent_decisions(self, profile_id: str) -> list[ConsentDecision]:
        """Every consent decision recorded on the profile, in the order they were recorded."""

    async def assign_consents(
        self, owner_id: str, moves: Mapping[str, str], direct: Mapping[str, str] = MappingProxyType({})
    ) -> None:
        """Move the decisions of `owner_id` made by events (`moves`, by message id) and those made
        directly (`direct`, by decision id) to the profile each maps to; the others stay."""

    async def tombstones_of(self, profile_ids: Collection[str]) -> list[str]:
        """Ids of the profiles merged directly into any of these, in id order: one read for a level of
        a family however large (a customer's thousand sessions)."""

    async def erase(self, profile_ids: Sequence[str]) -> tuple[int, int]:
        """Delete the profiles and everything held about them: identities, interactions, blocking keys,
        processed messages, consent decisions, and merges and refusals they took part in (merge
        records hold snapshots of personal data). Returns (identifiers, interactions) deleted."""

    async def suppress(self, hashes: Sequence[str], at: datetime) -> None: ...

    async def suppressed(self, hashes: Sequence[str]) -> set[str]:
        """Those of `hashes` on the suppression list."""

    async def read_meta(self, key: str) -> str | None:
        """`ProfileStore.read_meta` inside the transaction: what a write decides on (the key erased
        people's identifiers are hashed with) is read where nothing can change it before the commit."""

    async def write_meta(self, key: str, value: str) -> None:
        """`ProfileStore.write_meta` inside the transaction (the match model an erasure rewrites)."""

    async def record_erasure(self, erasure: Erasure) -> None: ...

    # -- segments --------------------------------------------------------------------------------
    async def insert_segment_event(self, event: SegmentEvent) -> None: ...

    async def schedule_check(self, profile_id: str, segment_id: str, due_at: datetime | None) -> None:
        """Re-evaluate the membership at `due_at` (None: no time-based check is needed any more)."""

    async def get_segments(self, segment_ids: Collection[str]) -> dict[str, Segment]:
        """`ProfileStore.get_segments` inside the transaction: a membership decided on a definition is
        written only if the definition is still the one stored."""

    async def segment_memberships(self, profile_ids: Collection[str]) -> dict[str, tuple[int, list[str]]]:
        """id → (version, segments), for those of `profile_ids` that exist: what a membership write
        checks, without reading whole profiles."""

    async def set_segments(self, memberships: Mapping[str, Sequence[str]]) -> None:
        """Set each profile's `segments` (id → segment ids); derived data, so the version stays."""

    async def insert_segment_events(self, events: Sequence[SegmentEvent]) -> None: ...

    async def latest_segment_event_at(self) -> datetime | None:
        """The time of the newest segment event recorded (None: none yet)."""

    async def schedule_checks(self, checks: Sequence[tuple[str, str, datetime | None]]) -> None:
        """`schedule_check` for each (profile id, segment id, due at)."""

    async def clear_upkeep(self, counted: Mapping[str, int]) -> None:
        """Remove each profile's check of every segment if it stands for no more writes than counted
        (profile id → writes): one that a later write added to stays, for that write's upkeep."""


class ProfileStore(Protocol):
    backend: str

    async def ping(self) -> None:
        """Raise if the store cannot serve requests."""

    async def close(self) -> None: ...

    async def run_in_transaction(self, work: Callable[[StoreTransaction], Awaitable[T]]) -> T: ...

    def batch(self) -> AbstractAsyncContextManager[None]:
        """Group transactions that may be made durable together (one commit for the embedded store)."""

    async def run_batch(self, work: Callable[[], Awaitable[T]]) -> T:
        """`work` inside one batch, run where the store writes (the embedded store's writer thread):
        what a whole ingested batch goes through, so that no step of it waits for the server's loop."""

    async def read_snapshot(self, work: Callable[[StoreTransaction], Awaitable[T]]) -> Snapshot[T] | None:
        """`work` on a consistent, read-only view of the store, off its writer (the unit of work's
        reads only: a write fails), so that a large batch computes what it will write while another
        batch holds the write lock; None when the store offers no such view (MongoDB: its writers do
        not wait for one another's computing)."""

    async def get_profile(self, profile_id: str) -> Profile | None: ...

    async def get_profiles(self, profile_ids: Collection[str]) -> dict[str, Profile]:
        """id → profile, for those of `profile_ids` that exist (merged-away ones included): one read."""

    async def message_profiles(self, message_ids: Collection[str]) -> dict[str, str]:
        """message id → the profile its event landed on (as recorded: merged away since, perhaps), for
        those of `message_ids` whose idempotency key is still held: what a DUPLICATE answers."""

    async def find_profile_by_identity(self, key: str) -> Profile | None: ...

    async def list_profiles(
        self,
        query: ProfileFilter,
        *,
        after: str | None,
        limit: int,
        before: str | None = None,
        from_end: bool = False,
    ) -> list[Profile]:
        """Live (not merged-away) profiles ordered by id, strictly after `after` and strictly before
        `before`: the first `limit` of them, or with `from_end` the last `limit` (in id order too)."""

    async def count_profiles(self, query: ProfileFilter | None = None) -> int:
        """How many live profiles `query` matches (all of them without one), counted by the database."""

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
        """A profile's full history, newest first, strictly older than `before` and strictly newer
        than `after`: the newest `limit` of them, or with `from_end` the oldest `limit` (newest first
        too)."""

    async def count_interactions(self, profile_ids: Collection[str], where: InteractionFilter) -> dict[str, int]:
        """For each of `profile_ids`, how many interactions of its full history `where` matches,
        counted by the database: one read for many profiles."""

    async def interactions_since(
        self, profile_ids: Collection[str], since: datetime, where: InteractionFilter
    ) -> dict[str, list[Interaction]]:
        """id → the profile's interactions at or after `since` that `where` matches, in no particular
        order, for those of `profile_ids` that have any: one read for many profiles (segment windows,
        which count only their event types)."""

    async def merges_of(self, profile_id: str) -> list[MergeRecord]: ...

    async def refusals_of(self, profile_id: str) -> list[MergeRefusal]: ...

    async def count_products(self) -> int: ...

    async def get_products(self, product_ids: Sequence[str]) -> list[Product]:
        """The known ones of `product_ids`, in no particular order."""

    async def best_sellers(self, category: str | None, *, limit: int) -> list[Product]:
        """In-stock products (of `category` when given), most `sales` first, then by id."""

    async def set_product_signals(self, signals: dict[str, tuple[int, list[CoPurchase]]]) -> None:
        """Set each product's `sales` and `alsoBought` (id → (sales, links)); every other product's
        are reset, so the table is exactly the one the traits job computed."""

    # -- fuzzy matching: the blocking-key index (Profile.blocking_keys) -------------------------
    async def profiles_sharing_keys(self, keys: Sequence[str], *, max_block: int, limit: int) -> list[MatchView]:
        """At most `limit` live profiles holding any of `keys`, as match views (id, keys and match fields,
        see app/domain/matching/index.py), the first by id (every store the same ones). Keys held by
        more than `max_block` profiles are passed over: a key that common says nothing about
        identity, and would make the query slow."""

    async def profile_ids_sharing_keys(self, keys: Sequence[str], *, max_block: int, limit: int) -> list[str]:
        """The ids of the profiles `profiles_sharing_keys` would read, without reading them (from the
        key index alone; a tombstone holds no keys): a lookup that read most of them already reads the
        others with `match_views`."""

    async def match_views(self, profile_ids: Sequence[str]) -> list[MatchView]:
        """The live ones of `profile_ids` as match views, in no particular order."""

    def blocking_groups(self) -> AsyncIterator[tuple[str, list[str]]]:
        """Every key held by two or more live profiles, with their ids (sorted), in key order."""

    async def key_counts(self, prefix: str) -> dict[str, int]:
        """Every key starting with `prefix` that live profiles hold, with how many hold it: the
        given-name keys' (`blocking.GIVEN_NAME_KEY`) count the profiles holding each given name."""

    async def read_meta(self, key: str) -> str | None: ...

    # -- API keys (hashed secrets) --------------------------------------------------------------
    async def insert_api_key(self, key: ApiKey) -> None: ...

    async def get_api_key(self, key_id: str) -> ApiKey | None: ...

    async def list_api_keys(self) -> list[ApiKey]: ...

    async def revoke_api_key(self, key_id: str, at: datetime) -> bool:
        """Mark the key revoked; False when there is no such key (or it was revoked already)."""

    async def api_keys_version(self) -> int:
        """A number that moves whenever a key is created, revoked or otherwise changed, in the same
        transaction: verified keys a process remembers stay good while it reads the same number."""

    async def write_meta(self, key: str, value: str) -> None: ...

    async def take_lease(self, name: str, holder: str, *, now: datetime, until: datetime) -> bool:
        """Hold `name` until `until` (or renew it, for its holder): False when another holder has it and
        its time has not passed. What one process of several may do at a time (a job every worker's
        schedule starts), held for a bounded time: a holder that died leaves it to the next after that."""

    async def end_lease(self, name: str, holder: str) -> None:
        """Give `name` up, if `holder` still holds it."""

    async def setdefault_meta(self, key: str, value: str) -> str:
        """The value stored under `key`, which is `value` if none was: a value written this way is
        never replaced, whoever wrote first (two processes making the same key at once agree on it)."""

    async def consent_history(self, profile_ids: Sequence[str], *, limit: int | None = None) -> list[ConsentDecision]:
        """Every consent decision recorded on these profiles, newest first; with `limit`, at most the
        newest `limit` of each profile (a caller wanting the newest of several keeps them all)."""

    async def consent_refusals(self) -> list[ConsentDecision]:
        """Every refusal of the store's consent history, of every profile, oldest first (a restore
        carries those still in effect into its backup: a scan)."""

    async def save_segment(self, segment: Segment) -> None:
        """Insert or replace."""

    async def mark_evaluated(self, segment: Segment, *, evaluated_at: datetime) -> bool:
        """Set the stored segment's `evaluated_at` if it is still `segment`'s definition (the same
        `updatedAt` and `revision`); False, changing nothing, when it was deleted or redefined since."""

    async def get_segment(self, segment_id: str) -> Segment | None: ...

    async def list_segments(self) -> list[Segment]: ...

    async def delete_segment(self, segment_id: str) -> None: ...

    async def matching_versions(self, tree: Condition, *, now: datetime) -> dict[str, int]:
        """Live profiles for which `tree` holds at `now`, by a query built from the validated tree: each
        with its version as the query read it, in id order."""

    async def member_ids(self, segment_id: str) -> list[str]:
        """Live profiles whose `segments` list holds the segment."""

    async def member_versions(self, segment_id: str) -> dict[str, int]:
        """`member_ids`, each with its version, in id order."""

    async def count_members(self, segment_id: str) -> int: ...

    async def segment_events(
        self,
        *,
        segment_id: str | None = None,
        profile_id: str | None = None,
        limit: int,
        before: str | None = None,
        profile_ids: Sequence[str] | None = None,
    ) -> list[SegmentEvent]:
        """Membership changes, newest first; `before`: an event's id, only those after it in that order
        (older). InvalidInput (field `before`) when there is no such event. `profile_ids`: those of
        any of them (a merged-away id and its survivor)."""

    async def pending_writes(self, profile_ids: Collection[str]) -> dict[str, int]:
        """profile id → how many writes its check of every segment stands for (none: no check)."""

    async def due_checks(self, now: datetime, *, limit: int) -> list[tuple[str, str]]:
        """(profile id, segment id) of the time-based checks due at `now`, oldest first."""

    async def next_check_at(self) -> datetime | None: ...

    def watch_segment_events(
        self, resume_token: str | None, *, committed_here: asyncio.Event | None = None
    ) -> AsyncIterator[tuple[str, SegmentEvent]]:
        """Membership changes as they commit, with the token to resume after each (MongoDB's change
        stream, the embedded store's committed rows). `committed_here`: set when this process commits
        a change, for a store that polls to look at once (and clear it). FeedPositionLost when
        `resume_token` can no longer be resumed from, or the feed ended for good."""

    async def feed_position(self) -> str | None:
        """The position of the feed now, to follow it from (watch_segment_events): a follower that
        starts over after an error then misses nothing committed meanwhile."""

    async def erasures(self, *, limit: int) -> list[Erasure]:
        """The newest erasure audit records."""

    async def suppression_list(self) -> dict[str, datetime]:
        """Every suppressed identifier's keyed hash, with when it was suppressed (what a restore
        carries into an older backup)."""

    async def identity_owners(self, *, after: str | None, limit: int) -> list[tuple[str, str]]:
        """(identity key, owning profile id) in key order, from the first key past `after`."""

    async def forget_segment_events(self, *, now: datetime) -> int:
        """Delete the segment events whose `forgetAt` has passed (an erased person's exits, kept until
        every process delivered them); how many. The embedded store then owes a wipe (wipe_owed)."""

    async def old_segment_changes(
        self, *, before: datetime, after: tuple[datetime, str] | None, limit: int
    ) -> list[SegmentEvent]:
        """At most `limit` segment changes made before `before`, oldest first (by time, then id), from
        past `after` (a change's time and id; None: from the first)."""

    async def delete_segment_events(self, event_ids: Collection[str]) -> int:
        """Delete these segment changes (those that exist); how many were deleted."""

    async def wipe_deleted(self) -> bool:
        """Leave what was deleted unreadable in the store's own files, not merely unreferenced (after an
        erasure). The embedded store overwrites deleted content and empties its write-ahead log; a
        MongoDB server's files and oplog are its operator's to manage (SECURITY.md). False: it could
        not be done now (another connection held the log), and is still owed."""

    async def wipe_owed(self) -> bool:
        """Whether an erasure was committed whose wipe was not done yet: the process stopped before it,
        or it could not be done then. Marked in the erasure's transaction, cleared by a wipe."""

    # -- one read for the same question about many parents (GraphQL loaders, one call per level) ----
    async def get_segments(self, segment_ids: Collection[str]) -> dict[str, Segment]:
        """id → segment, for those of `segment_ids` that exist."""

    async def merges_of_profiles(self, profile_ids: Collection[str]) -> dict[str, list[MergeRecord]]:
        """`merges_of` for each of `profile_ids` (an empty list for one without merges)."""

    async def refusals_of_profiles(self, profile_ids: Collection[str]) -> dict[str, list[MergeRefusal]]:
        """`refusals_of` for each of `profile_ids` (an empty list for one without refusals)."""

    async def member_counts(self, segment_ids: Collection[str]) -> dict[str, int]:
        """`count_members` for each of `segment_ids`."""

    async def segment_entries(self, profile_ids: Collection[str]) -> dict[str, dict[str, datetime]]:
        """For each of `profile_ids`, segment id → when the profile last entered it (its newest ENTERED
        segment event), for every segment it ever entered (an empty mapping for one that entered none)."""

    async def members_of_segments(
        self,
        segment_ids: Collection[str],
        *,
        after: str | None,
        limit: int,
        before: str | None = None,
        from_end: bool = False,
    ) -> dict[str, list[Profile]]:
        """For each of `segment_ids`, what `list_profiles(ProfileFilter(segment=id), after=after,
        limit=limit, before=before, from_end=from_end)` gives: a page of its live members ordered by id."""

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
        """`list_interactions` for each of `profile_ids` (an empty list for one without history)."""
