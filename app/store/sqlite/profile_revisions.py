"""A revision number for every stored profile, new at each write of its document, so that a read can
tell from a few bytes whether the profile it decoded before is still the one stored.

A profile's document is 2-10 KB, past an SQLite page: reading it walks overflow pages, and comparing
it with the text a kept profile was decoded from touches it all again. A list whose nested fields ask
for 500 profiles spent more on that than on the rest of its answer. With this table a read asks for
each document only when its revision differs from the kept profile's (decoded_profiles.py).

Triggers keep the table, whatever code writes the profiles and whichever process (as segment_feed's
do): a profile written anew gets its row replaced, and AUTOINCREMENT gives the new row a number never
used before in this store, so a revision names one document for good, even across an erasure and
any later profile of the same id. An erased profile's row goes with it.
"""

from __future__ import annotations

import sqlite3

from app.store.sqlite import backfill

STATEMENTS = (
    """CREATE TABLE IF NOT EXISTS profile_revisions (
        revision INTEGER PRIMARY KEY AUTOINCREMENT, profile_id TEXT NOT NULL UNIQUE
    )""",
    """CREATE TRIGGER IF NOT EXISTS profile_revision_on_insert AFTER INSERT ON profiles
    BEGIN INSERT OR REPLACE INTO profile_revisions (profile_id) VALUES (NEW.id); END""",
    """CREATE TRIGGER IF NOT EXISTS profile_revision_on_update AFTER UPDATE OF doc ON profiles
    BEGIN INSERT OR REPLACE INTO profile_revisions (profile_id) VALUES (NEW.id); END""",
    """CREATE TRIGGER IF NOT EXISTS profile_revision_on_delete AFTER DELETE ON profiles
    BEGIN DELETE FROM profile_revisions WHERE profile_id = OLD.id; END""",
)

FILLED_MARK = "profile_revisions_filled"

# One profile's document with its revision (bound: the id).
DOCUMENT = (
    "SELECT p.doc, r.revision FROM profiles p LEFT JOIN profile_revisions r ON r.profile_id = p.id WHERE p.id = ?"
)


def fill(db: sqlite3.Connection) -> int:
    """Give a revision to each profile a store held before it had them (once). Returns how many."""

    def number(db: sqlite3.Connection) -> int:
        return db.execute(
            "INSERT INTO profile_revisions (profile_id) SELECT id FROM profiles "
            "WHERE id NOT IN (SELECT profile_id FROM profile_revisions)"
        ).rowcount

    return backfill.once(db, FILLED_MARK, number)


def documents_unless_kept(count: int) -> str:
    """The query for `count` profiles, bound as (id, kept revision or None) pairs: for each, its id,
    its revision (None: not stored, or stored before revisions) and its document, None where the
    revision is the kept one (then the profile's row is not even looked up)."""
    asked = ",".join("(?, ?)" for _ in range(count))
    return (
        f"WITH asked (id, revision) AS (VALUES {asked}) "
        "SELECT a.id, r.revision, CASE WHEN r.revision = a.revision THEN NULL "
        "ELSE (SELECT doc FROM profiles WHERE id = a.id) END "
        "FROM asked a LEFT JOIN profile_revisions r ON r.profile_id = a.id"
    )
