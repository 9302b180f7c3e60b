"""A given name written as its initials ("M." for "Marie", "J. P." for "Jean Pierre") says less than
the name it abbreviates, so it does not replace it: not on a write, not on an identify event, not in
a merge. A till receipt or a form that asks for an initial wrote "M." over the "Marie" a profile held;
the matcher then read the profile as anyone's whose name starts with M, and a twin sister's records
(another given name, the same birth date and mailbox) merged into it instead of being told apart.
"""

from __future__ import annotations

from typing import Any

from app.domain.matching.fields import fold_name


def abbreviates(value: Any, held: Any) -> bool:
    """Whether the given name `value` is only the initials of the given name `held`: each of its
    words one letter, the first letters of `held`'s words, and `held` longer."""
    if not isinstance(value, str) or not isinstance(held, str):
        return False
    # A dot ends an initial ("J.P."), where fold_name would join the letters into one word.
    short, full = fold_name(value.replace(".", " ")).split(), fold_name(held.replace(".", " ")).split()
    if not short or len(short) > len(full) or any(len(word) != 1 for word in short):
        return False
    if all(len(word) == 1 for word in full):
        return False  # initials against initials: neither says more
    return all(letter == word[0] for letter, word in zip(short, full, strict=False))
