"""Free-form data as it leaves the server (event properties, traits, preferences, rating comments, a
merge's reason): as stored for a key with read:pii, else with the personal data in it masked."""

from __future__ import annotations

from typing import TypeVar, cast

from app.domain.access import Scope
from app.domain.pii_mask import mask_personal
from graphql_schema.context import Info

T = TypeVar("T")


def visible(info: Info, value: T, *, attributes: bool = False) -> T:
    """`attributes`: the value is a person's own (traits, stated preferences), where a key ending in
    `name` is theirs (app/domain/pii_mask.py)."""
    return value if info.context.may(Scope.READ_PII) else cast(T, mask_personal(value, attributes=attributes))
