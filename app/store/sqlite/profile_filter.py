"""Translate a typed ProfileFilter into the SQL of a profile list or count, with bound parameters only,
on the profiles' facet rows (`profile_facets f`, app/store/sqlite/profile_facets.py): one per live
profile.

A list is read in profile-id order. By default it walks the facet rows in that order and tests each,
so a filter that few profiles match walks nearly all of them before it has a page: 100,000 rows, 10-120
ms, for a new segment's 100 members or the store's few anonymous visitors. When the filter names a
segment, an identifier type or a city that fewer than `DRIVE_LIMIT` profiles have, the walk starts from
those profiles instead (`Driver`): their rows (segment_members, identities_by_type,
profile_cities_by_city) are in profile-id order too, so a page still stops as soon as it is full, and
the walk is never longer than the driver's rows. Which one is taken is asked of the store (a count
that stops at the limit), since only the data knows: a segment of 80,000 members walked member by
member, with a stats bound that few of them meet, would be the slow walk again."""

from __future__ import annotations

import sqlite3
from dataclasses import dataclass
from typing import Any

from app.domain.profile_query import ProfileFilter, folded

DRIVE_LIMIT = 1_000  # a driver with fewer rows is walked (1-3 us a row; counting them ~0.1 us a row)


@dataclass(frozen=True, slots=True)
class Driver:
    """The profiles with one value of a filtered field, in profile-id order: where a list's walk starts."""

    field: str  # the ProfileFilter field it answers (its clause is then not repeated)
    table: str
    column: str
    value: str
    repeats: bool  # one profile may have several rows (identities: two anonymous ids)


@dataclass(frozen=True, slots=True)
class Statement:
    source: str  # FROM …, with `f` the facet rows and `key` the profile id to order by
    where: str
    params: list[Any]
    key: str
    repeats: bool


def _like_prefix(text: str) -> str:
    escaped = folded(text).replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
    return escaped + "%"


def _drivers(query: ProfileFilter) -> list[Driver]:
    found = []
    if query.segment:
        found.append(Driver("segment", "segment_members", "segment_id", query.segment, repeats=False))
    if query.identifier_type:
        found.append(Driver("identifier_type", "identities", "type", query.identifier_type, repeats=True))
    if query.city:
        found.append(Driver("city", "profile_cities", "city", folded(query.city), repeats=False))
    return found


def driver(db: sqlite3.Connection, query: ProfileFilter) -> Driver | None:
    """The filter's driver with the fewest rows, if it has fewer than `DRIVE_LIMIT`; None: walk the facets."""
    chosen, fewest = None, DRIVE_LIMIT
    for candidate in _drivers(query):
        rows = db.execute(
            f"SELECT count(*) FROM (SELECT 1 FROM {candidate.table} WHERE {candidate.column} = ? LIMIT ?)",
            (candidate.value, fewest),
        ).fetchone()[0]
        if rows < fewest:
            chosen, fewest = candidate, rows
    return chosen


def chosen_statement(db: sqlite3.Connection, query: ProfileFilter) -> Statement:
    """The rows `query` selects, walked from its rarest driver when it has one (`driver`)."""
    return statement(query, driver(db, query))


def statement(query: ProfileFilter, driven_by: Driver | None) -> Statement:
    """The rows `query` selects: from the driver's rows when there is one, else from every facet row."""
    if driven_by is None:
        where, params = where_clause(query)
        return Statement("profile_facets f", where, params, "f.profile_id", repeats=False)
    where, params = where_clause(query, without=driven_by.field)
    # CROSS JOIN: SQLite keeps the order written, the driver's rows first (the planner could not know
    # they are few).
    return Statement(
        f"{driven_by.table} d CROSS JOIN profile_facets f ON f.profile_id = d.profile_id",
        f"d.{driven_by.column} = ? AND {where}",
        [driven_by.value, *params],
        "d.profile_id",
        driven_by.repeats,
    )


def where_clause(query: ProfileFilter, *, without: str | None = None) -> tuple[str, list[Any]]:
    """The conditions on the facet rows `f`; `without`: a field its driver answers already."""
    clauses = ["1"]
    params: list[Any] = []
    if query.identifier_type and without != "identifier_type":
        clauses.append("EXISTS (SELECT 1 FROM identities i WHERE i.profile_id = f.profile_id AND i.type = ?)")
        params.append(query.identifier_type)
    if query.name_prefix:
        clauses.append("(f.first_name LIKE ? ESCAPE '\\' OR f.last_name LIKE ? ESCAPE '\\')")
        params += [_like_prefix(query.name_prefix)] * 2
    if query.city and without != "city":
        clauses.append("EXISTS (SELECT 1 FROM profile_cities c WHERE c.profile_id = f.profile_id AND c.city = ?)")
        params.append(folded(query.city))
    if query.segment and without != "segment":
        clauses.append(
            "EXISTS (SELECT 1 FROM segment_members sm WHERE sm.profile_id = f.profile_id AND sm.segment_id = ?)"
        )
        params.append(query.segment)
    for bound in query.stats:
        # The column name comes from a closed enum, never from the client's text.
        if bound.min is not None:
            clauses.append(f"f.{bound.field.value} >= ?")
            params.append(bound.min)
        if bound.max is not None:
            clauses.append(f"f.{bound.field.value} <= ?")
            params.append(bound.max)
    return " AND ".join(clauses), params
