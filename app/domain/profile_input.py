"""Direct profile writes (a CRM import): what may be set, validated before anything is written."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import date, datetime
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator
from pydantic.alias_generators import to_camel

from app.domain.clock import dated_after
from app.domain.errors import InvalidInput, first_problem
from app.domain.event_limits import EventLimits, check_properties
from app.domain.events import RawIdentifier, normalise_all
from app.domain.identifiers import Identifier
from app.domain.keys import check_keys
from app.domain.name_initials import abbreviates
from app.domain.person_fields import (
    MOST_ADDRESSES,
    AddressInput,
    Gender,
    Language,
    Organisation,
    PersonName,
    checked_birth_date,
)
from app.domain.profile import Profile
from app.domain.profile_change import ProfileChange, provenance_key

# Bounds on `traits` and `preferences` in one upsert: an event's properties' (64 KiB, 16 levels, ...).
FREE_FORM_LIMITS = EventLimits()


class ProfileFields(BaseModel):
    """Everything `upsertProfile` may set besides identifiers. Absent means unchanged; a field given
    as null is cleared (`model_fields_set` tells the two apart), as `addresses: []` empties the list:
    a wrong company or name could not be removed short of erasing the person."""

    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)
    first_name: PersonName | None = None
    last_name: PersonName | None = None
    birth_date: date | None = None
    gender: Gender | None = None
    language: Language | None = None
    company: Organisation | None = None
    job_title: Organisation | None = None
    addresses: list[AddressInput] | None = Field(default=None, max_length=MOST_ADDRESSES)
    traits: dict[str, Any] | None = None
    preferences: dict[str, Any] | None = None

    _keys = field_validator("traits", "preferences")(check_keys)

    @field_validator("birth_date")
    @classmethod
    def _lived(cls, value: date | None) -> date | None:
        return None if value is None else checked_birth_date(value)


_FIELD_PATHS = {
    "first_name": "firstName",
    "last_name": "lastName",
    "gender": "gender",
    "language": "language",
    "company": "company",
    "job_title": "jobTitle",
}


# The input's fields as the API names them (GraphQL's ProfileInput, profiles.jsonl): birthDate, jobTitle.
_INPUT_NAMES = {name: to_camel(name) for name in ProfileFields.model_fields}


def parse_profile_input(
    identifiers: list[RawIdentifier], fields: dict[str, Any]
) -> tuple[list[Identifier], ProfileFields]:
    if not identifiers:
        raise InvalidInput("a profile needs at least one identifier", field="identifiers")
    normalised = normalise_all(identifiers)
    try:
        parsed = ProfileFields.model_validate(fields)
    except ValidationError as exc:
        path, message = first_problem(exc, names=_INPUT_NAMES)
        raise InvalidInput(f"{path}: {message}", field=path) from None
    for name in ("traits", "preferences"):
        # Free-form data is held to an event's properties' bounds: one upsert of a 900 KB trait made
        # every later event of the person slow, and a lone surrogate or an integer past 64 bits,
        # which no store can encode, was an internal error.
        if (value := getattr(parsed, name)) is not None:
            check_properties(value, FREE_FORM_LIMITS, field=name)
    return normalised, parsed


def change_for_fields(
    fields: ProfileFields, *, at: datetime, source: str, profile: Profile | None = None
) -> ProfileChange:
    """The change an upsert makes to `profile` (None: a new one). It states what is true now, so each
    field is dated after the time of the value it replaces when that is later than `at`: an event may
    be dated up to MAX_FUTURE_SKEW ahead, and a merge's replay, which keeps the newest value by time,
    would otherwise give that older value back over this one. A given name written as the initials
    of the one held (`abbreviates`) leaves it as it is."""
    change = ProfileChange()
    held: Mapping[str, datetime] = profile.field_times if profile is not None else {}

    def put(path: str, value: Any) -> None:
        change.set_field(path, value, at=dated_after(at, held.get(provenance_key(path))), source=source)

    given = fields.model_fields_set
    if profile is not None and abbreviates(fields.first_name, profile.first_name):
        given = given - {"first_name"}
    for name, path in _FIELD_PATHS.items():
        if name in given:
            put(path, getattr(fields, name))
    if "birth_date" in given:
        put("birthDate", fields.birth_date.isoformat() if fields.birth_date is not None else None)
    if "addresses" in given:
        put("addresses", [a.model_dump(exclude_none=True) for a in fields.addresses or []])
    for key, value in (fields.traits or {}).items():
        put(f"traits.{key}", value)
    for key, value in (fields.preferences or {}).items():
        change.set[f"qualitative.preferences.{key}"] = value
    return change
