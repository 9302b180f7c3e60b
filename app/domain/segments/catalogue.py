"""The paths a segment condition may name, each with its value type: the only way a path gets into a
condition, so the compilers never see a client's text.

Built from the Profile model (identity fields, `addresses.*`, `stats.*`, `qualitative.*`, `rfm.*`), plus
`stats.channels.<channel>`, `consents.<purpose>.granted|at`, the trait names a deployment declares
(`traits.<name>` with a declared type) and the event properties conditions may filter on (the typed
properties of each event type, plus declared extras). `PathCatalogue.resolve` is the entry point.
"""

from __future__ import annotations

import difflib
import re
import types
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import date, datetime
from enum import StrEnum
from typing import Annotated, Any, Union, get_args, get_origin

from pydantic import BaseModel

from app.domain.event_effects import IDENTITY_FIELDS
from app.domain.events import PROPERTIES_BY_TYPE, Channel, EventType
from app.domain.keys import check_keys
from app.domain.profile import Address, Profile, Qualitative, Rfm, Stats

# The shape of every key that may reach a database path: no dot, no `$`, nothing quoted.
SAFE_KEY = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,63}\Z")
_PURPOSE = re.compile(r"^[a-z][a-z0-9_]{0,63}\Z")  # as ConsentUpdateProperties accepts it


class ValueType(StrEnum):
    STRING = "string"
    NUMBER = "number"
    BOOLEAN = "boolean"
    DATE = "date"  # a calendar date, stored as "YYYY-MM-DD" in both backends
    DATETIME = "datetime"


class UnknownPath(ValueError):
    """A path the catalogue does not hold; the message says what was meant when it can guess."""


@dataclass(frozen=True, slots=True)
class PathSpec:
    """One readable value. `path` is the document path (`stats.orders`); `array` names the list the
    path reaches into (`addresses` for `addresses.city`: the condition holds for any element);
    `default` is what a missing field reads as (counters start at 0), so stores and predicate agree
    on documents written before a counter existed."""

    path: str
    type: ValueType
    default: int | None = None
    array: str | None = None
    # Held as ISO 8601 text whatever its type: a declared date or datetime trait (JSON has no dates),
    # compared as text in the predicate and both stores, so that they agree.
    text: bool = False

    @property
    def keys(self) -> tuple[str, ...]:
        """Document keys from the root, or from the list element when `array` is set."""
        tail = self.path[len(self.array) + 1 :] if self.array else self.path
        keys = tuple(tail.split("."))
        for key in keys:
            if not SAFE_KEY.match(key):  # defence in depth: every path is built by this module
                raise ValueError(f"unsafe document key {key!r}")
        return keys


def _value_type(annotation: Any) -> ValueType | None:
    """The condition type of a model field's annotation (`int | None` -> NUMBER), None if not a scalar."""
    origin = get_origin(annotation)
    if origin is Annotated:
        return _value_type(get_args(annotation)[0])
    if origin in (Union, types.UnionType):
        kinds = {_value_type(arg) for arg in get_args(annotation) if arg is not type(None)}
        return kinds.pop() if len(kinds) == 1 else None
    scalars: dict[Any, ValueType] = {
        bool: ValueType.BOOLEAN,
        int: ValueType.NUMBER,
        float: ValueType.NUMBER,
        str: ValueType.STRING,
        datetime: ValueType.DATETIME,
        date: ValueType.DATE,
    }
    return scalars.get(annotation)


def _model_paths(model: type[BaseModel], prefix: str, *, array: str | None = None) -> dict[str, PathSpec]:
    paths: dict[str, PathSpec] = {}
    for name, field in model.model_fields.items():
        kind = _value_type(field.annotation)
        if kind is None:
            continue
        path = f"{prefix}.{field.alias or name}"
        default = field.default if isinstance(field.default, int) and not isinstance(field.default, bool) else None
        paths[path] = PathSpec(path, kind, default=default, array=array)
    return paths


