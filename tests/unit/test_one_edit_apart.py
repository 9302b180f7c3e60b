"""The typo test every comparison asks (`scoring._one_edit_apart`) says what the Damerau-Levenshtein
distance of jellyfish says: the two strings are one edit apart exactly when the distance is 1."""

from __future__ import annotations

import jellyfish
from hypothesis import given, settings
from hypothesis import strategies as st

from app.domain.matching.scoring import _one_edit_apart

# Few letters, so that most strings drawn are near one another: a letter replaced, added, dropped or
# swapped with its neighbour, or two of those at once.
_TEXT = st.text(alphabet="abc.+1", max_size=8)


@st.composite
def _edited(draw: st.DrawFn) -> tuple[str, str]:
    x = draw(_TEXT)
    y = x
    for _ in range(draw(st.integers(0, 2))):
        at = draw(st.integers(0, len(y)))
        kind = draw(st.sampled_from(["replace", "add", "drop", "swap"]))
        if kind == "add":
            y = y[:at] + draw(st.sampled_from("abc")) + y[at:]
        elif at < len(y) and kind == "replace":
            y = y[:at] + draw(st.sampled_from("abc")) + y[at + 1 :]
        elif at < len(y) and kind == "drop":
            y = y[:at] + y[at + 1 :]
        elif at + 1 < len(y):
            y = y[:at] + y[at + 1] + y[at] + y[at + 2 :]
    return x, y


@settings(max_examples=2000)
@given(st.one_of(_edited(), st.tuples(_TEXT, _TEXT)))
def test_one_edit_apart_exactly_when_the_distance_is_one(pair: tuple[str, str]) -> None:
    x, y = pair
    expected = jellyfish.damerau_levenshtein_distance(x, y) == 1
    assert _one_edit_apart(x, y) == expected
    assert _one_edit_apart(y, x) == expected


def test_each_kind_of_edit_and_what_is_not_one() -> None:
    assert _one_edit_apart("+33612345678", "+33612345687")  # neighbours swapped
    assert _one_edit_apart("jean.dupont@gmail.com", "jean.dupond@gmail.com")  # a letter replaced
    assert _one_edit_apart("Ana", "Anna") and _one_edit_apart("Anna", "Ana")  # added, dropped
    assert _one_edit_apart("", "a")
    assert not _one_edit_apart("Maria", "Maria")  # no edit
    assert not _one_edit_apart("Maria", "Martina")  # two letters added
    assert not _one_edit_apart("abc", "cba")  # swapped, but not neighbours
    assert not _one_edit_apart("ab", "ba" + "c")  # a swap and an addition
