"""What an event may carry: the bounds every event's data is checked against before anything of it
is written, and the read-side cut that keeps data stored before these bounds readable.

The bounds protect the other customers of the server (a 1 MB property slows every read of the
profile holding it) and the profile itself: a value a store, the JSON encoder or GraphQL cannot
take (a lone surrogate, infinity, an integer past 64 bits, nesting past the encoder's depth) would
otherwise fail its whole batch, or every later read of the profile.
"""

from __future__ import annotations

import json
import math
import re
from dataclasses import dataclass
from datetime import date
from typing import Any

from app.domain.errors import InvalidInput

# MongoDB refuses documents nested deeper than 100 levels; a profile holds properties about four
# levels down (profile, recent, item, properties): 64 leaves room, and no configuration goes past it.
MAX_STORED_DEPTH = 64
# Amounts in currency units: a billion is beyond any order, and its cents (1e11) sum safely in 64 bits.
MAX_AMOUNT = 1_000_000_000
# Quantities and anything else a GraphQL Int shows (a 32-bit signed integer).
MAX_GRAPHQL_INT = 2**31 - 1
# Both stores keep integers in 64 bits (BSON int64, the embedded store's JSON encoder).
_INT64 = 2**63
_SURROGATE = re.compile("[\ud800-\udfff]")
TOO_DEEP_MARKER = f"[nested too deep: more than {MAX_STORED_DEPTH} levels are not shown]"


@dataclass(frozen=True, slots=True)
class EventLimits:
    """Bounds on one event's properties (messageId and identifier values have tighter ones of their own)."""

    max_properties_bytes: int = 65_536  # the properties as compact UTF-8 JSON
    max_string_length: int = 8_192  # any string, and any key, in characters
    max_depth: int = 16  # the properties object is level 1
    max_array_items: int = 1_000


def is_valid_unicode(text: str) -> bool:
    """False when `text` holds a lone surrogate (JSON's "\\ud800" reads into Python as one): no
    store, encoder or client can take it as text."""
    if text.isascii():
        return True
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def shown(text: str, *, at_most: int = 128) -> str:
    """`text` safe to send back to a client: lone surrogates replaced, cut to `at_most` characters."""
    if not is_valid_unicode(text):
        text = _SURROGATE.sub("\ufffd", text)
    return text if len(text) <= at_most else text[:at_most] + "…"


# A path as a linked list, (parent, key), so that walking costs nothing per value until one fails.
_Path = tuple[Any, str | int] | None


def _render(path: _Path, root: str) -> str:
    parts: list[str] = []
    while path is not None:
        path, key = path
        if isinstance(key, int):
            parts.append(f"[{key}]")
        else:
            parts.append(f".{shown(key, at_most=40)}")
    return root + "".join(reversed(parts))


def check_properties(properties: Any, limits: EventLimits, *, field: str = "properties") -> None:
    """Raise InvalidInput naming the path of the first value past `limits` (or one no store or client
    could take); return when the whole value is within them.

    A first pass decides the usual event (it recurses no deeper than `max_depth`); the careful walk
    that names a problem is iterative (no recursion limit to hit whatever the nesting). Both stop as
    soon as the characters seen exceed the byte bound, so a hostile value costs at most that much work."""
    if _within(properties, 1, limits, limits.max_properties_bytes) is not None:
        return  # the usual case, decided in one pass with no path kept
    _walk(properties, limits, field)


def _walk(properties: Any, limits: EventLimits, field: str) -> None:
    """check_properties the careful way: each value's path kept, so that the first problem is named."""
    budget = limits.max_properties_bytes
    at_most = 0
    stack: list[tuple[Any, _Path, int]] = [(properties, None, 1)]
    while stack:
        value, path, depth = stack.pop()
        problem = _problem(value, depth, limits)
        if problem is not None:
            raise InvalidInput(problem, field=_render(path, field))
        budget -= _size_at_least(value)
        if budget < 0:
            raise _too_large(limits, field)
        at_most += _size_at_most(value)
        if isinstance(value, dict | list):
            children = enumerate(value) if isinstance(value, list) else value.items()
            # Reversed onto the stack: the first failure reported is the first in the document.
            stack.extend((child, (path, key), depth + 1) for key, child in reversed(list(children)))
    if at_most <= limits.max_properties_bytes:
        return  # the usual case: even the most each value could take fits, no need to encode
    size = len(json.dumps(properties, ensure_ascii=False, separators=(",", ":"), default=str).encode())
    if size > limits.max_properties_bytes:
        raise _too_large(limits, field)


