"""Which given names are only the initials of another (`abbreviates`)."""

from __future__ import annotations

import pytest

from app.domain.name_initials import abbreviates


@pytest.mark.parametrize(
    ("value", "held"),
    [
        ("M.", "Marie"),
        ("M", "Marie"),
        ("m.", "MARIE"),
        ("É.", "Emile"),
        ("J.P.", "Jean Pierre"),
        ("J. P.", "Jean-Pierre"),
        ("J.", "Jean-Pierre"),
    ],
)
def test_initials_abbreviate_the_name_they_start(value: str, held: str) -> None:
    assert abbreviates(value, held)


@pytest.mark.parametrize(
    ("value", "held"),
    [
        ("S.", "Marie"),  # another letter: another name
        ("Marie", "M."),  # the full name says more
        ("M.", "M."),
        ("M.", "M. C."),  # initials against initials
        ("Ma.", "Marie"),  # a short form is not an initial
        ("J. P.", "Jean"),  # more initials than the name has words
        ("J. M.", "Jean Pierre"),
        (None, "Marie"),
        ("M.", None),
    ],
)
def test_other_names_do_not(value: str | None, held: str | None) -> None:
    assert not abbreviates(value, held)
