"""Blocking survives any one error: two records of one person that differ in a single field (that
field mistyped, replaced by another value or left out) still share a blocking key, whatever the
names, dates and addresses are. A pair sharing no key is never scored, so no threshold finds it."""

from __future__ import annotations

from datetime import date

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from app.domain.matching import blocking, blocking_keys, normalised_fields
from app.domain.matching.blocking import block_pair_count, block_pairs, lookup_keys
from app.domain.profile import Address

NAME = st.text(alphabet="abcdefghijklmnopqrstuvwxyzéü", min_size=2, max_size=12)
BORN = st.dates(min_value=date(1920, 1, 1), max_value=date(2008, 12, 31))
ADDRESS = st.builds(
    lambda number, name, kind, postcode, city: Address(
        street=f"{number} {name} {kind}", city=city, postcode=postcode, country="FR"
    ),
    st.integers(1, 400),
    NAME,
    st.sampled_from(["rue", "street", "avenue", "crescent", ""]),
    st.from_regex(r"[0-9]{5}", fullmatch=True),
    NAME,
)
EMAIL = st.builds(lambda local, n: f"{local}{n}@example.com", NAME, st.integers(0, 99))
PHONE = st.builds(lambda n: f"+3361{n:07d}", st.integers(0, 9_999_999))
FIELDS = {
    "first_name": NAME,
    "last_name": NAME,
    "birth_date": BORN,
    "addresses": st.lists(ADDRESS, min_size=1, max_size=1),
    "emails": st.lists(EMAIL, max_size=1),
    "phones": st.lists(PHONE, max_size=1),
}
EMPTY = {"first_name": None, "last_name": None, "birth_date": None, "addresses": [], "emails": [], "phones": []}


def _typo(value: str, at: int) -> str:
    """One letter changed: the error that moves a name's Metaphone or its first letter."""
    index = at % len(value)
    return value[:index] + ("x" if value[index] != "x" else "y") + value[index + 1 :]


@st.composite
def records_with_one_error(
    draw: st.DrawFn, fields: tuple[str, ...] = tuple(FIELDS)
) -> tuple[dict[str, object], dict[str, object], str]:
    record = EMPTY | {name: draw(FIELDS[name]) for name in fields}
    field = draw(st.sampled_from(sorted(fields)))
    error = draw(st.sampled_from(["missing", "replaced", "typo"]))
    other = dict(record)
    if error == "missing":
        other[field] = EMPTY[field]
    elif error == "typo" and isinstance(record[field], str):
        other[field] = _typo(str(record[field]), draw(st.integers(0, 20)))
    else:
        other[field] = draw(FIELDS[field])
    return record, other, f"{field} {error}"


def _assert_share_a_key(record: dict[str, object], other: dict[str, object], error: str) -> None:
    a = normalised_fields(**record)  # type: ignore[arg-type]
    b = normalised_fields(**other)  # type: ignore[arg-type]
    assert blocking_keys(a) & blocking_keys(b), error
    # ... and one of the two profiles' lookups reads the other (`lookup_keys` leaves some keys out).
    a_finds_b = set(lookup_keys(a, blocking_keys(a))) & blocking_keys(b)
    assert a_finds_b or set(lookup_keys(b, blocking_keys(b))) & blocking_keys(a), error


@settings(max_examples=400, deadline=None)
@given(records_with_one_error())
def test_two_records_differing_in_any_one_field_share_a_key(
    case: tuple[dict[str, object], dict[str, object], str],
) -> None:
    _assert_share_a_key(*case)


@settings(max_examples=300, deadline=None)
@given(records_with_one_error(fields=("first_name", "last_name", "birth_date")))
def test_names_and_a_birth_date_alone_survive_any_one_error(
    case: tuple[dict[str, object], dict[str, object], str],
) -> None:
    _assert_share_a_key(*case)


def test_a_lookup_leaves_out_the_given_name_keys_only_for_a_profile_with_a_birth_date_and_name_codes() -> None:
    born = normalised_fields(first_name="Maria", last_name="Garcia", birth_date=date(1980, 3, 12))
    unborn = normalised_fields(first_name="Maria", last_name="Garcia")
    no_code = normalised_fields(first_name="Aa", last_name="Garcia", birth_date=date(1980, 3, 12))
    assert "g:maria|g" in blocking_keys(born) and "g:maria|g" in blocking_keys(unborn)
    given_name_year = {key for key in blocking_keys(born) if key.startswith("y:")}
    assert len(given_name_year) == 1
    assert set(lookup_keys(born, blocking_keys(born))) == blocking_keys(born) - {"g:maria|g"} - given_name_year
    assert set(lookup_keys(unborn, blocking_keys(unborn))) == blocking_keys(unborn)
    assert set(lookup_keys(no_code, blocking_keys(no_code))) == blocking_keys(no_code)


@pytest.mark.parametrize("size", [0, 1, 2, 5, 6, 7, 9, 20])
def test_a_blocks_pair_count_is_the_pairs_it_hands_out(size: int, monkeypatch: pytest.MonkeyPatch) -> None:
    """What an estimate's sample is sized by: every pair of a short block, the sorted neighbourhoods'
    of a long one (small sizes here, so that both kinds are counted)."""
    monkeypatch.setattr(blocking, "MAX_BLOCK_SIZE", 5)
    monkeypatch.setattr(blocking, "NEIGHBOURHOOD_WINDOW", 3)
    ids = [f"p{n:02}" for n in range(size)]
    fields = {i: normalised_fields(first_name="Ana" if n % 2 else "Jo", last_name=f"S{n}") for n, i in enumerate(ids)}
    assert block_pair_count(size) == len(list(block_pairs(ids, fields)))
