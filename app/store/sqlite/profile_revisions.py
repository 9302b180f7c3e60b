"""A revision number for every stored profile, new at each write of its document, so that a read can
tell from a few bytes whether the profile it decoded before is still the one stored.

A profile's document is 2-10 KB, past an SQLite page: reading it walks overflow pages, and comparing
it with the text a kept profile was decoded from touches it all again. A list whose nested fields ask
for 500 profiles spent more on that than on the rest of its answer. With a revision, a read asks for
each document only when its revision differs from the kept profile's (decoded_profiles.py).

The revision is a column of the profile's own row, placed before the document (read without walking
it), and every statement that writes a document draws a new one with SQLite's `random()`: 64 random
bits, so a revision names one document for good (two writes of a profile draw the same number with
odds of 1 in 2^64), across an erasure and any later profile of the same id, without a counter
shared by the worker processes. Kept in a table of their own by triggers (the first version), the
revisions cost more than the rest of the profiles' writes (1,000 updates: 32 ms against 15, their
pages scattered over the file). Triggers only guard now: a write of a document without a new
revision is refused, so no statement added later can leave a read serving what it replaced.

A store made before the column gets it at the end of the row, empty: its profiles' documents are
read in full until they are next written, as before revisions.
"""

from __future__ import annotations

import sqlite3

from app.store.sqlite import backfill

# The SQL expression every statement that writes a profile's document sets `revision` to.
NEW = "random()"

_GUARDS = (
    """CREATE TRIGGER IF NOT EXISTS profile_inserted_with_revision BEFORE INSERT ON profiles
    WHEN NEW.revision IS NULL
    BEGIN SELECT RAISE(ABORT, 'a profile is stored with a revision (profile_revisions.NEW)'); END""",
    """CREATE TRIGGER IF NOT EXISTS profile_written_with_new_revision BEFORE UPDATE OF doc ON profiles
    WHEN NEW.revision IS OLD.revision
    BEGIN SELECT RAISE(ABORT, 'a profile''s document is written with a new revision (profile_revisions.NEW)'); END""",
)
# The first version: a table kept by triggers.
_RETIRED = (
    "DROP TRIGGER IF EXISTS profile_revision_on_insert",
    "DROP TRIGGER IF EXISTS profile_revision_on_update",
    "DROP TRIGGER IF EXISTS profile_revision_on_delete",
    "DROP TABLE IF EXISTS profile_revisions",
    "DELETE FROM meta WHERE key = 'profile_revisions_filled'",
)

# One profile's document with its revision (bound: the id).
DOCUMENT = "SELECT doc, revision FROM profiles WHERE id = ?"


def prepare(db: sqlite3.Connection) -> bool:
    """Give an older store the column and retire the revisions table, in one write transaction (two
    workers may open the store at once); then the guards. Returns whether the column was added."""

    def add(db: sqlite3.Connection) -> bool:
        columns = {row[1] for row in db.execute("PRAGMA table_info(profiles)")}
        added = "revision" not in columns
        if added:
            db.execute("ALTER TABLE profiles ADD COLUMN revision INTEGER")
        for statement in (*_RETIRED, *_GUARDS):
            db.execute(statement)
        return added

    return backfill.in_one_transaction(db, add)


def documents_unless_kept(count: int) -> str:
    """The query for `count` profiles, bound as (id, kept revision or None) pairs: for each, its id,
    its revision (None: not stored, or stored before revisions) and its document, None where the
    revision is the kept one (then the document is not read)."""
    asked = ",".join("(?, ?)" for _ in range(count))
    return (
        f"WITH asked (id, revision) AS (VALUES {asked}) "
        "SELECT a.id, p.revision, CASE WHEN p.revision = a.revision THEN NULL ELSE p.doc END "
        "FROM asked a LEFT JOIN profiles p ON p.id = a.id"
    )
