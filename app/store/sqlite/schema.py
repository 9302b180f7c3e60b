"""Tables of the embedded store. They mirror the MongoDB collections: a profile is a JSON document,
identities are keyed by `"<type>:<normalised value>"`, and the history is one row per interaction
that its profile's recent list does not hold, read with those through the `history` view
(history_rows.py; SQLite has no document size limit, so the bucket pattern MongoDB needs buys
nothing here)."""

from __future__ import annotations

import sqlite3

from app.domain.errors import InvalidInput
from app.store.sqlite import backfill, history_rows, match_rows, profile_facets

# The format of the stores this code writes, kept in the file's header (PRAGMA user_version, which
# backups copy): raised with every change an older version would misread or undo (a table, a column,
# a trigger, a one-time repair). A store of a higher format is refused. Before it, an older server
# opened a newer store without a word: it failed every write (the revision guards), or wrote rows that
# the newer one's one-time repairs had already passed (list filters that then found no one).
# 3: an interaction in its profile's recent list has no row of its own (history_rows.py). 4: matching
# reads each live profile's match_rows row, which an older server would leave stale as it wrote.
# 5: a match_rows row is an array of values (match_rows.py), which an older server could not read.
STORE_FORMAT = 5


def refuse_newer(db: sqlite3.Connection, path: object, *, field: str) -> None:
    """InvalidInput when the file was written by a newer version of this server."""
    found = db.execute("PRAGMA user_version").fetchone()[0]
    if found > STORE_FORMAT:
        raise InvalidInput(
            f"{path} was written by a newer version of this server (store format {found}; this one reads "
            f"up to {STORE_FORMAT}): run that version or a later one, or restore a backup this one made",
            field=field,
        )


def mark_format(db: sqlite3.Connection) -> None:
    """The store is of this code's format now (its tables created or migrated)."""
    if db.execute("PRAGMA user_version").fetchone()[0] < STORE_FORMAT:
        db.execute(f"PRAGMA user_version = {STORE_FORMAT}")


WRITE_META = "INSERT INTO meta (key, value) VALUES (?, ?) ON CONFLICT(key) DO UPDATE SET value = excluded.value"

