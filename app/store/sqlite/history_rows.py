"""Where the embedded store keeps a profile's interactions: each once.

A profile's document holds its newest interactions (`recent`, up to RECENT_INTERACTIONS_CAP), and
the `interactions` table held every one of them again: a row in a table ordered by profile, so a
page of its own written for nearly every event of a batch (1,389 of the 3,371 pages a batch of the
serving benchmark's 1,000 events wrote). A row is written now only for an interaction its profile's
recent list does not hold: one that fell out of the list, or arrived too late to enter it.

Every read of a history goes through the `history` view (HISTORY): the table's rows, and each live
profile's recent entries that the table does not hold. The two may overlap (a store written before
this holds every interaction in the table; a list copied there before a merge stays in the profile).

One rule keeps that whole: an interaction is missing from the table only while its profile's recent
list holds it. So before a write that may take entries out of a stored list (the list at its cap,
replaced whole by a merge or an unmerge, the profile merged away) the list as stored is copied into
the table first (`copy_recent`). Once a unit of work has moved a profile's rows (a merge, an unmerge:
each copies the lists first), the table holds its whole history, and its stored list is not copied
again: after a merge moved the merged-away profile's rows to the survivor, copying its list again
would have given them back to it.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Callable, Collection, Iterable
from typing import Any

from app.domain.clock import to_iso
from app.domain.profile import RECENT_INTERACTIONS_CAP

# Each live profile's recent entries, as rows of the interactions table.
_RECENT_ROWS = """SELECT p.id, r.value ->> '$.timestamp', r.value ->> '$.messageId', r.value ->> '$.type',
        r.value ->> '$.channel', r.value
    FROM profiles p, json_each(p.doc, '$.recent') r
    WHERE p.merged_into IS NULL"""

# Every interaction of every live profile, once (a SELECT: also read from a backup made before the view).
HISTORY = f"""SELECT profile_id, ts, message_id, type, channel, doc FROM interactions
    UNION ALL
    {_RECENT_ROWS} AND NOT EXISTS (SELECT 1 FROM interactions i
        WHERE i.profile_id = p.id AND i.ts = r.value ->> '$.timestamp' AND i.message_id = r.value ->> '$.messageId')"""

Chunks = Callable[[list[str]], list[list[str]]]  # ids split into statements (transaction.id_chunks)

# Reads name the view; each one's `profile_id = ?` reaches both of its parts (an index search in each).
# Created if missing: a new definition would need a DROP VIEW first, and a new STORE_FORMAT.
STATEMENTS = (f"CREATE VIEW IF NOT EXISTS history (profile_id, ts, message_id, type, channel, doc) AS {HISTORY}",)

_COPY = (
    "INSERT OR IGNORE INTO interactions (profile_id, ts, message_id, type, channel, doc) "
    f"{_RECENT_ROWS} AND p.id IN ({{marks}})"
)


def copy_recent(db: sqlite3.Connection, profile_ids: list[str]) -> None:
    """The stored recent lists of these profiles (the live ones) copied into the table: a write may
    now take entries out of them. At most IDS_PER_QUERY ids."""
    if profile_ids:
        db.execute(_COPY.format(marks=",".join("?" * len(profile_ids))), profile_ids)


def at_cap(document: dict[str, Any]) -> bool:
    """Whether writing `document` may have pushed entries out of its recent list: it is full."""
    return len(document.get("recent") or ()) >= RECENT_INTERACTIONS_CAP


def recent_keys(document: dict[str, Any]) -> set[tuple[str, str]]:
    """(time, messageId) of each entry of the document's recent list, its time as the table's `ts`."""
    return {(_text(entry["timestamp"]), entry["messageId"]) for entry in document.get("recent") or ()}


def row_key(interaction: dict[str, Any]) -> tuple[str, str]:
    """An interaction's (time, messageId), as `recent_keys` gives them."""
    return _text(interaction["timestamp"]), interaction["messageId"]


def _text(moment: Any) -> str:
    return moment if isinstance(moment, str) else to_iso(moment)


class RecentLists:
    """What one unit of work knows of the recent lists: the profiles whose rows it moved (the table
    holds their whole history), and the entries of the lists it wrote (an interaction among them
    needs no row)."""

    def __init__(self) -> None:
        self._moved: set[str] = set()
        self._written: dict[str, set[tuple[str, str]]] = {}

    def copy(self, db: sqlite3.Connection, profile_ids: Iterable[str], chunks: Chunks) -> None:
        """`copy_recent` for those of `profile_ids` whose rows this unit has not moved."""
        for chunk in chunks([profile_id for profile_id in profile_ids if profile_id not in self._moved]):
            copy_recent(db, chunk)

    def moving(self, db: sqlite3.Connection, profile_ids: Iterable[str], chunks: Chunks) -> None:
        """Before this unit moves these profiles' rows: their lists copied, for the last time in it."""
        ids = list(profile_ids)
        self.copy(db, ids, chunks)
        self._moved.update(ids)

    def wrote(self, documents: Collection[dict[str, Any]]) -> None:
        for document in documents:
            self._written[document["_id"]] = recent_keys(document)

    def holds(self, profile_id: str, interaction: dict[str, Any]) -> bool:
        """Whether the list this unit wrote for the profile holds the interaction."""
        entries = self._written.get(profile_id)
        return entries is not None and row_key(interaction) in entries
