"""Profiles the embedded store's reads decoded, kept with the very text they were decoded from.

Decoding a stored profile (pydantic, from its JSON) costs 100-300 µs, reading its row a few: a
frontend reading the same customers again, or a list whose nested fields read hundreds of profiles,
spends its time decoding documents that have not changed. A read still fetches each row; when the
text is the one a kept profile was decoded from, that profile is the answer, so a change made by any
process (a new text) is never missed and nothing depends on version numbers being kept right.

A read of many profiles (`get_profiles`) need not fetch the text at all: each profile kept with the
revision it was stored at (profile_revisions.py) is still the answer while its revision is the
stored one, and only the others' documents are read. Nor need it ask for the revisions while nothing
was committed since they were read: each confirmation of a revision takes a ticket (a number that
only grows, drawn before the statement that reads it), and a read that knows no connection has
committed since ticket T (SQLite's `PRAGMA data_version`, which sees every other connection's
commits, in any process) takes the profiles confirmed after T as they are kept.

Profiles handed out are shared between callers: nothing changes a profile read in place (the
domain's changes build new documents; writes decode their own, in their transaction). Kept within a
memory budget, least recently used first out; a profile the store no longer has (erased, or its row
gone) is dropped when a read finds it missing, and an erasure in this process drops it at once.
"""

from __future__ import annotations

import itertools
import threading
from collections import OrderedDict
from collections.abc import Iterable

from app.domain.profile import Profile

# A decoded profile's objects take 5.9-6.5 times its JSON text (tracemalloc, on the demo data's 10 KB
# profiles and the benchmarks' 1.8 KB ones), and the text is kept too: the budget counts 8 bytes per
# character of text.
OBJECT_BYTES_PER_TEXT_BYTE = 8
DEFAULT_BUDGET_BYTES = 32 * 1024 * 1024


class DecodedProfiles:
    def __init__(self, budget_bytes: int = DEFAULT_BUDGET_BYTES) -> None:
        self.budget_bytes = budget_bytes
        # id -> (the text it was decoded from, the profile, its cost, the revision of that text or None,
        # the ticket of the last read that found that revision stored: 0 for none)
        self._kept: OrderedDict[str, tuple[str, Profile, int, int | None, int]] = OrderedDict()
        self._held = 0
        self._lock = threading.Lock()  # reads decode on the loop and on reader threads
        self._tickets = itertools.count(1)  # next() is atomic: reader threads draw them too
        self.hits = 0
        self.misses = 0

    def ticket(self) -> int:
        """A number greater than every one drawn before: drawn before a statement that reads
        revisions, it dates what the statement found (see `confirmed_since`)."""
        return next(self._tickets)

    def decode(self, profile_id: str, text: str, revision: int | None = None, *, read: int = 0) -> Profile:
        """The profile stored as `text` (at `revision`, when the read knows it, by the read of ticket
        `read`): the kept one when it was decoded from this text."""
        confirmed = read if revision is not None else 0
        with self._lock:
            kept = self._kept.get(profile_id)
            if kept is not None and (kept[0] is text or kept[0] == text):
                if revision is not None:
                    if kept[3] == revision:
                        confirmed = max(confirmed, kept[4])
                    self._kept[profile_id] = (*kept[:3], revision, confirmed)
                self._kept.move_to_end(profile_id)
                self.hits += 1
                return kept[1]
        profile = Profile.from_own_json(text)
        cost = len(text) * OBJECT_BYTES_PER_TEXT_BYTE
        with self._lock:
            self.misses += 1
            self._drop(profile_id)
            if cost <= self.budget_bytes // 8:  # one huge profile never pushes out everything else
                self._kept[profile_id] = (text, profile, cost, revision, confirmed)
                self._held += cost
                while self._held > self.budget_bytes:
                    self._drop(next(iter(self._kept)))
        return profile

    def revision_of(self, profile_id: str) -> int | None:
        """The stored revision the kept profile was decoded at (None: none kept, or not known)."""
        kept = self._kept.get(profile_id)
        return kept[3] if kept is not None else None

    def revisions_of(self, profile_ids: Iterable[str]) -> list[tuple[str, int | None]]:
        """Each id with the stored revision its kept profile was decoded at (None: none kept, or not
        known), as a read asks for them."""
        kept = self._kept
        return [(i, found[3] if (found := kept.get(i)) is not None else None) for i in profile_ids]

    def kept_at(self, stored: Iterable[tuple[str, int | None]], *, read: int = 0) -> dict[str, Profile]:
        """The kept profiles that are the ones stored at the given revisions (as the read of ticket
        `read` found them), by id (one lock for a read's hundreds); the others' documents are to be
        read. An unknown revision (None) is never one, which a profile kept without one would
        otherwise equal."""
        found: dict[str, Profile] = {}
        with self._lock:
            kept = self._kept
            for profile_id, revision in stored:
                entry = kept.get(profile_id)
                if entry is not None and revision is not None and entry[3] == revision:
                    if read > entry[4]:
                        kept[profile_id] = (*entry[:4], read)
                    kept.move_to_end(profile_id)
                    found[profile_id] = entry[1]
            self.hits += len(found)
        return found

    def confirmed_since(self, profile_ids: Iterable[str], quiet_from: int) -> dict[str, Profile]:
        """The kept profiles whose revision a read found stored after ticket `quiet_from`, by id: the
        caller knows that nothing was committed since that ticket was drawn, so they are the stored
        ones without asking. The others are to be read."""
        found: dict[str, Profile] = {}
        with self._lock:
            kept = self._kept
            for profile_id in profile_ids:
                entry = kept.get(profile_id)
                if entry is not None and entry[4] > quiet_from:
                    kept.move_to_end(profile_id)
                    found[profile_id] = entry[1]
            self.hits += len(found)
        return found

    def forget(self, profile_ids: Iterable[str]) -> None:
        with self._lock:
            for profile_id in profile_ids:
                self._drop(profile_id)

    def _drop(self, profile_id: str) -> None:
        kept = self._kept.pop(profile_id, None)
        if kept is not None:
            self._held -= kept[2]

    def __len__(self) -> int:
        return len(self._kept)
