"""What the matcher reads of a stored document (`match_view`), and the early stop of the rules
scorer: both must answer exactly what the whole profile and the whole comparison answer."""

from __future__ import annotations

import itertools
from dataclasses import dataclass
from datetime import UTC, date, datetime
from typing import Any

import pytest

from app.domain.matching import MatchFields, match_fields, normalised_fields, score_pair, scoring
from app.domain.matching.candidates import RULES_SCORER
from app.domain.matching.fields import contacts_of, names_and_birth_date
from app.domain.matching.index import match_view, refresh_keys
from app.domain.matching.scoring import names_and_birth_date_reasons, score_pair_reaching
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


def test_a_match_view_reads_the_names_and_birth_date_alone_as_its_fields_hold_them() -> None:
    view = match_view(stored())
    names = view.names  # read before the fields are normalised
    assert names == names_and_birth_date(view.fields)
    assert (names.emails, names.phones, names.addresses) == ((), (), ())
    assert view.birth_date == date(1984, 7, 3) == view.fields.birth_date
    assert names.first_phonetic == view.fields.first_phonetic and names.last_joined == view.fields.last_joined


@pytest.mark.parametrize(
    "change",
    [
        pytest.param({}, id="every contact field"),
        pytest.param({"addresses": []}, id="no address"),
        pytest.param({"identifiers": [{"type": "customerId", "value": "c-1", "addedAt": AT}]}, id="no email nor phone"),
    ],
)
def test_a_match_view_reads_the_contact_fields_it_holds_as_its_fields_hold_them(change: dict[str, Any]) -> None:
    view = match_view(stored() | change)
    held = view.contacts  # read before the fields are normalised
    assert held == contacts_of(view.fields)
    assert ("email" in held, "address" in held) == ("identifiers" not in change, "addresses" not in change)


PEOPLE = [
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
THRESHOLDS = (0.0, 0.001, 0.01, 0.5, 0.9)


@dataclass
class _Named:
    birth_date: date | None
    names: MatchFields
    contacts: frozenset[str] = frozenset()


def test_a_look_alike_is_passed_over_on_its_names_and_birth_date_exactly_when_the_early_stop_stops_it() -> None:
    passed_over = 0
    for a, b in itertools.permutations(PEOPLE, 2):
        other = _Named(b.birth_date, names_and_birth_date(b))
        for threshold in THRESHOLDS:
            target = _Named(a.birth_date, names_and_birth_date(a))
            reaches = RULES_SCORER.may_reach(target, other, threshold)
            assert reaches == (score_pair_reaching(a, b, threshold) is not None)
            passed_over += not reaches
    assert passed_over


def test_a_pair_stopped_early_could_not_reach_the_threshold() -> None:
    stopped = 0
    for a, b in itertools.combinations(PEOPLE, 2):
        full = score_pair(a, b)
        for threshold in THRESHOLDS:
            found = score_pair_reaching(a, b, threshold)
            if found is None:
                stopped += 1
                assert full.score < threshold
            else:
                assert found == full
    assert stopped  # the early stop was exercised


def test_the_names_read_once_are_those_of_any_pair_holding_the_same_names_and_birth_dates() -> None:
    """`names_and_birth_date_reasons` keeps what it read by the two's names and birth dates: a lookup's
    bound reads a look-alike's names alone, its score the whole profile (other emails too)."""
    pairs = list(itertools.permutations(PEOPLE, 2))
    fresh = []
    for a, b in pairs:
        scoring._NAMES_READ.clear()
        fresh.append(names_and_birth_date_reasons(a, b))
        # The names' reasons score_pair gives the pair read without its contacts, in its order (the
        # rules read a surname or a year of birth in an email too: `inEmail`, `yearInEmail`).
        alone = score_pair(names_and_birth_date(a), names_and_birth_date(b))
        assert [r for r in alone.reasons if r.field in ("firstName", "lastName", "birthDate")] == [
            r for r in fresh[-1] if r.field in ("firstName", "lastName", "birthDate")
        ]
    scoring._NAMES_READ.clear()
    for (a, b), read in zip(pairs * 2, fresh * 2, strict=True):  # the second time round, each one kept
        assert names_and_birth_date_reasons(names_and_birth_date(a), names_and_birth_date(b)) == read
        assert names_and_birth_date_reasons(a, b) == read
        assert names_and_birth_date_reasons(b, a) == read  # one answer either way round


def test_the_names_read_once_leave_one_at_a_time_the_least_recently_read_first(monkeypatch: pytest.MonkeyPatch) -> None:
    """Full, the kept readings make room for a new one by letting go of the least recently read alone
    (emptied at once, the 16,384 took a lookup 12-20 ms to free); each answer stays a fresh one's."""
    monkeypatch.setattr(scoring, "_NAMES_READ_MOST", 3)
    scoring._NAMES_READ.clear()
    by_key = {  # pairs of distinct names and birth dates: each kept once
        (a.first_name, a.last_name, a.birth_date, b.first_name, b.last_name, b.birth_date): (a, b)
        for a, b in itertools.permutations(PEOPLE, 2)
    }
    keys = list(by_key)[:5]
    first, second, third, fourth, fifth = (by_key[key] for key in keys)
    read = [names_and_birth_date_reasons(a, b) for a, b in (first, second, third)]
    assert list(scoring._NAMES_READ) == keys[:3]
    assert names_and_birth_date_reasons(*first) == read[0]  # read again: the most recent now
    names_and_birth_date_reasons(*fourth)
    assert list(scoring._NAMES_READ) == [keys[2], keys[0], keys[3]]  # the second, least recent, left
    names_and_birth_date_reasons(*fifth)
    assert list(scoring._NAMES_READ) == [keys[0], keys[3], keys[4]]
    scoring._NAMES_READ.clear()
    assert names_and_birth_date_reasons(*second) == read[1]  # the same reading, made afresh
    scoring._NAMES_READ.clear()
