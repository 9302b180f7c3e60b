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
list holds it. An event's change reports what its push left out of a full list (`apply_change`'s
`pushed_out`, handed on in ProfileWrite.pushed_out by a batch), and those get their rows. A write that
replaces a stored list whole (a merge, an unmerge, a profile merged away) copies the list as stored
into the table first (`copy_recent`). Once a unit of work has moved a profile's rows (a merge, an
unmerge: each copies the lists first), the table holds its whole history, and its stored list is not
copied again: after a merge moved the merged-away profile's rows to the survivor, copying its list
again would have given them back to it.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Callable, Collection, Iterable
from typing import Any

from app.domain.clock import to_iso
from app.store.documents import dumps

_COLUMNS = "profile_id, ts, message_id, type, channel, doc"  # the interactions table's, in its order
_TABLE_ROWS = f"SELECT {_COLUMNS} FROM interactions"
# Each live profile's recent entries, as rows of the interactions table.
_RECENT_ROWS = """SELECT p.id, r.value ->> '$.timestamp', r.value ->> '$.messageId', r.value ->> '$.type',
        r.value ->> '$.channel', r.value
    FROM profiles p, json_each(p.doc, '$.recent') r
    WHERE p.merged_into IS NULL"""

# A recent entry `r` of profile `p` that the table lacks.
NOT_IN_TABLE = """NOT EXISTS (SELECT 1 FROM interactions kept WHERE kept.profile_id = p.id
    AND kept.ts = r.value ->> '$.timestamp' AND kept.message_id = r.value ->> '$.messageId')"""

# Every interaction of every live profile, once (a SELECT: also read from a backup made before the view).
HISTORY = f"{_TABLE_ROWS} UNION ALL {_RECENT_ROWS} AND {NOT_IN_TABLE}"

Chunks = Callable[[list[str]], list[list[str]]]  # ids split into statements (transaction.id_chunks)

# Reads name the view; each one's `profile_id = ?` reaches both of its parts (an index search in each).
# Created if missing: a new definition would need a DROP VIEW first, and a new STORE_FORMAT.
STATEMENTS = (f"CREATE VIEW IF NOT EXISTS history ({_COLUMNS}) AS {HISTORY}",)

_INTO = f"INSERT OR IGNORE INTO interactions ({_COLUMNS})"
INSERT = f"{_INTO} VALUES (?, ?, ?, ?, ?, ?)"


def row(profile_id: str, interaction: dict[str, Any]) -> tuple[str, str, str, str, str, str]:
    """The table's row of an interaction, in the store's form or not (its time a datetime or text)."""
    ts, message_id = row_key(interaction)
    return profile_id, ts, message_id, interaction["type"], interaction["channel"], dumps(interaction)


_COPY = f"{_INTO} {_RECENT_ROWS} AND p.id IN ({{marks}})"


def copy_recent(db: sqlite3.Connection, profile_ids: list[str]) -> None:
    """The stored recent lists of these profiles (the live ones) copied into the table: a write may
    now take entries out of them. At most IDS_PER_QUERY ids."""
    if profile_ids:
        db.execute(_COPY.format(marks=",".join("?" * len(profile_ids))), profile_ids)


def row_key(interaction: dict[str, Any]) -> tuple[str, str]:
    """An interaction's (time, messageId), its time as the table's `ts`."""
    return _text(interaction["timestamp"]), interaction["messageId"]


def _text(moment: Any) -> str:
    return moment if isinstance(moment, str) else to_iso(moment)


class RecentLists:
    """What one unit of work knows of the recent lists: the profiles whose rows it moved (the table
    holds their whole history), and the lists it wrote (an interaction one of them holds needs no row)."""

    def __init__(self) -> None:
        self._moved: set[str] = set()
        self._lists: dict[str, list[dict[str, Any]]] = {}  # profile id → the recent list it was written with

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
            self._lists[document["_id"]] = document.get("recent") or []

    def holds(self, profile_id: str, interaction: dict[str, Any]) -> bool:
        """Whether the list this unit wrote for the profile holds the interaction. A list is sorted
        newest first (by time, then messageId: RECENT_ORDER), and an event's interaction is at its
        head mostly: it is looked for from there, and not past where it would be. A list out of that
        order can only give it a row it did not need (a read sees it once)."""
        key = row_key(interaction)
        for entry in self._lists.get(profile_id, ()):
            found = row_key(entry)
            if found == key:
                return True
            if found < key:
                return False
        return False
