"""How much free-form data one profile may hold, whatever the number of writes that bring it.

Each event's properties and each upsert's traits are bounded (event_limits.py), but they added up:
450 identify events, each with new trait keys within its own bounds, left 25 MB of traits on one
profile, and every later event of that person then took half a second on the server, since a write
reads and writes its profile whole. The write that would take a profile's traits past
MAX_TRAITS_BYTES is refused, that event or upsert alone, and the profile keeps what it had.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import orjson

from app.domain.errors import InvalidInput

MAX_TRAITS_BYTES = 256 * 1024  # as compact JSON: hundreds of ordinary traits


def traits_refusal(
    current: Mapping[str, Any], added: Mapping[str, Any] | None, *, field: str, kind: str = "traits"
) -> InvalidInput | None:
    """The refusal of a write setting `added` on traits (or, `kind`, stated preferences: upserts add to
    them the same way) holding `current`, when the two together pass MAX_TRAITS_BYTES (None when they
    fit, or nothing is added)."""
    if not added:
        return None
    size = len(orjson.dumps({**current, **added}, default=str))
    if size <= MAX_TRAITS_BYTES:
        return None
    return InvalidInput(
        f"the profile's {kind} would take {size:,} bytes with these, more than {MAX_TRAITS_BYTES:,}: "
        f"remove {kind} it no longer needs first",
        field=field,
    )
