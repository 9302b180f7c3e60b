"""Each profile's row has its pages of the file to itself, so that a profile that grows rewrites its
own page and no other.

A profile's document is ~2 KB when its person is new and grows by ~300 bytes an event (its entry in
the embedded `recent` list). SQLite packs rows as they come, 1.8 of those to a 4 KB page: nearly
every update no longer fit its page, SQLite rebalanced it with its neighbours, and a batch's 900
profile updates wrote ~3,150 pages to the log where one each would do (bench/RESULTS.md#serving).

So each row ends with a `pad` column of zero bytes, sized so that the row's payload just fills the
room a leaf page has for one row, or that room and whole overflow pages (SQLite's file format: a
table leaf page holds at most page size - 35 bytes of a payload, an overflow page page size - 4; a
longer payload keeps a part on the leaf page and the rest on overflow pages). No other row fits
beside it: an update within those pages is rewritten in place. The documents themselves are the
same text: reads, SQL's JSON functions and the decoded caches see nothing of it. The price is the
file: a small profile takes a whole page (the benchmark's store of 100,000 profiles, as built: 442 -> 627 MB).

Rows written before this (`pad` NULL) are packed as before until they are next written.
"""

from __future__ import annotations

import sqlite3

# The rest of the row, at most: the record's header (~9 bytes), `revision` (8) and `version` (at most
# 8) besides the id and `merged_into`, whose lengths are added. A margin too small would put the
# payload a few bytes past the leaf page's room, and SQLite would then keep only ~500 bytes of it
# there: never wrong, only packed again.
MARGIN_BYTES = 40


def page_bytes(connection: sqlite3.Connection) -> int:
    """The page size of the file `connection` opened (SQLite's default is 4,096 bytes)."""
    return int(connection.execute("PRAGMA page_size").fetchone()[0])


def padding(document_bytes: int, profile_id: str, merged_into: str | None, *, page: int) -> int:
    """The zero bytes after a document of `document_bytes` (UTF-8) that make its row end where the
    leaf page's room for one row ends, or where its last overflow page does."""
    room = page - 35 - MARGIN_BYTES - len(profile_id.encode()) - len((merged_into or "").encode())
    return (room - document_bytes) % (page - 4)  # room - the document when it fits, the rest of an overflow page else
