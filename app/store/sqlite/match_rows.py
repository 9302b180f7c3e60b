"""What fuzzy matching reads of each live profile, one narrow row beside it.

One profile's candidates read every look-alike sharing a key with it, and its links' look-alikes:
hundreds of profiles for a common name. Each was read from its whole document, mostly the recent
history matching never looks at: on the identity bench's 100,000-profile store with the demo
data's documents (12 KB, against the bench's 1 KB records) the 2,000 lookups took p50 6.1 ms and p99
17.8-24.3 ms, against 2.6-3.4 and 7.6-9.8 ms. These rows hold only `MATCH_VIEW_FIELDS` (a few
hundred bytes), so a lookup reads the same few bytes a profile whatever its history.

Every profile write of the embedded store that may move those fields calls `keep` with the document
it wrote, in the same transaction, as it keeps `blocking_keys` and the list filters' rows
(profile_facets.py): a row exists exactly while its profile is live, and holds its match fields as
last written.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterable, Sequence
from typing import Any

from app.domain.matching.index import MATCH_VIEW_FIELDS
from app.store.documents import dumps
from app.store.sqlite import backfill

FILLED_MARK = "matchRows"  # meta key: the rows were built for the profiles a store already held

STATEMENTS = ("CREATE TABLE IF NOT EXISTS match_rows (profile_id TEXT PRIMARY KEY, doc TEXT NOT NULL) WITHOUT ROWID",)


def keep(db: sqlite3.Connection, documents: Sequence[dict[str, Any]]) -> None:
    """The rows of these profiles as their documents now are (none for a merged-away profile)."""
    if not documents:
        return
    forget(db, [d["_id"] for d in documents if d.get("mergedInto") is not None])
    db.executemany(
        "INSERT OR REPLACE INTO match_rows (profile_id, doc) VALUES (?, ?)",
        [
            (d["_id"], dumps({k: d[k] for k in MATCH_VIEW_FIELDS if k in d}))
            for d in documents
            if not d.get("mergedInto")
        ],
    )


def forget(db: sqlite3.Connection, profile_ids: Iterable[str]) -> None:
    """No rows for these profiles (merged away, or erased)."""
    db.executemany("DELETE FROM match_rows WHERE profile_id = ?", [(profile_id,) for profile_id in profile_ids])


def fill(db: sqlite3.Connection) -> int:
    """Build the rows of the profiles a store held before it had them (once). Returns how many."""
    return backfill.live_documents_once(db, FILLED_MARK, keep)
