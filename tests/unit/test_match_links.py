"""Links through a third profile: two records that share nothing but a name are one person when a
third record resembles each of them (it holds the phone of one and the email of the other)."""

from __future__ import annotations

from datetime import date

import pytest

from app.domain.matching import (
    DEFAULT_MIN_SCORE,
    Candidate,
    MatchFields,
    linked_pairs,
    normalised_fields,
    score_pair,
    with_links,
)

# Isabelle Chaet, three times: in a shop (phone, birth date), online (email), and in the
# loyalty programme, which knows her phone and her email.
SHOP = normalised_fields(
    first_name="Isabelle", last_name="Chaet", birth_date=date(1969, 6, 17), phones=["+33661389731"]
)
ONLINE = normalised_fields(first_name="Isabelle", last_name="Chaet", emails=["isabelle.chaet@hotmail.fr"], addresses=[])
LOYALTY = normalised_fields(
    first_name="Isabelle", last_name="Chaet", phones=["+33661389731"], emails=["isabelle.chaet@hotmail.fr"]
)
# Her daughter Ines, who shares the family mailbox; a family card holds that mailbox and Isabelle's
# phone, under an initial that fits both of them.
FAMILY_CARD = normalised_fields(
    first_name="I.", last_name="Chaet", phones=["+33661389731"], emails=["chaet.famille@orange.fr"]
)
DAUGHTER = normalised_fields(
    first_name="Ines", last_name="Chaet", birth_date=date(1995, 2, 8), emails=["chaet.famille@orange.fr"]
)
FIELDS: dict[str, MatchFields] = {
    "shop": SHOP,
    "online": ONLINE,
    "loyalty": LOYALTY,
    "card": FAMILY_CARD,
    "daughter": DAUGHTER,
}


def _neighbours(min_score: float) -> dict[str, list[Candidate]]:
    """Each profile's direct candidates, as the services give them to `with_links`."""
    found: dict[str, list[Candidate]] = {name: [] for name in FIELDS}
    for a, fa in FIELDS.items():
        for b, fb in FIELDS.items():
            scored = score_pair(fa, fb)
            if a != b and scored.score >= min_score:
                found[a].append(Candidate(a, b, scored.score, scored.reasons))
    return found


def test_the_records_alike_only_by_name_are_not_direct_candidates() -> None:
    assert score_pair(SHOP, ONLINE).score < DEFAULT_MIN_SCORE
    assert score_pair(SHOP, LOYALTY).score >= DEFAULT_MIN_SCORE
    assert score_pair(ONLINE, LOYALTY).score >= DEFAULT_MIN_SCORE


def test_a_profile_is_linked_to_the_records_its_candidates_resemble() -> None:
    neighbours = _neighbours(DEFAULT_MIN_SCORE)
    found = {c.b: c for c in with_links("shop", neighbours, FIELDS, DEFAULT_MIN_SCORE)}
    assert set(found) == {"loyalty", "online", "card"}
    assert found["loyalty"].via is None
    link = found["online"]
    assert link.via == "loyalty"
    assert link.score == pytest.approx(score_pair(SHOP, LOYALTY).score * score_pair(LOYALTY, ONLINE).score)
    methods = {(r.field, r.method) for r in link.reasons}
    assert ("profile", "linkedThrough") in methods and ("lastName", "exact") in methods


def test_no_link_between_records_that_contradict_each_other() -> None:
    # The family card resembles both the shop record (the phone) and the daughter (the mailbox);
    # the daughter's given name and birth date say she is not the shop customer.
    assert score_pair(SHOP, FAMILY_CARD).score >= DEFAULT_MIN_SCORE
    assert score_pair(FAMILY_CARD, DAUGHTER).score >= DEFAULT_MIN_SCORE
    assert score_pair(SHOP, DAUGHTER).score < 1e-4
    found = {c.b for c in with_links("shop", _neighbours(DEFAULT_MIN_SCORE), FIELDS, DEFAULT_MIN_SCORE)}
    assert "card" in found and "daughter" not in found


def test_a_link_never_scores_above_what_its_two_steps_allow() -> None:
    neighbours = _neighbours(DEFAULT_MIN_SCORE)
    strict = score_pair(SHOP, LOYALTY).score * score_pair(LOYALTY, ONLINE).score + 0.001
    assert "online" not in {c.b for c in with_links("shop", neighbours, FIELDS, strict)}


def test_the_whole_store_holds_each_pair_once_in_order() -> None:
    neighbours = _neighbours(DEFAULT_MIN_SCORE)
    direct = [c for found in neighbours.values() for c in found if c.a < c.b]
    pairs = {(c.a, c.b): c.via for c in linked_pairs(direct, FIELDS, DEFAULT_MIN_SCORE)}
    assert pairs["online", "shop"] == "loyalty"
    assert pairs["loyalty", "shop"] is None and pairs["loyalty", "online"] is None
    assert ("daughter", "shop") not in pairs
    assert all(a < b for a, b in pairs)
