"""A segment condition tree as MongoDB queries, for batch membership.

    cursor = await db.profiles.aggregate(membership_pipeline(tree, now=now))   # -> {_id} of members
    db.profiles.find(profile_filter(tree))        # trees without event leaves only

Every operator is written here; values go in as operands only (`$eq`, `$in`, an escaped `$regex`),
and field paths come from the path catalogue (each key checked against a plain-identifier pattern),
so no client text can become an operator. A comparison carries a `$type` guard and excludes arrays,
so it is type-strict like the SQL and the predicate.

Event leaves need the whole history, which lives in the `interactions` buckets (the embedded
`recent` list is capped): each distinct event leaf becomes a `$lookup` into the profile's buckets
(`localField`/`foreignField` with a `pipeline`, MongoDB 5.0+, using the `(profileId, maxTs)`
index), skipping buckets whose `maxTs` is outside the window, unwinding items and `$count`ing the
matching ones; the final `$match` then reads `<leaf>.n`. The top-level `And` conjuncts without event
leaves are matched before the lookups, so only candidates pay for them.

On mongomock-ng (the test fake) all of this runs: `$lookup` with `localField`/`foreignField` and a
pipeline, `$replaceRoot`, `$count`, `$elemMatch`, `$nor`, `$type: "number"`. One difference is
absorbed by construction: mongomock-ng's `$count` emits `{n: 0}` on empty input where MongoDB emits
nothing, and the leaf tests (`n >= k` with k >= 1, `not n > k`) read both the same way.
"""

from __future__ import annotations

import re
from datetime import date, datetime
from typing import Any

from app.domain.segments.catalogue import SAFE_KEY, ValueType
from app.domain.segments.comparison import as_text, default_matches
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
    event_leaves,
)

_BSON_TYPES: dict[ValueType, str] = {
    ValueType.NUMBER: "number",
    ValueType.STRING: "string",
    ValueType.DATE: "string",  # birthDate is stored as "YYYY-MM-DD"
    ValueType.DATETIME: "date",
    ValueType.BOOLEAN: "bool",
}
_OPERATORS = {Op.EQ: "$eq", Op.NE: "$ne", Op.GT: "$gt", Op.GTE: "$gte", Op.LT: "$lt", Op.LTE: "$lte"}
_LIVE = {"mergedInto": None}


def membership_pipeline(tree: Condition, *, now: datetime) -> list[dict[str, Any]]:
    """An aggregation on `profiles` yielding `{_id, version}` of the live profiles for which `tree` holds."""
    leaves = {leaf: f"_segmentEvent{index}" for index, leaf in enumerate(event_leaves(tree))}
    conjuncts = list(tree.children) if isinstance(tree, And) else [tree]
    before = [c for c in conjuncts if not event_leaves(c)]
    after = [c for c in conjuncts if event_leaves(c)]
    compiler = _Compiler(leaves)
    pipeline: list[dict[str, Any]] = [{"$match": {"$and": [_LIVE, *(compiler.node(c) for c in before)]}}]
    pipeline += [_event_lookup(leaf, name, now) for leaf, name in leaves.items()]
    if after:
        pipeline.append({"$match": {"$and": [compiler.node(c) for c in after]}})
    pipeline.append({"$project": {"_id": 1, "version": 1}})
    return pipeline


def profile_filter(tree: Condition) -> dict[str, Any]:
    """A `find` filter for live members of a tree without event leaves (those need the pipeline)."""
    if event_leaves(tree):
        raise ValueError("event conditions need membership_pipeline")
    return {"$and": [_LIVE, _Compiler({}).node(tree)]}


def field(keys: tuple[str, ...]) -> str:
    for key in keys:
        if not SAFE_KEY.match(key):
            raise ValueError(f"unsafe document key {key!r}")
    return ".".join(keys)


def _operand(value: Scalar) -> Any:
    if isinstance(value, date) and not isinstance(value, datetime):
        return value.isoformat()
    return value


class _Compiler:
    def __init__(self, leaves: dict[EventCount, str]) -> None:
        self._leaves = leaves

    def node(self, node: Condition) -> dict[str, Any]:
        match node:
            case And(children):
                return {"$and": [self.node(child) for child in children]}
            case Or(children):
                return {"$or": [self.node(child) for child in children]}
            case Not(child):
                return {"$nor": [self.node(child)]}
            case Compare():
                return compare_filter(node)
            case EventCount():
                counted = f"{self._leaves[node]}.n"
                if node.bound is CountBound.AT_LEAST:
                    return {counted: {"$gte": node.count}}
                return {"$nor": [{counted: {"$gt": node.count}}]}
            case HasIdentifier(type_):
                return {"identifiers.type": {"$eq": type_}}
            case InSegment(segment_id):
                return {"segments": {"$eq": segment_id}}
            case ConsentGranted(purpose):
                return {field(("consents", purpose, "granted")): {"$type": "bool", "$eq": True}}
        raise TypeError(f"not a condition: {node!r}")


def compare_filter(leaf: Compare) -> dict[str, Any]:
    spec = leaf.path
    if spec.array is None:
        return _leaf(field(spec.keys), leaf)
    array = field(tuple(spec.array.split(".")))
    if leaf.op is Op.EXISTS:
        present = {array: {"$elemMatch": _present(field(spec.keys))}}
        return present if leaf.value else {"$nor": [present]}
    return {array: {"$elemMatch": _leaf(field(spec.keys), leaf)}}


def _present(path: str) -> dict[str, Any]:
    # `$ne: null` alone misses an array holding a null (MongoDB matches null against elements).
    return {"$or": [{path: {"$type": "array"}}, {path: {"$exists": True, "$ne": None}}]}


def _leaf(path: str, leaf: Compare) -> dict[str, Any]:
    spec = leaf.path
    if leaf.op is Op.EXISTS:
        return _present(path) if leaf.value else {"$nor": [_present(path)]}
    condition: dict[str, Any] = {"$type": "string" if spec.text else _BSON_TYPES[spec.type], "$not": {"$type": "array"}}
    operand = as_text(leaf.value) if spec.text else leaf.value
    if leaf.op is Op.IN:
        assert isinstance(operand, tuple)
        condition["$in"] = [_operand(item) for item in operand]
    elif leaf.op in (Op.CONTAINS, Op.STARTS_WITH):
        assert isinstance(operand, str)
        condition["$regex"] = ("^" if leaf.op is Op.STARTS_WITH else "") + re.escape(operand)
    else:
        assert not isinstance(operand, tuple)
        condition[_OPERATORS[leaf.op]] = _operand(operand)
    clause: dict[str, Any] = {path: condition}
    if default_matches(spec.type, leaf.op, spec.default, operand):
        clause = {"$or": [clause, {path: None}]}  # missing reads as the default
    return clause


def _event_lookup(leaf: EventCount, name: str, now: datetime) -> dict[str, Any]:
    since = now - leaf.window
    item: dict[str, Any] = {"type": {"$eq": leaf.event_type.value}, "timestamp": {"$gt": since}}
    if leaf.channel is not None:
        item["channel"] = {"$eq": leaf.channel.value}
    if leaf.where is not None:
        item = {"$and": [item, compare_filter(leaf.where)]}
    return {
        "$lookup": {
            "from": "interactions",
            "localField": "_id",
            "foreignField": "profileId",
            "as": name,
            "pipeline": [
                {"$match": {"maxTs": {"$gt": since}}},
                {"$unwind": "$items"},
                {"$replaceRoot": {"newRoot": "$items"}},
                {"$match": item},
                {"$count": "n"},
            ],
        }
    }