STATEMENTS = (
    # `revision` before `doc`: read without walking the document's overflow pages (profile_revisions.py).
    """CREATE TABLE IF NOT EXISTS profiles (
        id TEXT PRIMARY KEY,
        revision INTEGER NOT NULL,
        doc TEXT NOT NULL,
        version INTEGER NOT NULL,
        merged_into TEXT,
        pad BLOB
    )""",
    # The profiles merged into one (an erasure's walk of the family, an export): a scan of every
    # profile per step before. Partial: only merged-away profiles have a row.
    "CREATE INDEX IF NOT EXISTS profiles_by_survivor ON profiles(merged_into) WHERE merged_into IS NOT NULL",
    """CREATE TABLE IF NOT EXISTS identities (
        key TEXT PRIMARY KEY,
        profile_id TEXT NOT NULL,
        type TEXT NOT NULL,
        created_at TEXT NOT NULL
    ) WITHOUT ROWID""",
    "CREATE INDEX IF NOT EXISTS identities_by_profile ON identities(profile_id, type)",
    # A list filtered on a rare identifier type walks its profiles in id order (profile_filter.py).
    "CREATE INDEX IF NOT EXISTS identities_by_type ON identities(type, profile_id)",
    """CREATE TABLE IF NOT EXISTS interactions (
        profile_id TEXT NOT NULL,
        ts TEXT NOT NULL,
        message_id TEXT NOT NULL,
        type TEXT NOT NULL,
        channel TEXT NOT NULL,
        doc TEXT NOT NULL,
        PRIMARY KEY (profile_id, ts, message_id)
    ) WITHOUT ROWID""",
    """CREATE TABLE IF NOT EXISTS processed_messages (
        message_id TEXT PRIMARY KEY,
        profile_id TEXT NOT NULL,
        expires_at TEXT NOT NULL
    ) WITHOUT ROWID""",
    "CREATE INDEX IF NOT EXISTS processed_messages_by_expiry ON processed_messages(expires_at)",
    "CREATE TABLE IF NOT EXISTS products (id TEXT PRIMARY KEY, doc TEXT NOT NULL)",
    # Recommendations: in-stock best sellers of a category (fields of the JSON document, indexed).
    "CREATE INDEX IF NOT EXISTS products_by_category ON products(json_extract(doc, '$.category'), "
    "json_extract(doc, '$.sales'))",
    # ... and of the whole catalogue, as best_sellers orders them (without it, a recommendation without
    # the personalisation consent sorted every product: 103-130 ms at 100,000 products).
    "CREATE INDEX IF NOT EXISTS products_by_sales ON products(coalesce(json_extract(doc, '$.sales'), 0) DESC, id)",
    "CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL)",
    "CREATE TABLE IF NOT EXISTS merges (id TEXT PRIMARY KEY, doc TEXT NOT NULL)",
    """CREATE TABLE IF NOT EXISTS merge_members (
        profile_id TEXT NOT NULL,
        merge_id TEXT NOT NULL,
        PRIMARY KEY (profile_id, merge_id)
    ) WITHOUT ROWID""",
    "CREATE TABLE IF NOT EXISTS merge_refusals (id TEXT PRIMARY KEY, doc TEXT NOT NULL)",
    """CREATE TABLE IF NOT EXISTS merge_refusal_members (
        profile_id TEXT NOT NULL,
        refusal_id TEXT NOT NULL,
        PRIMARY KEY (profile_id, refusal_id)
    ) WITHOUT ROWID""",
    # Blocking keys of live profiles (Profile.blocking_keys): fuzzy merge candidates are found by key.
    """CREATE TABLE IF NOT EXISTS blocking_keys (
        key TEXT NOT NULL,
        profile_id TEXT NOT NULL,
        PRIMARY KEY (key, profile_id)
    ) WITHOUT ROWID""",
    "CREATE INDEX IF NOT EXISTS blocking_keys_by_profile ON blocking_keys(profile_id)",
    "CREATE TABLE IF NOT EXISTS api_keys (id TEXT PRIMARY KEY, doc TEXT NOT NULL)",  # hashed secrets only
    # Moved by any change to the keys, in its own transaction whatever code makes it: every process
    # reads it per request to know that the verified keys it remembers still hold (app/services/key_cache.py).
    "CREATE TABLE IF NOT EXISTS api_keys_version (id INTEGER PRIMARY KEY CHECK (id = 1), n INTEGER NOT NULL)",
    "INSERT OR IGNORE INTO api_keys_version (id, n) VALUES (1, 0)",
    *(
        f"CREATE TRIGGER IF NOT EXISTS api_keys_version_on_{change.lower()} AFTER {change} ON api_keys "
        "BEGIN UPDATE api_keys_version SET n = n + 1; END"
        for change in ("INSERT", "UPDATE", "DELETE")
    ),
    "CREATE TABLE IF NOT EXISTS consent_log (profile_id TEXT NOT NULL, at TEXT NOT NULL, doc TEXT NOT NULL)",
    "CREATE INDEX IF NOT EXISTS consent_log_by_profile ON consent_log(profile_id, at)",
    # Keyed hashes of erased people's identifier keys (app/domain/privacy.py): never personal data.
    "CREATE TABLE IF NOT EXISTS suppressions (hash TEXT PRIMARY KEY, at TEXT NOT NULL) WITHOUT ROWID",
    "CREATE TABLE IF NOT EXISTS erasures (id TEXT PRIMARY KEY, at TEXT NOT NULL, doc TEXT NOT NULL)",
    "CREATE TABLE IF NOT EXISTS segments (id TEXT PRIMARY KEY, doc TEXT NOT NULL)",
    # Mirrors each profile's `segments` list (kept by every profile write): members by segment, indexed.
    """CREATE TABLE IF NOT EXISTS segment_members (
        segment_id TEXT NOT NULL,
        profile_id TEXT NOT NULL,
        PRIMARY KEY (segment_id, profile_id)
    ) WITHOUT ROWID""",
    "CREATE INDEX IF NOT EXISTS segment_members_by_profile ON segment_members(profile_id)",
    """CREATE TABLE IF NOT EXISTS segment_events (
        id TEXT PRIMARY KEY, segment_id TEXT NOT NULL, profile_id TEXT NOT NULL, at TEXT NOT NULL, doc TEXT NOT NULL
    )""",
    "CREATE INDEX IF NOT EXISTS segment_events_by_segment ON segment_events(segment_id, at)",
    "CREATE INDEX IF NOT EXISTS segment_events_by_profile ON segment_events(profile_id, at)",
    # The whole store's history, newest first (segmentHistory without a filter): read from this end,
    # not every event sorted for each request.
    "CREATE INDEX IF NOT EXISTS segment_events_by_time ON segment_events(at)",
    # The few events to delete at a given time (an erased person's exits): found without a scan.
    """CREATE INDEX IF NOT EXISTS segment_events_to_forget ON segment_events(json_extract(doc, '$.forgetAt'))
    WHERE json_extract(doc, '$.forgetAt') IS NOT NULL""",
    # Every server process follows committed segment events in commit order (segment_feed.py). The
    # events' own rowids are no position: an erasure deleting the newest row lets the next insert reuse
    # its rowid, and VACUUM may renumber them. AUTOINCREMENT never reuses a number; triggers keep the
    # feed beside the events whatever code writes them (stores from before the feed simply start it).
    """CREATE TABLE IF NOT EXISTS segment_feed (
        seq INTEGER PRIMARY KEY AUTOINCREMENT, event_id TEXT NOT NULL UNIQUE
    )""",
    """CREATE TRIGGER IF NOT EXISTS segment_feed_on_insert AFTER INSERT ON segment_events
    BEGIN INSERT OR REPLACE INTO segment_feed (event_id) VALUES (NEW.id); END""",
    """CREATE TRIGGER IF NOT EXISTS segment_feed_on_delete AFTER DELETE ON segment_events
    BEGIN DELETE FROM segment_feed WHERE event_id = OLD.id; END""",
    # When time alone may change a membership (an event leaving a window): re-evaluate then. A check
    # of every segment (`*`) is each write's until its upkeep: `writes` counts the writes it stands for.
    """CREATE TABLE IF NOT EXISTS segment_checks (
        profile_id TEXT NOT NULL, segment_id TEXT NOT NULL, due_at TEXT NOT NULL, writes INTEGER NOT NULL DEFAULT 1,
        PRIMARY KEY (profile_id, segment_id)
    ) WITHOUT ROWID""",
    "CREATE INDEX IF NOT EXISTS segment_checks_by_due ON segment_checks(due_at)",
    # What profile lists filter on, beside each live profile (kept by every profile write).
    *profile_facets.STATEMENTS,
    # What fuzzy matching reads of each live profile, beside it (kept by every profile write).
    *match_rows.STATEMENTS,
    # Every read of a history: the table's rows and the recent lists' (history_rows.py).
    *history_rows.STATEMENTS,
    # This store's id, made once: its backups keep it, so the server's scheduled backups tell their
    # own from another store's in a shared folder (app/scheduled_backups.py).
    "INSERT OR IGNORE INTO meta (key, value) VALUES ('storeId', lower(hex(randomblob(16))))",
)


# (table, column, definition): columns added to stores made before them (ALTER TABLE adds a column at
# once, whatever the table holds: each row reads NULL or the default until written).
_ADDED_COLUMNS = (
    ("segment_checks", "writes", "INTEGER NOT NULL DEFAULT 1"),
    ("profiles", "pad", "BLOB"),  # profile_rows.py
)


def add_columns(db: sqlite3.Connection) -> bool:
    """Columns a store made before them lacks, added (two workers may open the store at once);
    returns whether any was."""

    def add(db: sqlite3.Connection) -> bool:
        added = False
        for table, column, definition in _ADDED_COLUMNS:
            if column not in {row[1] for row in db.execute(f"PRAGMA table_info({table})")}:
                db.execute(f"ALTER TABLE {table} ADD COLUMN {column} {definition}")
                added = True
        return added

    return backfill.in_one_transaction(db, add)
