"""Plain input (what a GraphQL `SegmentConditionInput` carries, as dicts and lists) -> a validated
condition tree, or `InvalidInput` naming the offending place in the tree.

Input shape: each node is an object with exactly one of
`and: [node]`, `or: [node]`, `not: node`, `compare: {path, op, value}`,
`event: {type, atLeast | atMost, withinDays, channel?, where?: {property, op, value}}`,
`hasIdentifier: {type}`, `inSegment: {segmentId}`, `consentGranted: {purpose}`.
Keys whose value is null are ignored (GraphQL inputs send unset fields that way). Errors read
`condition.and[2].not.compare.path: unknown path "stats.ordres" (did you mean stats.orders?)`.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Mapping
from datetime import date, datetime
from typing import Any

from app.domain.clock import utc_ms
from app.domain.errors import InvalidInput, LimitExceeded
from app.domain.event_limits import is_valid_unicode
from app.domain.events import Channel, EventType
from app.domain.identifiers import is_identifier_type
from app.domain.segments.catalogue import PathCatalogue, PathSpec, UnknownPath, ValueType, is_purpose
from app.domain.segments.conditions import (
    MAX_DEPTH,
    MAX_EVENT_COUNT,
    MAX_IN_VALUES,
    MAX_LEAVES,
    MAX_STRING_LENGTH,
    MAX_WINDOW_DAYS,
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
    Value,
)
from app.domain.traits.rfm import PROSPECT
from app.domain.traits.rfm import SEGMENTS as RFM_SEGMENTS

OPERATORS: Mapping[ValueType, frozenset[Op]] = {
    ValueType.STRING: frozenset(Op),
    ValueType.NUMBER: frozenset(Op) - {Op.CONTAINS, Op.STARTS_WITH},
    ValueType.DATE: frozenset(Op) - {Op.CONTAINS, Op.STARTS_WITH},
    ValueType.DATETIME: frozenset(Op) - {Op.CONTAINS, Op.STARTS_WITH},
    ValueType.BOOLEAN: frozenset({Op.EQ, Op.NE, Op.EXISTS}),
}
_MAX_NUMBER = 2**53  # beyond it integers and doubles stop comparing alike across backends
_SEGMENT_ID = re.compile(r"^[A-Za-z0-9_-]{1,128}\Z")
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")
_KINDS = ("and", "or", "not", "compare", "event", "hasIdentifier", "inSegment", "consentGranted")


def _fail(field: str, reason: str) -> InvalidInput:
    return InvalidInput(f"{field}: {reason}", field=field)


def parse_condition(data: Any, catalogue: PathCatalogue, *, field: str = "condition") -> Condition:
    """Validate a whole tree: paths against `catalogue`, operators against path types, values
    against operators, and the size limits (depth, leaves, event windows)."""
    return _Parser(catalogue).node(data, field, depth=1)


def segment_references(data: Any, field: str = "condition") -> dict[str, str]:
    """Where a (valid) condition tree names each segment it refers to, the first place for each: a
    segment that turns out not to exist is refused there (`condition.and[1].not.inSegment.segmentId`)."""
    found: dict[str, str] = {}
    stack = [(data, field)]
    while stack:
        node, here = stack.pop()
        if not isinstance(node, dict) or len(node) != 1:
            continue
        ((kind, value),) = node.items()
        if kind in ("and", "or") and isinstance(value, list):
            stack += [(child, f"{here}.{kind}[{i}]") for i, child in reversed(list(enumerate(value)))]
        elif kind == "not":
            stack.append((value, f"{here}.not"))
        elif kind == "inSegment" and isinstance(value, dict) and isinstance(value.get("segmentId"), str):
            found.setdefault(value["segmentId"], f"{here}.inSegment.segmentId")
    return found


class _Parser:
    def __init__(self, catalogue: PathCatalogue) -> None:
        self._catalogue = catalogue
        self._leaves = 0

    def node(self, data: Any, field: str, *, depth: int) -> Condition:
        if depth > MAX_DEPTH:
            raise LimitExceeded(f"{field}: a condition may nest at most {MAX_DEPTH} levels deep", field=field)
        body = _object(data, field)
        kinds = [key for key in body if key in _KINDS]
        unknown = sorted(set(body) - set(_KINDS))
        if unknown:
            raise _fail(f"{field}.{unknown[0]}", f"unknown condition kind; use one of {', '.join(_KINDS)}")
        if len(kinds) != 1:
            raise _fail(field, f"a condition node needs exactly one of {', '.join(_KINDS)} (got {len(kinds)})")
        kind = kinds[0]
        value, here = body[kind], f"{field}.{kind}"
        if kind in ("and", "or"):
            if not isinstance(value, list) or not value:
                raise _fail(here, "expected a non-empty list of conditions")
            children = tuple(self.node(child, f"{here}[{i}]", depth=depth + 1) for i, child in enumerate(value))
            return And(children) if kind == "and" else Or(children)
        if kind == "not":
            return Not(self.node(value, here, depth=depth + 1))
        self._leaves += 1
        if self._leaves > MAX_LEAVES:
            raise LimitExceeded(f"{here}: a condition may hold at most {MAX_LEAVES} leaves", field=here)
        leaf = _object(value, here)
        if kind == "compare":
            return self.compare(leaf, here)
        if kind == "event":
            return self.event(leaf, here)
        if kind == "hasIdentifier":
            _only(leaf, here, {"type"})
            type_ = _text(leaf.get("type"), f"{here}.type")
            if not is_identifier_type(type_):
                raise _fail(f"{here}.type", f"unknown identifier type {type_!r}")
            return HasIdentifier(type_)
        if kind == "inSegment":
            _only(leaf, here, {"segmentId"})
            segment_id = _text(leaf.get("segmentId"), f"{here}.segmentId")
            if not _SEGMENT_ID.match(segment_id):
                raise _fail(f"{here}.segmentId", "a segment id is 1-128 letters, digits, '-' or '_'")
            return InSegment(segment_id)
        _only(leaf, here, {"purpose"})
        purpose = _text(leaf.get("purpose"), f"{here}.purpose")
        if not is_purpose(purpose):
            raise _fail(f"{here}.purpose", "a purpose is 1-64 lower-case letters, digits or underscores")
        return ConsentGranted(purpose)

    def compare(self, leaf: dict[str, Any], field: str) -> Compare:
        _only(leaf, field, {"path", "op", "value"})
        path = _text(leaf.get("path"), f"{field}.path")
        try:
            spec = self._catalogue.resolve(path)
        except UnknownPath as exc:
            raise _fail(f"{field}.path", str(exc)) from None
        return _comparison(spec, leaf, field)

    def event(self, leaf: dict[str, Any], field: str) -> EventCount:
        _only(leaf, field, {"type", "atLeast", "atMost", "withinDays", "channel", "where"})
        type_text = _text(leaf.get("type"), f"{field}.type")
        try:
            event_type = EventType(type_text)
        except ValueError:
            raise _fail(
                f"{field}.type", f"unknown event type {type_text!r}; use one of {', '.join(EventType)}"
            ) from None
        bounds = [bound for bound in CountBound if bound.value in leaf]
        if len(bounds) != 1:
            raise _fail(field, "give exactly one of atLeast, atMost")
        bound = bounds[0]
        low = 1 if bound is CountBound.AT_LEAST else 0
        count = _integer(leaf[bound.value], f"{field}.{bound.value}", low, MAX_EVENT_COUNT)
        within = _integer(leaf.get("withinDays"), f"{field}.withinDays", 1, MAX_WINDOW_DAYS)
        channel = None
        if "channel" in leaf:
            channel_text = _text(leaf["channel"], f"{field}.channel")
            try:
                channel = Channel(channel_text)
            except ValueError:
                raise _fail(
                    f"{field}.channel", f"unknown channel {channel_text!r}; use one of {', '.join(Channel)}"
                ) from None
        where = None
        if "where" in leaf:
            here = f"{field}.where"
            condition = _object(leaf["where"], here)
            _only(condition, here, {"property", "op", "value"})
            name = _text(condition.get("property"), f"{here}.property")
            try:
                spec = self._catalogue.event_property(event_type, name)
            except UnknownPath as exc:
                raise _fail(f"{here}.property", str(exc)) from None
            where = _comparison(spec, condition, here)
        return EventCount(event_type, bound, count, within, channel, where)


def _comparison(spec: PathSpec, leaf: dict[str, Any], field: str) -> Compare:
    op_text = _text(leaf.get("op"), f"{field}.op")
    try:
        op = Op(op_text)
    except ValueError:
        raise _fail(f"{field}.op", f"unknown operator {op_text!r}; use one of {', '.join(Op)}") from None
    if op not in OPERATORS[spec.type]:
        allowed = ", ".join(o for o in Op if o in OPERATORS[spec.type])
        raise _fail(f"{field}.op", f"{op} does not apply to {spec.path} ({spec.type}); use one of {allowed}")
    here = f"{field}.value"
    raw = leaf.get("value")
    if op is Op.EXISTS:
        if spec.default is not None:
            raise _fail(f"{field}.op", f"{spec.path} always has a value ({spec.default} by default)")
        if raw is None:
            return Compare(spec, op, True)
        if not isinstance(raw, bool):
            raise _fail(here, "exists takes true or false")
        return Compare(spec, op, raw)
    if op is Op.IN:
        if not isinstance(raw, list | tuple) or not raw or len(raw) > MAX_IN_VALUES:
            raise _fail(here, f"in needs a list of 1-{MAX_IN_VALUES} values")
        items = tuple(
            _as_stored(spec, op, _scalar(spec.type, item, f"{here}[{i}]"), f"{here}[{i}]") for i, item in enumerate(raw)
        )
        return Compare(spec, op, tuple(dict.fromkeys(items)))
    value: Value = _as_stored(spec, op, _scalar(spec.type, raw, here), here)
    return Compare(spec, op, value)


# Values some paths hold in one form: a country is kept upper-case (person_fields.Country takes either
# case), and an RFM segment is one of its names. Compared in another form, they matched nobody, silently.
_STORED_AS: dict[str, Callable[[str], str]] = {"addresses.country": str.upper}
_ONE_OF: dict[str, frozenset[str]] = {"rfm.segment": frozenset({PROSPECT, *(name for name, _, _ in RFM_SEGMENTS)})}


def _as_stored(spec: PathSpec, op: Op, value: Scalar, field: str) -> Scalar:
    if not isinstance(value, str):
        return value
    if (form := _STORED_AS.get(spec.path)) is not None:
        return form(value)
    names = _ONE_OF.get(spec.path)
    if names is not None and op in (Op.EQ, Op.NE, Op.IN) and value not in names:
        raise _fail(field, f"{spec.path} is one of {', '.join(sorted(names))}; got {_describe(value)}")
    return value


def _scalar(kind: ValueType, raw: Any, field: str) -> Scalar:
    if raw is None:
        raise _fail(field, f"a {kind} value is required")
    match kind:
        case ValueType.STRING:
            if not isinstance(raw, str):
                raise _fail(field, f"expected a string, got {_describe(raw)}")
            if len(raw) > MAX_STRING_LENGTH or _CONTROL.search(raw) or not is_valid_unicode(raw):
                raise _fail(
                    field,
                    f"a string value is at most {MAX_STRING_LENGTH} characters of valid Unicode, no control characters",
                )
            return raw
        case ValueType.NUMBER:
            if isinstance(raw, bool) or not isinstance(raw, int | float):
                raise _fail(field, f"expected a number, got {_describe(raw)}")
            if not math.isfinite(raw) or abs(raw) > _MAX_NUMBER:
                raise _fail(field, f"a number must be finite and at most {_MAX_NUMBER} in size")
            return raw
        case ValueType.BOOLEAN:
            if not isinstance(raw, bool):
                raise _fail(field, f"expected true or false, got {_describe(raw)}")
            return raw
        case ValueType.DATE:
            if isinstance(raw, date) and not isinstance(raw, datetime):
                return raw
            if isinstance(raw, str) and re.fullmatch(r"\d{4}-\d{2}-\d{2}", raw):
                try:
                    return date.fromisoformat(raw)
                except ValueError:
                    pass
            raise _fail(field, f"expected a date as YYYY-MM-DD, got {_describe(raw)}")
        case ValueType.DATETIME:
            if isinstance(raw, datetime):
                return utc_ms(raw)
            if isinstance(raw, str) and len(raw) <= 40:
                try:
                    return utc_ms(datetime.fromisoformat(raw))
                except ValueError:
                    pass
                except OverflowError:  # 0001-01-01T00:00:00+01:00: no such time in UTC
                    raise _fail(field, f"date-time out of range: {_describe(raw)}") from None
            raise _fail(field, f"expected an ISO-8601 date-time, got {_describe(raw)}")


def _describe(raw: Any) -> str:
    if isinstance(raw, str):
        return f'"{raw[:40]}"'
    return repr(raw) if raw is None or isinstance(raw, bool | int | float) else f"a {type(raw).__name__}"


def _object(data: Any, field: str) -> dict[str, Any]:
    if not isinstance(data, Mapping):
        raise _fail(field, f"expected an object, got {_describe(data)}")
    return {str(key): value for key, value in data.items() if value is not None}


def _only(body: dict[str, Any], field: str, allowed: set[str]) -> None:
    extra = sorted(set(body) - allowed)
    if extra:
        raise _fail(f"{field}.{extra[0]}", f"unknown field; expected {', '.join(sorted(allowed))}")


def _text(raw: Any, field: str) -> str:
    if not isinstance(raw, str) or not raw:
        raise _fail(field, "a non-empty string is required")
    return raw


def _integer(raw: Any, field: str, low: int, high: int) -> int:
    if isinstance(raw, bool) or not isinstance(raw, int) or not low <= raw <= high:
        raise _fail(field, f"expected a whole number from {low} to {high}")
    return raw