def _profile_paths() -> dict[str, PathSpec]:
    aliases = {field.alias or name: field for name, field in Profile.model_fields.items()}
    paths: dict[str, PathSpec] = {}
    for key in (*IDENTITY_FIELDS, "createdAt"):
        kind = _value_type(aliases[key].annotation)
        assert kind is not None, key
        paths[key] = PathSpec(key, kind)
    paths |= _model_paths(Address, "addresses", array="addresses")
    paths |= _model_paths(Stats, "stats")
    paths |= {f"stats.channels.{c}": PathSpec(f"stats.channels.{c}", ValueType.NUMBER, default=0) for c in Channel}
    paths |= _model_paths(Qualitative, "qualitative")
    paths |= _model_paths(Rfm, "rfm")
    return paths


PROFILE_PATHS: Mapping[str, PathSpec] = _profile_paths()


def _event_property_types() -> dict[tuple[EventType, str], ValueType]:
    found: dict[tuple[EventType, str], ValueType] = {}
    for event_type, model in PROPERTIES_BY_TYPE.items():
        for name, field in model.model_fields.items():
            kind = _value_type(field.annotation)
            if kind is not None and SAFE_KEY.match(name):
                found[(event_type, name)] = kind
    return found


EVENT_PROPERTY_TYPES: Mapping[tuple[EventType, str], ValueType] = _event_property_types()


class PathCatalogue:
    """Profile paths plus what a deployment declares: trait names and extra event properties.

    `traits` maps a trait name to its type (`{"tier": ValueType.STRING}`); `event_properties` maps
    `(event type, property)` to a type for properties beyond the typed ones of each event type
    (`{(EventType.CART_ABANDONED, "cartId"): ValueType.STRING}`)."""

    def __init__(
        self,
        traits: Mapping[str, ValueType] | None = None,
        event_properties: Mapping[tuple[EventType, str], ValueType] | None = None,
    ) -> None:
        traits = dict(traits or {})
        check_keys(traits)
        self._paths = dict(PROFILE_PATHS) | {
            f"traits.{n}": PathSpec(f"traits.{n}", t, text=t in (ValueType.DATE, ValueType.DATETIME))
            for n, t in traits.items()
        }
        self._properties = dict(EVENT_PROPERTY_TYPES) | dict(event_properties or {})
        for _, name in self._properties:
            if not SAFE_KEY.match(name):
                raise ValueError(f"event property name {name!r} is not a plain key")

    def resolve(self, path: str) -> PathSpec:
        spec = self._paths.get(path)
        if spec is not None:
            return spec
        parts = path.split(".")
        if len(parts) == 3 and parts[0] == "consents" and parts[2] in ("granted", "at"):
            if not _PURPOSE.match(parts[1]):
                raise UnknownPath(f'consent purpose "{parts[1]}" must be lower-case letters, digits or underscores')
            return PathSpec(path, ValueType.BOOLEAN if parts[2] == "granted" else ValueType.DATETIME)
        close = difflib.get_close_matches(path, self._paths, n=1, cutoff=0.75)
        message = f'unknown path "{path}"' + (f" (did you mean {close[0]}?)" if close else "")
        if path.startswith("traits."):
            message += "; a trait must be declared before a segment can use it"
        elif path.startswith("consents."):
            message += "; use consents.<purpose>.granted or consents.<purpose>.at"
        raise UnknownPath(message)

    def event_property(self, event_type: EventType, name: str) -> PathSpec:
        kind = self._properties.get((event_type, name))
        if kind is not None:
            return PathSpec(f"properties.{name}", kind)
        known = sorted(n for t, n in self._properties if t is event_type)
        close = difflib.get_close_matches(name, known, n=1, cutoff=0.75)
        hint = f" (did you mean {close[0]}?)" if close else f"; known: {', '.join(known) or 'none'}"
        raise UnknownPath(f'unknown property "{name}" for {event_type} events{hint}')

    @property
    def paths(self) -> list[str]:
        return sorted(self._paths)


def is_purpose(text: str) -> bool:
    return bool(_PURPOSE.match(text))
