"""What the matcher reads of a stored document (`match_view`), and the early stop of the rules
scorer: both must answer exactly what the whole profile and the whole comparison answer."""

from __future__ import annotations

import itertools
from datetime import UTC, date, datetime
from typing import Any

import pytest

from app.domain.matching import match_fields, normalised_fields, score_pair
from app.domain.matching.index import match_view, refresh_keys
from app.domain.matching.scoring import score_pair_reaching
from app.domain.profile import Address, IdentifierRecord, Profile

AT = datetime(2026, 1, 1, tzinfo=UTC)


def stored(**fields: Any) -> dict[str, Any]:
    profile = Profile(
        _id="p1",
        created_at=AT,
        updated_at=AT,
        first_name="Zoë",
        last_name="O'Brien Lopez",
        birth_date=date(1984, 7, 3),
        identifiers=[
            IdentifierRecord(type="email", value="zoe.obrien@gmail.com", added_at=AT),
            IdentifierRecord(type="phone", value="+33612345678", added_at=AT),
            IdentifierRecord(type="customerId", value="c-1", added_at=AT),
        ],
        addresses=[Address(street="12 r. Victor Hugo", line2="Apt 3", city="Lyon", postcode="69002", country="fr")],
        **fields,
    )
    return refresh_keys(profile).to_document()


def test_a_match_view_reads_what_the_whole_profile_gives() -> None:
    document = stored()
    view = match_view(document)
    profile = Profile.from_document(document)
    assert view.id == "p1"
    assert list(view.blocking_keys) == profile.blocking_keys
    assert view.fields == match_fields(profile)
    assert view.fields.order_key == match_fields(profile).order_key


@pytest.mark.parametrize(
    "change",
    [
        pytest.param({"birthDate": datetime(1984, 7, 3, tzinfo=UTC)}, id="birth date as a datetime"),
        pytest.param({"firstName": 7}, id="a name that is not text"),
    ],
)
def test_a_document_of_another_shape_is_read_as_a_profile_reads_it(change: dict[str, Any]) -> None:
    document = stored() | change
    try:
        expected = match_fields(Profile.from_document(document))
    except ValueError:  # pydantic refuses it: so does the match view
        with pytest.raises(ValueError):
            match_view(document)
        return
    assert match_view(document).fields == expected


def test_a_pair_stopped_early_could_not_reach_the_threshold() -> None:
    people = [
        normalised_fields(
            first_name=first,
            last_name=last,
            birth_date=born,
            emails=emails,
            phones=["+33612345678"],
            addresses=[Address(street="12 rue Victor Hugo", city="Lyon", postcode="69002")],
        )
        for first, last, born, emails in itertools.product(
            ["Jean", "Jeanne", "Paul", "Dupont"],
            ["Dupont", "Dupond", "Jean"],
            [date(1980, 3, 12), date(1980, 12, 3), date(1981, 3, 12), None],
            [["jean.dupont@orange.fr"], ["paul@free.fr"]],
        )
    ]
    stopped = 0
    for a, b in itertools.combinations(people, 2):
        full = score_pair(a, b)
        for threshold in (0.0, 0.001, 0.01, 0.5, 0.9):
            found = score_pair_reaching(a, b, threshold)
            if found is None:
                stopped += 1
                assert full.score < threshold
            else:
                assert found == full
    assert stopped  # the early stop was exercised
