"""The synthetic people of the identity benchmark (bench/people): seeded, several records a person,
the look-alikes the matcher must keep apart, and no artefact that would make them easy or hard."""

from __future__ import annotations

from collections import Counter, defaultdict

from bench.people.population import people, records

PEOPLE = people(3000, 11)
RECORDS = records(PEOPLE, 11)


def test_the_same_seed_gives_the_same_people_and_records() -> None:
    assert people(300, 11) == PEOPLE[:300]
    assert records(people(300, 11), 11) != records(people(300, 12), 12)


def test_each_person_has_one_to_four_records_and_many_have_several() -> None:
    per_person = Counter(record.person for record in RECORDS)
    assert set(per_person) == {p.number for p in PEOPLE}
    assert set(per_person.values()) == {1, 2, 3, 4}
    assert sum(1 for count in per_person.values() if count > 1) > len(PEOPLE) / 2


def test_members_of_one_household_never_share_a_given_name() -> None:
    homes: defaultdict[object, list[str]] = defaultdict(list)
    for person in PEOPLE:
        homes[person.places[0]].append(person.first)
    shared = [names for names in homes.values() if len(names) > 1]
    assert len(shared) > 100  # households exist: the look-alikes of the benchmark
    assert all(len(set(names)) == len(names) for names in shared)


def test_no_birth_date_is_a_clamping_artefact() -> None:
    births = Counter(person.birth for person in PEOPLE)
    # Twins and people born the same day as someone else gather a few on one date; a date that
    # out-of-range birth dates were clamped to gathered dozens (33 in these 3,000 people).
    assert max(births.values()) <= 10


def test_every_kind_of_noise_is_drawn() -> None:
    kinds = Counter(kind for record in RECORDS for kind in record.noise)
    for kind in ("nickname", "namesSwapped", "dayMonthSwapped", "emailPlusTag", "emailDots", "emailProviderChange",
                 "phoneTypo", "streetAbbreviated", "oldAddress", "birthDateMissing", "lastNameTypo"):  # fmt: skip
        assert kinds[kind] > 0, kind