def _within(value: Any, depth: int, limits: EventLimits, room: int) -> int | None:
    """`_size_at_most` of `value` and all it holds when every value in it passes `_problem` and the
    total fits in `room`; None otherwise, and for anything but plain JSON types (`check_properties`
    then walks it the careful way, which names the first problem). Depth is bounded by max_depth."""
    kind = type(value)
    if kind is str:
        if len(value) > limits.max_string_length or not is_valid_unicode(value):
            return None
        size = 6 * len(value) + 2
    elif kind is bool or value is None:
        size = 32
    elif kind is int:
        size = 32 if -_INT64 <= value < _INT64 else room + 1
    elif kind is float:
        size = 32 if math.isfinite(value) else room + 1
    elif kind is dict:
        if depth > limits.max_depth or _reads_as_a_reference(value):
            return None
        size = 2
        for key, item in value.items():
            if type(key) is not str or len(key) > limits.max_string_length or "\x00" in key:
                return None
            if not is_valid_unicode(key) or (held := _within(item, depth + 1, limits, room - size)) is None:
                return None
            size += 6 * len(key) + 4 + held
            if size > room:
                return None
    elif kind is list:
        if depth > limits.max_depth or len(value) > limits.max_array_items:
            return None
        size = 2 + len(value)
        for item in value:
            if (held := _within(item, depth + 1, limits, room - size)) is None:
                return None
            size += held
            if size > room:
                return None
    else:
        return None
    return size if size <= room else None


def _reads_as_a_reference(value: dict[Any, Any]) -> bool:
    """An object MongoDB's driver decodes as a DBRef, not as itself: stored, the profile holding it read
    back no more on that store (the other one kept it as it was)."""
    return isinstance(value.get("$ref"), str) and "$id" in value and isinstance(value.get("$db"), str | None)


def _too_large(limits: EventLimits, field: str) -> InvalidInput:
    return InvalidInput(f"at most {limits.max_properties_bytes:,} bytes as JSON", field=field)


def _problem(value: Any, depth: int, limits: EventLimits) -> str | None:
    """What is wrong with `value` itself (not with what it holds), if anything."""
    if isinstance(value, str):
        if len(value) > limits.max_string_length:
            return f"at most {limits.max_string_length:,} characters"
        if not is_valid_unicode(value):
            return "not valid Unicode (it holds a lone surrogate)"
    elif isinstance(value, bool) or value is None:
        pass
    elif isinstance(value, int):
        if not -_INT64 <= value < _INT64:
            return "an integer must fit in 64 bits (signed)"
    elif isinstance(value, float):
        if not math.isfinite(value):
            return "must be a finite number"
    elif isinstance(value, list):
        if depth > limits.max_depth:
            return f"nested deeper than {limits.max_depth} levels"
        if len(value) > limits.max_array_items:
            return f"at most {limits.max_array_items:,} items"
    elif isinstance(value, dict):
        if depth > limits.max_depth:
            return f"nested deeper than {limits.max_depth} levels"
        # A bad key is reported at its object: the key itself is what cannot be shown.
        for key in value:
            if not isinstance(key, str):
                return "holds a key that is not a string"
            if len(key) > limits.max_string_length:
                return f"holds a key of more than {limits.max_string_length:,} characters"
            if not is_valid_unicode(key):
                return "holds a key that is not valid Unicode (it holds a lone surrogate)"
            if "\x00" in key:
                return "holds a key with a NUL character"
        if _reads_as_a_reference(value):
            return (
                "holds both `$ref` and `$id`, which MongoDB reads back as a reference (a DBRef), not as this "
                "object: rename either key"
            )
    elif not isinstance(value, date):  # dates: what Extended JSON files ({"$date": …}) hold, stored natively
        return f"a {type(value).__name__} is not JSON (string, number, boolean, null, list or object)"
    return None


def _size_at_least(value: Any) -> int:
    """A lower bound of `value`'s own share of the JSON text (its children count for themselves)."""
    if isinstance(value, str):
        return len(value) + 2
    if isinstance(value, dict):
        return 2 + sum(len(key) + 3 for key in value)
    return 2


def _size_at_most(value: Any) -> int:
    """An upper bound of the same (a character takes at most 6 bytes, as a \\u escape; a number or a
    date at most 32 characters)."""
    if isinstance(value, str):
        return 6 * len(value) + 2
    if isinstance(value, dict):
        return 2 + sum(6 * len(key) + 4 for key in value)
    if isinstance(value, list):
        return 2 + len(value)
    return 32


def readable(value: dict[str, Any]) -> dict[str, Any]:
    """`value` with whatever lies deeper than MAX_STORED_DEPTH replaced by a marker saying so.

    Ingestion refuses such data, but an older version stored it, and the response encoder (orjson
    stops at 254 levels, the GraphQL envelope included) would fail every read of the profile."""
    if not _deeper_than(value, MAX_STORED_DEPTH):
        return value  # the usual case: returned as it is, nothing copied
    return _cut(value, MAX_STORED_DEPTH)  # type: ignore[no-any-return]


def _deeper_than(value: Any, levels: int) -> bool:
    stack: list[tuple[Any, int]] = [(value, 1)]
    while stack:
        current, depth = stack.pop()
        children = current.values() if isinstance(current, dict) else current
        for child in children:
            if isinstance(child, dict | list):
                if depth + 1 > levels:
                    return True
                stack.append((child, depth + 1))
    return False


def _cut(value: Any, levels: int) -> Any:
    if not isinstance(value, dict | list):
        return value
    if levels == 0:
        return TOO_DEEP_MARKER
    if isinstance(value, dict):
        return {key: _cut(child, levels - 1) for key, child in value.items()}
    return [_cut(child, levels - 1) for child in value]
