"""How much free-form data one profile may hold, whatever the number of writes that bring it.

Each event's properties and each upsert's traits are bounded (event_limits.py), but they added up:
450 identify events, each with new trait keys within its own bounds, left 25 MB of traits on one
profile, and every later event of that person then took half a second on the server, since a write
reads and writes its profile whole. The write that would take a profile's traits past
MAX_TRAITS_BYTES is refused, that event or upsert alone, and the profile keeps what it had.

A merge adds them up too: each profile within the bound, a merge of a hundred held a hundred times
it. A merge whose survivor could hold more than the bound is not made (merged_refusal).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
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


def merged_refusal(traits: Sequence[Mapping[str, Any]], preferences: Sequence[Mapping[str, Any]]) -> str | None:
    """Why the profiles holding these traits and stated preferences cannot be merged into one, or
    None. The survivor keeps one value of each key, which its rule chooses (reconciliation.py):
    counted here at the longest of them, so that no choice takes it past the bound."""
    for kind, held in (("traits", traits), ("preferences", preferences)):
        if (size := _most_merged_bytes(held)) > MAX_TRAITS_BYTES:
            return f"the merged profile's {kind} could take {size:,} bytes (limit {MAX_TRAITS_BYTES:,})"
    return None


def _most_merged_bytes(held: Sequence[Mapping[str, Any]]) -> int:
    """The compact JSON size of the union of `held`, each key at its longest value."""
    if len(held) < 2:
        return len(orjson.dumps(held[0], default=str)) if held else 2
    longest: dict[str, int] = {}
    for mapping in held:
        for key, value in mapping.items():
            entry = len(orjson.dumps({key: value}, default=str)) - 1  # `"key":value` and a separator
            if entry > longest.get(key, 0):
                longest[key] = entry
    return 1 + sum(longest.values()) if longest else 2
