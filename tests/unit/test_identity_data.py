"""The identity benchmark's public data sets of Splink's (bench/identity_data.py): read whole, each
record as a connector would write it, so that every one reaches the API and none is refused."""

from __future__ import annotations

import csv
from datetime import date

from app.domain.identifiers import normalise
from bench.identity_data import HISTORICAL_YEARS_ON, SPLINK_FAKE_1000, SPLINK_HISTORICAL, fake_1000, historical
from bench.identity_store import true_pairs

DATA = fake_1000()


def test_every_record_of_fake_1000_is_a_profile_of_its_person() -> None:
    with SPLINK_FAKE_1000.open(newline="", encoding="utf-8") as rows:
        clusters = {f"f{int(row['unique_id']):04d}": row["cluster"] for row in csv.DictReader(rows)}
    assert DATA.truth == clusters and [p.id for p in DATA.profiles] == sorted(clusters)
    assert (len(set(DATA.truth.values())), len(true_pairs(DATA.truth))) == (251, 2_031)
    assert not DATA.held_out  # looked at for `learned.CLEAR_MATCH`: no longer blind


def test_its_values_are_ones_the_api_accepts() -> None:
    born = [p.birth_date for p in DATA.profiles if p.birth_date is not None]
    assert born and all(date(1900, 1, 1) <= b <= date(2026, 1, 1) for b in born)
    emails = [i.value for p in DATA.profiles for i in p.identifiers]
    assert emails and all(normalise("email", e).value == e for e in emails)
    assert all(len(p.addresses) <= 1 for p in DATA.profiles)


HISTORICAL = historical()


def test_every_record_of_the_historical_figures_is_a_profile_of_its_person() -> None:
    with SPLINK_HISTORICAL.open(newline="", encoding="utf-8") as rows:
        read = list(csv.DictReader(rows))
    assert HISTORICAL.truth == {row["unique_id"]: row["cluster"] for row in read}
    assert (len(HISTORICAL.profiles), len(set(HISTORICAL.truth.values()))) == (4_998, 500)
    # A birth date moved on by as many years, where the API accepts it: two records stay as far apart.
    by_id = {p.id: p for p in HISTORICAL.profiles}
    kept = [(row["dob"], by_id[row["unique_id"]].birth_date) for row in read if by_id[row["unique_id"]].birth_date]
    assert len(kept) == 2_807
    assert all(born == date.fromisoformat(dob).replace(year=int(dob[:4]) + HISTORICAL_YEARS_ON) for dob, born in kept)


def test_the_historical_figures_values_are_ones_the_api_accepts() -> None:
    born = [p.birth_date for p in HISTORICAL.profiles if p.birth_date is not None]
    assert born and all(date(1900, 1, 1) <= b <= date(2026, 1, 1) for b in born)
    assert all(len(p.addresses) <= 1 and not p.identifiers for p in HISTORICAL.profiles)
