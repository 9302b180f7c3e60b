"""Merging profiles and undoing it: the audit record, the merged survivor, the tombstones.

A merge record keeps what an unmerge needs: the documents as they were, and which identifiers moved
from which profile. Merged-away profiles become tombstones that keep no personal data, only
`mergedInto`, so old ids keep resolving to the survivor.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from datetime import datetime
from enum import StrEnum
from typing import Any

from pydantic import Field

from app.domain.history_rebuild import MergedHistory
from app.domain.person_fields import MOST_ADDRESSES
from app.domain.privacy import supersedes
from app.domain.profile import Consent, IdentifierRecord, Profile, StoredModel
from app.domain.profile import datetime as stored_datetime
from app.domain.profile_change import provenance_key
from app.domain.reconciliation import ReconciliationRules, reconciled_fields


class MergeStatus(StrEnum):
    MERGED = "MERGED"
    UNMERGED = "UNMERGED"


class MergeRecord(StoredModel):
    id: str = Field(alias="_id")
    survivor_id: str
    merged_ids: list[str]
    at: stored_datetime
    reason: str
    actor: str
    automatic: bool = False
    status: MergeStatus = MergeStatus.MERGED
    unmerged_at: stored_datetime | None = None
    unmerged_by: str | None = None
    # Documents of the survivor and the merged profiles as they were just before the merge.
    snapshots: list[dict[str, Any]] = Field(default_factory=list)
    # identity key → the profile it belonged to before the merge.
    moved_identities: dict[str, str] = Field(default_factory=dict)

    @classmethod
    def from_document(cls, document: dict[str, Any]) -> MergeRecord:
        return cls.model_validate(document)

    def to_document(self) -> dict[str, Any]:
        return self.model_dump(by_alias=True, exclude_none=True)

    def snapshot_of(self, profile_id: str) -> Profile:
        for document in self.snapshots:
            if document["_id"] == profile_id:
                return Profile.from_document(document)
        raise KeyError(profile_id)

    def survivor_version(self) -> int:
        """The survivor's version just before the merge. Each merge moves it, so it orders the merges
        into one profile where their times may fall in the same millisecond."""
        for document in self.snapshots:
            if document["_id"] == self.survivor_id:
                return int(document["version"])
        raise KeyError(self.survivor_id)


def snapshot(profile: Profile) -> dict[str, Any]:
    """A profile as a merge record keeps it: without its recent list, which an unmerge rebuilds from the
    history (history_rebuild.rebuild_behaviour) and which weighed most of the record. Eleven profiles
    with 50 events of 32 KB each made a record of 17.5 MB, past MongoDB's 16 MB: the merge failed."""
    document = profile.to_document()
    document.pop("recent", None)
    return document


def merges_into(records: Iterable[MergeRecord]) -> dict[str, list[MergeRecord]]:
    """survivor id → the merges into it, for `held_only_by`."""
    into: dict[str, list[MergeRecord]] = {}
    for record in records:
        into.setdefault(record.survivor_id, []).append(record)
    return into


def kept_apart(records: Iterable[MergeRecord]) -> set[frozenset[str]]:
    """The pairs of profiles an undone merge separated: the steward who undid it said they are not one
    person, which the fuzzy matcher that may have joined them does not overrule (an identifier they
    come to share is new evidence, and still merges them; so does a steward)."""
    apart: set[frozenset[str]] = set()
    for record in records:
        if record.status is MergeStatus.UNMERGED:
            joined = [record.survivor_id, *record.merged_ids]
            apart.update(frozenset((a, b)) for n, a in enumerate(joined) for b in joined[n + 1 :])
    return apart


def held_only_by(
    record: MergeRecord, belongs: Callable[[str], bool], into: Mapping[str, Sequence[MergeRecord]]
) -> MergeRecord:
    """The record with only the saved documents, and the moved identifiers, that hold nobody's data
    but that of the profiles `belongs` accepts.

    A saved document holds its profile's data and that of every profile merged into it when it was
    saved, at any depth: a survivor saved by a later merge while an earlier one stood holds the
    earlier one's person too, even once that merge is undone. `into` must hold the merges into the
    profiles `belongs` accepts (the others are refused before their merges matter). The rest of the
    record (ids, times, reason, status) is kept: it says what happened, not who the people are.
    """
    kept = {
        document["_id"]
        for document in record.snapshots
        if _held_only_by(document["_id"], int(document["version"]), record.at, belongs, into, depth=0)
    }
    return record.model_copy(
        update={
            "snapshots": [d for d in record.snapshots if d["_id"] in kept],
            "moved_identities": {key: owner for key, owner in record.moved_identities.items() if owner in kept},
        }
    )


MAX_MERGE_DEPTH = 1000


