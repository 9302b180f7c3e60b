"""Translate a typed ProfileFilter into a SQL WHERE clause with bound parameters only, on the
profiles' facet rows (`profile_facets f`, app/store/sqlite/profile_facets.py): one per live profile."""

from __future__ import annotations

from typing import Any

from app.domain.profile_query import ProfileFilter


def _like_prefix(text: str) -> str:
    escaped = text.lower().replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
    return escaped + "%"


def where_clause(query: ProfileFilter) -> tuple[str, list[Any]]:
    clauses = ["1"]
    params: list[Any] = []
    if query.identifier_type:
        clauses.append("EXISTS (SELECT 1 FROM identities i WHERE i.profile_id = f.profile_id AND i.type = ?)")
        params.append(query.identifier_type)
    if query.name_prefix:
        clauses.append("(f.first_name LIKE ? ESCAPE '\\' OR f.last_name LIKE ? ESCAPE '\\')")
        params += [_like_prefix(query.name_prefix)] * 2
    if query.city:
        clauses.append("EXISTS (SELECT 1 FROM profile_cities c WHERE c.profile_id = f.profile_id AND c.city = ?)")
        params.append(query.city.lower())
    if query.segment:
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
