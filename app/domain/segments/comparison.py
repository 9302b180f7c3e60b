"""What one comparison means, in Python: the reference the database compilations are checked against.

Type-strict, like MongoDB's type bracketing: a value of another type (a bool where a number is
expected, a list where a string is) never matches, so the stores need the same type guard.
"""

from __future__ import annotations

from datetime import date, datetime
from typing import Any

from app.domain.clock import to_iso
from app.domain.segments.catalogue import ValueType
from app.domain.segments.conditions import Op, Scalar, Value


def is_of_type(kind: ValueType, value: Any) -> bool:
    match kind:
        case ValueType.NUMBER:
            return isinstance(value, int | float) and not isinstance(value, bool)
        case ValueType.STRING:
            return isinstance(value, str)
        case ValueType.BOOLEAN:
            return isinstance(value, bool)
        case ValueType.DATE:
            return isinstance(value, date) and not isinstance(value, datetime)
        case ValueType.DATETIME:
            return isinstance(value, datetime)


def as_text(value: Value) -> Value:
    """An operand as the text a date or a datetime is held as where JSON holds it: fixed-width ISO
    8601 (`2026-03-01`, `2026-03-01T10:00:00.000Z`), whose order is time order."""
    if isinstance(value, tuple):
        return tuple(_scalar_as_text(item) for item in value)
    return _scalar_as_text(value)


def _scalar_as_text(value: Scalar) -> Scalar:
    if isinstance(value, datetime):
        return to_iso(value)
    if isinstance(value, date):
        return value.isoformat()
    return value


def is_present(value: Any) -> bool:
    return value is not None


def compare(kind: ValueType, op: Op, stored: Any, operand: Value) -> bool:
    """`stored op operand` for a value read from a profile (None when absent). `exists` is handled
    by the caller (it looks at presence, not type)."""
    if not is_of_type(kind, stored):
        return False
    match op:
        case Op.EQ:
            return bool(stored == operand)
        case Op.NE:
            return bool(stored != operand)
        case Op.GT:
            return bool(stored > operand)
        case Op.GTE:
            return bool(stored >= operand)
        case Op.LT:
            return bool(stored < operand)
        case Op.LTE:
            return bool(stored <= operand)
        case Op.IN:
            assert isinstance(operand, tuple)
            return stored in operand
        case Op.CONTAINS:
            return isinstance(operand, str) and operand in stored
        case Op.STARTS_WITH:
            return isinstance(operand, str) and stored.startswith(operand)
        case Op.EXISTS:
            raise ValueError("exists looks at presence; the caller decides it")


def default_matches(kind: ValueType, op: Op, default: Any, operand: Value) -> bool:
    """Whether a missing field, read as its default, satisfies the comparison (stores then match
    missing fields too)."""
    return default is not None and op is not Op.EXISTS and compare(kind, op, default, operand)
