"""Translate a typed ProfileFilter into a SQL WHERE clause with bound parameters only."""

from __future__ import annotations

from typing import Any

from app.domain.profile_query import ProfileFilter


def _like_prefix(text: str) -> str:
    escaped = text.lower().replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
    return escaped + "%"


def where_clause(query: ProfileFilter) -> tuple[str, list[Any]]:
    clauses = ["p.merged_into IS NULL"]
    params: list[Any] = []
    if query.identifier_type:
        clauses.append("EXISTS (SELECT 1 FROM identities i WHERE i.profile_id = p.id AND i.type = ?)")
        params.append(query.identifier_type)
    if query.name_prefix:
        clauses.append(
            "(lower(json_extract(p.doc, '$.firstName')) LIKE ? ESCAPE '\\' "
            "OR lower(json_extract(p.doc, '$.lastName')) LIKE ? ESCAPE '\\')"
        )
        params += [_like_prefix(query.name_prefix)] * 2
    if query.city:
        clauses.append(
            "EXISTS (SELECT 1 FROM json_each(p.doc, '$.addresses') a WHERE lower(json_extract(a.value, '$.city')) = ?)"
        )
        params.append(query.city.lower())
    if query.segment:
        clauses.append("EXISTS (SELECT 1 FROM segment_members sm WHERE sm.profile_id = p.id AND sm.segment_id = ?)")
        params.append(query.segment)
    for bound in query.stats:
        # The field name comes from a closed enum, never from the client's text.
        expression = f"coalesce(json_extract(p.doc, '$.stats.{bound.field.value}'), 0)"
        if bound.min is not None:
            clauses.append(f"{expression} >= ?")
            params.append(bound.min)
        if bound.max is not None:
            clauses.append(f"{expression} <= ?")
            params.append(bound.max)
    return " AND ".join(clauses), params
