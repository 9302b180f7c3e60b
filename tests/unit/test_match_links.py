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


def test_via_is_set_exactly_when_the_product_beats_the_two_compared_directly() -> None:
    # At minScore 0 every pair is compared directly (as pairs sharing a key are): shop and online
    # still get `via`, their direct score being lower than the product through loyalty.
    found = {c.b: c for c in with_links("shop", _neighbours(0.0), FIELDS, 0.0)}
    assert found["online"].via == "loyalty"
    assert found["loyalty"].via is None  # through the card it would score less than on its own
    for candidate in found.values():
        direct = score_pair(SHOP, FIELDS[candidate.b]).score
        if candidate.via is None:
            assert candidate.score == direct
        else:
            via = FIELDS[candidate.via]
            product = score_pair(SHOP, via).score * score_pair(via, FIELDS[candidate.b]).score
            assert candidate.score == pytest.approx(product) and candidate.score > direct


def test_a_profile_reached_through_a_link_keeps_its_own_better_score() -> None:
    # The shop record's look-alikes were read without the loyalty record (a block passed over, say):
    # the card leads to it, and the two compared directly score higher than through the card.
    card = score_pair(SHOP, FAMILY_CARD)
    onward = score_pair(FAMILY_CARD, LOYALTY)
    neighbours = {
        "shop": [Candidate("shop", "card", card.score, card.reasons)],
        "card": [Candidate("card", "loyalty", onward.score, onward.reasons)],
    }
    found = {c.b: c for c in with_links("shop", neighbours, FIELDS, DEFAULT_MIN_SCORE)}
    assert found["loyalty"].via is None
    assert found["loyalty"].score == score_pair(SHOP, LOYALTY).score > card.score * onward.score


def test_links_never_go_through_a_weak_resemblance() -> None:
    neighbours = {"shop": [Candidate("shop", "card", 0.005, [])], "card": [Candidate("card", "online", 0.9, [])]}
    assert [c.b for c in with_links("shop", neighbours, FIELDS, 0.0)] == ["card"]


def test_the_whole_store_lists_a_pair_found_through_a_link_at_its_direct_score() -> None:
    # Only the card's pairs with shop and loyalty are given (the two compared directly were left out):
    # shop-loyalty is found through the card, and scores higher on its own than through it.
    given = [c for c in _neighbours(DEFAULT_MIN_SCORE)["card"] if c.b in {"shop", "loyalty"}]
    pairs = {(c.a, c.b): c for c in linked_pairs(given, FIELDS, DEFAULT_MIN_SCORE)}
    assert pairs["loyalty", "shop"].via is None
    assert pairs["loyalty", "shop"].score == score_pair(LOYALTY, SHOP).score > given[0].score * given[1].score
