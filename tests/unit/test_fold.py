"""`fields.fold`, the canonical form names, streets and cities are compared in: written with or
without accents, ligatures, apostrophes and dots, one value folds to one form (ASCII text skips
the Unicode decomposition, which would leave it as it is)."""

from __future__ import annotations

import pytest

from app.domain.matching.fields import fold


@pytest.mark.parametrize(
    ("written", "folded"),
    [
        ("Émilie-Anne d'Arc", "emilie anne darc"),  # an accent, a hyphen, an apostrophe
        ("Emilie-Anne d'Arc", "emilie anne darc"),  # the same without the accent: ASCII
        ("Zoë", "zoe"),
        ("Ana  María", "ana maria"),
        ("Straße", "strasse"),  # casefold
        ("Œuvre", "oeuvre"),  # a ligature
        ("ﬁnn", "finn"),  # a compatibility ligature: NFKD
        ("Bjørn", "bjorn"),  # a letter without a decomposition
        ("  O'Brien  ", "obrien"),
        ("J.P. Smith", "jp smith"),
    ],
)
def test_one_value_folds_to_one_form_whatever_its_accents(written: str, folded: str) -> None:
    assert fold(written) == folded
