"""A segment condition tree as a SQL WHERE clause over `profiles p`, for batch membership.

    clause, params = where_clause(tree, now=now)
    SELECT p.id FROM profiles p WHERE {clause} ORDER BY p.id

The SQL text is made of fixed fragments and of document paths that come from the path catalogue
(each key checked against a plain-identifier pattern); every value is a bound parameter. Leaves read:
`profiles.doc` with json_type/json_extract (the type guard makes a comparison type-strict, as in
MongoDB and the predicate), `identities` for identifier leaves, the whole history for event leaves
(the `interactions` table and the recent lists' entries it lacks: history_rows.py), `doc.segments`
for membership. Every leaf yields 0 or 1, never NULL, so `NOT` is plain boolean negation.
"""

from __future__ import annotations

from datetime import date, datetime
from typing import Any

import orjson

from app.domain.clock import to_iso
from app.domain.segments.catalogue import SAFE_KEY, PathSpec, ValueType
from app.domain.segments.comparison import default_matches
from app.domain.segments.conditions import (
    And,
    Compare,
    Condition,
    ConsentGranted,
    CountBound,
    EventCount,
    HasIdentifier,
    InSegment,
    Not,
    Op,
    Or,
    Scalar,
)
from app.store.sqlite.history_rows import NOT_IN_TABLE

_JSON_TYPES: dict[ValueType, str] = {
    ValueType.NUMBER: "('integer', 'real')",
    ValueType.STRING: "('text')",
    ValueType.DATE: "('text')",
    ValueType.DATETIME: "('text')",
    ValueType.BOOLEAN: "('true', 'false')",
}
_ORDER_SQL = {Op.EQ: "=", Op.NE: "!=", Op.GT: ">", Op.GTE: ">=", Op.LT: "<", Op.LTE: "<="}


def where_clause(tree: Condition, *, now: datetime) -> tuple[str, list[Any]]:
    """Live (not merged-away) profiles for which `tree` holds at `now`."""
    sql, params = condition_sql(tree, now=now)
    return f"p.merged_into IS NULL AND {sql}", params


def condition_sql(tree: Condition, *, now: datetime) -> tuple[str, list[Any]]:
    """The tree alone, as an expression over `profiles p`."""
    params: list[Any] = []
    return _Compiler(params, now).node(tree), params


def json_path(keys: tuple[str, ...]) -> str:
    for key in keys:
        if not SAFE_KEY.match(key):
            raise ValueError(f"unsafe document key {key!r}")
    return "$." + ".".join(keys)


def _param(value: Scalar) -> Any:
    if isinstance(value, datetime):
        return to_iso(value)  # the stored form: fixed-width ISO text, whose order is time order
    if isinstance(value, date):
        return value.isoformat()
    if isinstance(value, bool):
        return int(value)  # json_extract reads JSON true/false as 1/0
    return value


