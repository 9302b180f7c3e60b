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

A row is the values `match_view` reads, in one JSON array (`row`): no field names, no dates of
writing, 246 bytes a profile on the identity bench against 527 as a projected document, decoded
in 4.8-5.1 us instead of 8.4-8.7 (`view`). A document whose values are of another shape keeps its
projected fields as an object, which `view` reads through `match_view` as before.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterable, Sequence
from datetime import date
from typing import Any

from app.domain.matching.index import MATCH_VIEW_FIELDS, OTHER_SHAPE, MatchView, match_view, stored_match_values
from app.store.documents import dumps, loads
from app.store.sqlite import backfill

# meta key: the rows were built, as arrays, for the profiles a store already held (before it, the
# "matchRows" mark said they were built as projected documents: a store holding those gets arrays).
FILLED_MARK = "matchRowsAsArrays"

STATEMENTS = ("CREATE TABLE IF NOT EXISTS match_rows (profile_id TEXT PRIMARY KEY, doc TEXT NOT NULL) WITHOUT ROWID",)


def keep(db: sqlite3.Connection, documents: Sequence[dict[str, Any]]) -> None:
    """The rows of these profiles as their documents now are (none for a merged-away profile)."""
    if not documents:
        return
    forget(db, [d["_id"] for d in documents if d.get("mergedInto") is not None])
    db.executemany(
        "INSERT OR REPLACE INTO match_rows (profile_id, doc) VALUES (?, ?)",
        [(d["_id"], row(d)) for d in documents if not d.get("mergedInto")],
    )


def row(document: dict[str, Any]) -> str:
    """A live profile's row: [id, keys, given name, surname, birth date, emails, phones, addresses (each
    [street, line2, city, postcode, country])], or its projected fields when a value is of another shape."""
    try:
        profile_id, keys, (first, last, born, emails, phones, addresses) = stored_match_values(document)
    except OTHER_SHAPE:
        return dumps({k: document[k] for k in MATCH_VIEW_FIELDS if k in document})
    return dumps([profile_id, keys, first, last, born, emails, phones, addresses])


def view(text: str) -> MatchView:
    """The match view a row holds."""
    found = loads(text)
    if isinstance(found, dict):
        return match_view(found)
    profile_id, keys, first, last, born, emails, phones, addresses = found
    birth_date = None if born is None else date.fromisoformat(born)
    values = (first, last, birth_date, tuple(emails), tuple(phones), tuple(map(tuple, addresses)))
    return MatchView(profile_id, tuple(keys), values)


def forget(db: sqlite3.Connection, profile_ids: Iterable[str]) -> None:
    """No rows for these profiles (merged away, or erased)."""
    db.executemany("DELETE FROM match_rows WHERE profile_id = ?", [(profile_id,) for profile_id in profile_ids])


def fill(db: sqlite3.Connection) -> int:
    """Build the rows of the profiles a store held before it had them (once). Returns how many."""
    return backfill.live_documents_once(db, FILLED_MARK, keep)
