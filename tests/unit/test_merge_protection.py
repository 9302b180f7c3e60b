"""Merge protection's judgement of one write's identifiers (`crowding`): asked of every event, it
answers the usual few identifiers without counting them, and must say exactly what counting says."""

from __future__ import annotations

from collections import Counter

from hypothesis import given
from hypothesis import strategies as st

from app.domain.identifiers import Identifier, normalise
from app.domain.merge_protection import MergeProtection

TYPES = ("customerId", "email", "deviceId", "shopifyId")


def _identifier(type_: str, number: int) -> Identifier:
    value = f"p{number}@example.com" if type_ == "email" else f"v{number}"
    return normalise(type_, value)


identifiers = st.lists(st.tuples(st.sampled_from(TYPES), st.integers(0, 3)), max_size=6).map(
    lambda drawn: [_identifier(type_, number) for type_, number in drawn]
)
limits = st.dictionaries(st.sampled_from(TYPES), st.integers(0, 3), max_size=3)


@given(identifiers, limits, st.integers(1, 5))
def test_crowding_says_what_counting_the_identifiers_by_type_says(
    written: list[Identifier], by_type: dict[str, int], most: int
) -> None:
    protection = MergeProtection(limits=by_type, max_identifiers=most)
    counts = Counter({i.key: i.type for i in written}.values())  # each identifier once
    past = any(count > by_type.get(type_, count) for type_, count in counts.items()) or counts.total() > most
    reason = protection.crowding(written)
    assert (reason is not None) == past
    if reason is not None:
        assert "CDP_MERGE_LIMITS" in reason


def test_one_identifier_is_crowded_only_by_a_limit_of_none() -> None:
    email = [normalise("email", "ada@example.com")]
    assert MergeProtection().crowding(email) is None
    assert MergeProtection(limits={}).crowding(email) is None
    assert MergeProtection(limits={"email": 0}).crowding(email) == (
        "names 1 email identifiers (limit 0), more than one profile may hold (CDP_MERGE_LIMITS)"
    )