def _held_only_by(
    profile_id: str,
    version: int | None,
    at: datetime,
    belongs: Callable[[str], bool],
    into: Mapping[str, Sequence[MergeRecord]],
    *,
    depth: int,
) -> bool:
    """Whether the document of `profile_id` saved at `version` (None: not known) at `at` held the
    data of accepted profiles only. Where the order of two events is not known for sure (the same
    millisecond, a version no longer kept), the merge counts as standing: the answer errs on refusing."""
    if not belongs(profile_id) or depth > MAX_MERGE_DEPTH:
        return False
    for earlier in into.get(profile_id, ()):
        before = _saved_version(earlier, profile_id)
        if before is not None and version is not None:
            if before >= version:  # made after the document was saved (or is the merge that saved it)
                continue
        elif earlier.at > at:
            continue
        if earlier.unmerged_at is not None and earlier.unmerged_at < at:  # undone before the document was saved
            continue
        for merged_id in earlier.merged_ids:
            merged_version = _saved_version(earlier, merged_id)
            if not _held_only_by(merged_id, merged_version, earlier.at, belongs, into, depth=depth + 1):
                return False
    return True


def _saved_version(record: MergeRecord, profile_id: str) -> int | None:
    for document in record.snapshots:
        if document["_id"] == profile_id:
            return int(document["version"])
    return None


class MergeRefusal(StoredModel):
    """An automatic merge that merge protection refused; the event still landed on one profile."""

    id: str = Field(alias="_id")
    at: stored_datetime
    profile_ids: list[str]
    reason: str
    message_id: str | None = None

    def to_document(self) -> dict[str, Any]:
        return self.model_dump(by_alias=True, exclude_none=True)


def kept_whole(profiles: Sequence[Profile]) -> Profile:
    """Of profiles being merged, the one whose behaviour the merged profile starts from: the one with
    the most events (the first of them on a tie), whose history is then not replayed (MergedHistory)."""
    return max(profiles, key=lambda profile: profile.stats.events_total)


def merged_profile(
    survivor: Profile,
    others: Sequence[Profile],
    history: MergedHistory,
    rules: ReconciliationRules,
    *,
    at: datetime,
) -> Profile:
    """The survivor after absorbing `others`: identifiers united, fields reconciled by `rules`,
    consents newest-first per purpose, and everything derived from history as a replay of all of it
    gives (`history`: every profile's, or all but the kept one's, history_rebuild.MergedHistory)."""
    everyone = [survivor, *others]
    identifiers: dict[str, IdentifierRecord] = {}
    for profile in everyone:
        for record in profile.identifiers:
            identifiers.setdefault(f"{record.type}:{record.value}", record)
    consents: dict[str, Consent] = {}
    for profile in everyone:
        for purpose, consent in profile.consents.items():
            if supersedes(consent.at, consent.granted, consents.get(purpose)):
                consents[purpose] = consent
    preferences: dict[str, Any] = {}
    for profile in reversed(everyone):
        preferences.update(profile.qualitative.preferences)

    document = survivor.to_document()
    for path in ("traits", "fieldTimes", "fieldSources", "addresses"):
        document.pop(path, None)
    for path, decision in reconciled_fields(everyone, rules).items():
        head, _, tail = path.partition(".")
        if tail:
            document.setdefault(head, {})[tail] = decision.value
        elif path == "addresses" and isinstance(decision.value, list):
            # As many as one profile may hold: the union of a hundred profiles' held a hundred times it.
            document[head] = decision.value[:MOST_ADDRESSES]
        else:
            document[head] = decision.value
        document.setdefault("fieldTimes", {})[provenance_key(path)] = decision.at
        if decision.source:
            document.setdefault("fieldSources", {})[provenance_key(path)] = decision.source
    # Everything in the document comes from validated profiles, and the recent list is replayed
    # below: read as a change reads a stored document (not its recent list, times as they are).
    base = Profile.for_change(document).model_copy(
        update={
            "identifiers": list(identifiers.values()),
            "consents": consents,
            # Memberships change only through re-evaluation, which records each change (and tells
            # subscribers): the survivor keeps its own until then.
            "segments": list(survivor.segments),
            "created_at": min(p.created_at for p in everyone),
            "updated_at": at,
            "version": survivor.version + 1,
        }
    )
    base.qualitative.preferences = preferences
    return history.behaviour(base)


def tombstone(profile: Profile, survivor_id: str, *, at: datetime) -> Profile:
    return Profile(
        _id=profile.id,
        merged_into=survivor_id,
        created_at=profile.created_at,
        updated_at=at,
        version=profile.version + 1,
        segments=profile.segments,  # left by re-evaluation, which records each exit
    )