class _Compiler:
    def __init__(self, params: list[Any], now: datetime) -> None:
        self._params = params
        self._now = now

    def node(self, node: Condition) -> str:
        match node:
            case And(children):
                return "(" + " AND ".join(self.node(child) for child in children) + ")"
            case Or(children):
                return "(" + " OR ".join(self.node(child) for child in children) + ")"
            case Not(child):
                return f"(NOT {self.node(child)})"
            case Compare():
                return self.compare(node)
            case EventCount():
                return self.event(node)
            case HasIdentifier(type_):
                self._params.append(type_)
                return "EXISTS (SELECT 1 FROM identities i WHERE i.profile_id = p.id AND i.type = ?)"
            case InSegment(segment_id):
                self._params.append(segment_id)
                return "EXISTS (SELECT 1 FROM json_each(p.doc, '$.segments') s WHERE s.value = ?)"
            case ConsentGranted(purpose):
                path = json_path(("consents", purpose, "granted"))
                return f"coalesce(json_type(p.doc, '{path}'), '') = 'true'"
        raise TypeError(f"not a condition: {node!r}")

    def compare(self, leaf: Compare) -> str:
        spec = leaf.path
        if spec.array is None:
            return self.leaf("p.doc", leaf)
        array = json_path(tuple(spec.array.split(".")))
        if leaf.op is Op.EXISTS and leaf.value is False:  # no element has it
            present = Compare(spec, Op.EXISTS, True)
            return f"(NOT EXISTS (SELECT 1 FROM json_each(p.doc, '{array}') e WHERE {self.leaf('e.value', present)}))"
        return f"EXISTS (SELECT 1 FROM json_each(p.doc, '{array}') e WHERE {self.leaf('e.value', leaf)})"

    def leaf(self, column: str, leaf: Compare) -> str:
        spec: PathSpec = leaf.path
        path = json_path(spec.keys)
        kind = f"json_type({column}, '{path}')"
        value = f"json_extract({column}, '{path}')"
        if leaf.op is Op.EXISTS:
            return f"(coalesce({kind}, 'null') {'!=' if leaf.value else '='} 'null')"
        sql = f"(coalesce({kind}, '') IN {_JSON_TYPES[spec.type]} AND {self.operation(value, leaf)})"
        if default_matches(spec.type, leaf.op, spec.default, leaf.value):
            sql = f"({sql} OR coalesce({kind}, 'null') = 'null')"
        return sql

    def operation(self, value: str, leaf: Compare) -> str:
        operand = leaf.value
        if leaf.op is Op.IN:
            assert isinstance(operand, tuple)
            self._params.extend(_param(item) for item in operand)
            return f"{value} IN ({', '.join('?' * len(operand))})"
        assert not isinstance(operand, tuple)
        if leaf.op is Op.CONTAINS:
            self._params.append(operand)
            return f"instr({value}, ?) > 0"
        if leaf.op is Op.STARTS_WITH:
            assert isinstance(operand, str)
            self._params += [len(operand), operand]  # substr counts characters, as Python does
            return f"substr({value}, 1, ?) = ?"
        self._params.append(_param(operand))
        return f"{value} {_ORDER_SQL[leaf.op]} ?"

    def event(self, leaf: EventCount) -> str:
        """The leaf's events counted in the whole history (history_rows.py): the table's rows, and the
        recent list's entries the table lacks, its document walked only when its text names the type
        (as the `history` view, each profile's document was parsed: 0.7 -> 2.0 s for a new segment
        over 100,000 profiles)."""
        rows = self._events(leaf, "interactions i", "i.profile_id = p.id", [], ("i.type", "i.ts", "i.channel", "i.doc"))
        named = orjson.dumps(leaf.event_type.value).decode()  # "type" as the JSON text holds it
        listed = self._events(
            leaf,
            "json_each(p.doc, '$.recent') r",
            f"p.merged_into IS NULL AND instr(p.doc, ?) > 0 AND {NOT_IN_TABLE}",
            [named],
            ("r.value ->> '$.type'", "r.value ->> '$.timestamp'", "r.value ->> '$.channel'", "r.value"),
        )
        self._params.append(leaf.count)
        return f"({rows} + {listed} {'>=' if leaf.bound is CountBound.AT_LEAST else '<='} ?)"

    def _events(self, leaf: EventCount, source: str, where: str, params: list[Any], columns: tuple[str, ...]) -> str:
        """A count of the leaf's events in `source`, whose `columns` are its type, time, channel and document."""
        kind, ts, channel, doc = columns
        sql = f"(SELECT count(*) FROM {source} WHERE {where} AND {kind} = ? AND {ts} > ?"
        self._params += [*params, leaf.event_type.value, to_iso(self._now - leaf.window)]
        if leaf.channel is not None:
            sql += f" AND {channel} = ?"
            self._params.append(leaf.channel.value)
        if leaf.where is not None:
            sql += f" AND {self.leaf(doc, leaf.where)}"
        return sql + ")"
