"""What profile lists filter on, one narrow row per live profile, kept by triggers.

A filter evaluated on the profiles' JSON documents parses every document it passes (3-12 KB each,
spread over overflow pages): a filter that matches few profiles read all 100,000 of them, for 1-2 s.
These rows hold only what `ProfileFilter` compares (lower-cased names, the stats counters, cities),
so a list scans a few MB in key order and reads a document only for the profiles it returns.

Triggers on `profiles` keep them whatever code writes a profile (ingestion, upserts, merges,
erasure), in the writer's own transaction: a row exists exactly while its profile is live. The
document is parsed once per write (one json_extract of four paths), which costs ~25 us a profile.
"""

from __future__ import annotations

import sqlite3

from app.domain.profile_query import StatsField

FILLED_MARK = "profileFacets"  # meta key: the rows were built for the profiles a store already held

_STATS = [field.value for field in StatsField]


def _rows(profile: str, where: str, source: str = "") -> tuple[str, str]:
    """The INSERTs of a profile's facet row and its city rows; `profile` names the row of `profiles`
    they are made from (NEW in a trigger), `source` its FROM clause when it is a table."""
    counters = ", ".join(f"coalesce(json_extract(x, '$[2].{name}'), 0)" for name in _STATS)
    facets = (
        f"INSERT OR REPLACE INTO profile_facets SELECT id, lower(json_extract(x, '$[0]')), "
        f"lower(json_extract(x, '$[1]')), {counters} FROM (SELECT {profile}.id AS id, "
        f"json_extract({profile}.doc, '$.firstName', '$.lastName', '$.stats') AS x {source} WHERE {where})"
    )  # the document parsed once for the three paths; the small array they come in, again per column
    cities = (
        f"INSERT OR IGNORE INTO profile_cities SELECT {profile}.id, lower(json_extract(a.value, '$.city')) "
        f"{source}{',' if source else 'FROM'} json_each(json_extract({profile}.doc, '$.addresses')) a "
        f"WHERE {where} AND json_extract(a.value, '$.city') IS NOT NULL"
    )
    return facets, cities


_REFRESH = "; ".join(
    (
        "DELETE FROM profile_cities WHERE profile_id = NEW.id",
        "DELETE FROM profile_facets WHERE profile_id = NEW.id AND NEW.merged_into IS NOT NULL",
        *_rows("NEW", "NEW.merged_into IS NULL"),
    )
)
_FILL = _rows("p", "p.merged_into IS NULL", "FROM profiles p")

STATEMENTS = (
    f"""CREATE TABLE IF NOT EXISTS profile_facets (
        profile_id TEXT PRIMARY KEY, first_name TEXT, last_name TEXT, {", ".join(_STATS)}
    ) WITHOUT ROWID""",
    """CREATE TABLE IF NOT EXISTS profile_cities (
        profile_id TEXT NOT NULL, city TEXT NOT NULL, PRIMARY KEY (profile_id, city)
    ) WITHOUT ROWID""",
    f"CREATE TRIGGER IF NOT EXISTS profile_facets_on_insert AFTER INSERT ON profiles BEGIN {_REFRESH}; END",
    f"CREATE TRIGGER IF NOT EXISTS profile_facets_on_update AFTER UPDATE OF doc, merged_into ON profiles "
    f"BEGIN {_REFRESH}; END",
    "CREATE TRIGGER IF NOT EXISTS profile_facets_on_delete AFTER DELETE ON profiles BEGIN "
    "DELETE FROM profile_facets WHERE profile_id = OLD.id; DELETE FROM profile_cities WHERE profile_id = OLD.id; END",
)


def fill(db: sqlite3.Connection) -> int:
    """Build the rows of the profiles a store held before it had them (once: ~5 s for 100,000
    profiles). Returns how many profiles were given rows."""
    db.execute("BEGIN IMMEDIATE")
    try:
        if db.execute("SELECT 1 FROM meta WHERE key = ?", (FILLED_MARK,)).fetchone() is not None:
            db.execute("ROLLBACK")
            return 0
        filled = db.execute(_FILL[0]).rowcount
        db.execute(_FILL[1])
        db.execute("INSERT OR REPLACE INTO meta (key, value) VALUES (?, '1')", (FILLED_MARK,))
        db.execute("COMMIT")
    except BaseException:
        db.execute("ROLLBACK")
        raise
    return filled
