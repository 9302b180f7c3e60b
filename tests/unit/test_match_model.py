"""The learned match model on small data made here: EM finds weights that separate the records of
one person from look-alikes, gives the same model when re-estimated on the same pairs, and a model
is written and read back with its version."""

from __future__ import annotations

import itertools
import json
import math
import random
from collections import Counter
from dataclasses import replace
from datetime import UTC, date, datetime, timedelta

import pytest

from app.domain.matching import (
    DEFAULT_MIN_SCORE,
    MatchFields,
    MatchModel,
    blocking_keys,
    match_fields,
    normalised_fields,
    score_pair,
)
from app.domain.matching.blocking import block_pairs
from app.domain.matching.fields import contacts_of, names_and_birth_date
from app.domain.matching.index import MatchView
from app.domain.matching.learned import (
    AGREED_IDENTITY,
    CLEAR_MATCH,
    ValueFrequencies,
    Vector,
    comparison,
    estimate,
    value_frequencies,
    value_key,
)
from app.domain.matching.scoring import COMMON_GIVEN_NAME, HOUSEHOLD_CONTACT_BITS, SCORE_DIGITS
from app.domain.profile import Address
from bench.identity_data import fake_1000
from bench.identity_store import key_blocks
from bench.people.population import people as population_people
from bench.people.population import records as population_records

AT = datetime(2026, 1, 1, tzinfo=UTC)
GIVEN = ["olivia", "lucas", "emma", "noah", "mila", "hugo", "lena", "adam", "zoe", "tom", "ines", "paul", "clara"]
SURNAMES = ["martin", "bernard", "dubois", "moreau", "laurent", "simon", "michel", "lefevre", "garcia", "roux"]


def _typo(rng: random.Random, name: str) -> str:
    # A letter dropped inside the name: a dropped last letter with the home and birth date shared is
    # also how twins differ (Daniel/Daniela), which the rules' prior holds against a match.
    at = rng.randrange(1, len(name) - 1)
    return name[:at] + name[at + 1 :]


def _people(
    seed: int, count: int
) -> tuple[list[tuple[MatchFields, MatchFields]], list[tuple[MatchFields, MatchFields]]]:
    """Pairs of records of one person (a typo or a missing field each) and pairs of different
    people who share a surname and a town (the look-alikes blocking brings together)."""
    rng = random.Random(seed)
    same, different = [], []
    people = []
    for n in range(count):
        person = {
            "first_name": rng.choice(GIVEN),
            "last_name": rng.choice(SURNAMES),
            "birth_date": date(1950, 1, 1) + timedelta(days=rng.randrange(20_000)),
            "addresses": [
                Address(street=f"{rng.randrange(1, 90)} rue {rng.choice(SURNAMES)}", postcode=f"69{n % 7:03d}")
            ],
        }
        people.append(person)
        other = dict(person)
        noise = rng.choice(["first_name", "last_name", "birth_date", "addresses"])
        if noise in ("first_name", "last_name"):
            other[noise] = _typo(rng, str(person[noise]))
        elif noise == "birth_date":
            other[noise] = None
        else:
            other[noise] = []
        same.append((normalised_fields(**person), normalised_fields(**other)))  # type: ignore[arg-type]
    for first, second in itertools.pairwise(people):
        a = first | {"addresses": [Address(street="9 rue Basse", postcode="69000")]}
        b = second | {"last_name": a["last_name"], "addresses": [Address(street="2 rue Haute", postcode="69000")]}
        different.append((normalised_fields(**a), normalised_fields(**b)))  # type: ignore[arg-type]
    return same, different


def _vectors(pairs: list[tuple[MatchFields, MatchFields]]) -> dict[Vector, tuple[int, float]]:
    found: dict[Vector, tuple[int, float]] = {}
    for a, b in pairs:
        scored = score_pair(a, b)
        vector = comparison(scored.reasons)
        count, total = found.get(vector, (0, 0.0))
        found[vector] = (count + 1, total + scored.score)
    return {v: (count, total / count) for v, (count, total) in found.items()}


SAME, DIFFERENT = _people(7, 400)


def test_em_finds_weights_that_separate_one_persons_records_from_look_alikes() -> None:
    model = estimate(_vectors(SAME + DIFFERENT), version=1, at=AT)
    assert model.separates()
    # The look-alikes made here differ in given name and birth date: one level of the given name.
    assert model.bits("firstName", "exact") > 0 > model.bits("firstName", "different+otherBirthDate")
    assert model.bits("birthDate", "exact") > 0 > model.bits("birthDate", "different")
    assert 0.3 < model.match_share < 0.7  # about half the pairs made here are matches
    found = sum(1 for a, b in SAME if model.score(a, b).score >= 0.5)
    wrong = sum(1 for a, b in DIFFERENT if model.score(a, b).score >= 0.5)
    assert found >= 0.95 * len(SAME)
    assert wrong <= 0.01 * len(DIFFERENT)
    assert model.score(*SAME[0]).scorer == "fellegiSunter:v1"


def test_re_estimating_on_the_same_pairs_gives_the_same_model() -> None:
    first = estimate(_vectors(SAME + DIFFERENT), version=1, at=AT)
    again = estimate(_vectors(list(reversed(SAME + DIFFERENT))), version=2, at=AT)
    assert (again.m, again.u, again.match_share, again.pairs_used) == (
        first.m,
        first.u,
        first.match_share,
        first.pairs_used,
    )
    # Another sample of the same kind of data moves no weight much.
    other = estimate(_vectors([*_people(8, 400)[0], *_people(8, 400)[1]]), version=3, at=AT)
    for field, level in (("firstName", "exact"), ("lastName", "exact"), ("birthDate", "exact")):
        assert abs(other.bits(field, level) - first.bits(field, level)) < 1.5, (field, level)


def test_a_model_is_stored_and_read_back_with_its_version() -> None:
    model = estimate(_vectors(SAME + DIFFERENT), version=4, at=AT)
    back = MatchModel.from_document(model.to_document())
    assert back == model
    assert (back.version, back.name, back.pairs_used, back.estimated_at) == (4, "fellegiSunter:v4", 800 - 1, AT)


def test_look_alikes_alone_give_no_model_that_is_used() -> None:
    """Pairs that are all different people (a store of strangers) leave nothing to separate: the
    estimate does not read as matches against non-matches, and the rules scorer keeps answering."""
    model = estimate(_vectors(DIFFERENT), version=1, at=AT)
    assert not model.separates()


def test_a_model_reading_agreeing_names_and_birth_date_as_a_coin_toss_is_not_used() -> None:
    """Splink's `fake_1000` (vendored for the bench), each record a profile: duplicates noisy in every
    field, look-alikes sharing a blocking key by construction. EM over the candidate pairs finds each
    agreement little evidence, and two records agreeing on both names and the birth date far from
    one person: it learned what the blocks share, and the rules answer."""
    fields = {profile.id: match_fields(profile) for profile in fake_1000().profiles}
    blocks = key_blocks((profile_id, blocking_keys(found)) for profile_id, found in fields.items())
    pairs = {pair for ids in blocks.values() for pair in block_pairs(ids, fields)}
    model = estimate(_vectors([(fields[a], fields[b]) for a, b in sorted(pairs)]), version=1, at=AT)
    assert all(model.bits(field, level) > 0 for field, level in AGREED_IDENTITY)  # each counts for a match
    assert model.probability(AGREED_IDENTITY) < CLEAR_MATCH
    assert not model.separates()
    assert model.why_not_used() == (
        f"two records agreeing on both names and the birth date read at "
        f"{model.probability(AGREED_IDENTITY):.2f}, under {CLEAR_MATCH}"
    )


def test_a_model_reading_a_different_given_name_alone_for_a_match_is_not_used() -> None:
    """A given name that differs with nothing else shared (its bare level) counts against one person,
    whatever its household levels read: Splink's historical figures (ten records a person, given
    names replaced by titles and other names) gave it +7.5 bits beside household levels below 0."""
    model = estimate(_vectors(SAME + DIFFERENT), version=1, at=AT)
    assert model.separates() and "different" not in model.m["firstName"]

    def with_bare_level(m: float, u: float) -> MatchModel:
        given_m, given_u = {**model.m["firstName"], "different": m}, {**model.u["firstName"], "different": u}
        return replace(model, m={**model.m, "firstName": given_m}, u={**model.u, "firstName": given_u})

    read_for = with_bare_level(0.3, 0.0016)
    assert read_for.bits("firstName", "different") == pytest.approx(math.log2(0.3 / 0.0016))
    assert min(read_for.bits("firstName", level) for level in read_for.m["firstName"] if "+" in level) < 0
    assert not read_for.separates()
    assert read_for.why_not_used() == "a different given name alone counts for a match (+7.6 bits)"
    assert with_bare_level(0.01, 0.3).separates() and with_bare_level(0.01, 0.3).why_not_used() is None
    # Without a bare level, the least of them: every one counting for a match says so.
    given_u = {level: u / 1000 if level.startswith("different") else u for level, u in model.u["firstName"].items()}
    every_one_for = replace(model, u={**model.u, "firstName": given_u})
    assert (reason := every_one_for.why_not_used()) is not None
    assert reason.startswith("a different given name counts for a match (+")


def test_twins_sharing_a_home_and_a_birth_date_are_evidence_the_model_weighs() -> None:
    twin = {
        "last_name": "martin",
        "birth_date": date(1990, 5, 4),
        "addresses": [Address(street="3 rue Haute", postcode="69001")],
    }
    pair = (normalised_fields(first_name="lucas", **twin), normalised_fields(first_name="hugo", **twin))  # type: ignore[arg-type]
    vector = dict(comparison(score_pair(*pair).reasons))
    # The home and the birth date leave the vector and are read with the other given name, as one
    # level of the given name (so its m is a share of every match compared on given names).
    assert vector["firstName"] == "different+home+birthDate"
    assert "address" not in vector and "birthDate" not in vector


def test_a_given_name_and_birth_date_both_contradicted_say_no_more_than_each_alone() -> None:
    """EM reads the few pairs at a level holding both contradictions by what else they share (on a
    store of households: +3 bits for a shared home and family mailbox). When a pair is scored, such
    a level says at most the given-name level without the birth date's contradiction plus that
    contradiction's own weight."""
    model = MatchModel(
        version=1,
        estimated_at=AT,
        pairs_used=1000,
        match_share=0.2,
        m={
            "firstName": {"exact": 0.8, "different+home": 0.02, "different+otherBirthDate+home": 0.1},
            "lastName": {"exact": 0.9},
            "birthDate": {"exact": 0.9, "different": 0.02},
        },
        u={
            "firstName": {"exact": 0.1, "different+home": 0.2, "different+otherBirthDate+home": 0.05},
            "lastName": {"exact": 0.3},
            "birthDate": {"exact": 0.05, "different": 0.6},
        },
        iterations=1,
    )
    home = {"last_name": "martin", "addresses": [Address(street="3 rue Haute", postcode="69001")]}
    parent = normalised_fields(first_name="lucas", birth_date=date(1962, 5, 4), **home)  # type: ignore[arg-type]
    child = normalised_fields(first_name="hugo", birth_date=date(1990, 8, 21), **home)  # type: ignore[arg-type]
    assert dict(comparison(score_pair(parent, child).reasons))["firstName"] == "different+otherBirthDate+home"
    bound = model.bits("firstName", "different+home") + model.bits("birthDate", "different")
    assert model.bits("firstName", "different+otherBirthDate+home") == pytest.approx(bound)
    assert bound < -8
    # As estimated (+1 bit), the surname and the prior would list the pair at 0.6.
    assert model.score(parent, child).score < 0.01
    # A level without the other birth date keeps its estimate.
    assert model.bits("firstName", "different+home") == pytest.approx(math.log2(0.02 / 0.2))


def test_another_given_name_with_what_a_household_shares_says_no_more_than_the_rules_let_it() -> None:
    """On a store of households EM read a different given name with a shared home as evidence for
    (+1.2 bits), listing one family's members as one person. When a pair is scored, such a level
    without an agreeing birth date says at most the bare contradiction plus what the rules let a
    household's evidence count for; with the birth date agreeing (twins, or FEBRL's duplicates whose
    given name was replaced), the estimate stands."""
    model = MatchModel(
        version=1,
        estimated_at=AT,
        pairs_used=1000,
        match_share=0.1,
        m={
            "firstName": {
                "exact": 0.75,
                "different": 0.0015,
                "different+home": 0.06,
                "different+home+birthDate": 0.02,
                "variant+mailbox": 0.01,
            },
            "lastName": {"exact": 0.9},
        },
        u={
            "firstName": {
                "exact": 0.6,
                "different": 0.03,
                "different+home": 0.025,
                "different+home+birthDate": 0.001,
                "variant+mailbox": 0.0005,
            },
            "lastName": {"exact": 0.3},
        },
        iterations=1,
    )
    home = {"last_name": "manon", "addresses": [Address(street="18 rue Pasteur", postcode="13001")]}
    husband = normalised_fields(first_name="guillaume", **home)  # type: ignore[arg-type]
    wife = normalised_fields(first_name="sophie", **home)  # type: ignore[arg-type]
    assert dict(comparison(score_pair(husband, wife).reasons))["firstName"] == "different+home"
    bare = math.log2(0.0015 / 0.03)
    assert math.log2(0.06 / 0.025) > 0  # as estimated
    assert model.bits("firstName", "different+home") == pytest.approx(bare + HOUSEHOLD_CONTACT_BITS)
    assert model.score(husband, wife).score < DEFAULT_MIN_SCORE
    assert model.bits("firstName", "different+home+birthDate") == pytest.approx(math.log2(0.02 / 0.001))
    assert model.bits("firstName", "variant+mailbox") == pytest.approx(math.log2(0.01 / 0.0005))


def test_a_record_without_a_given_name_sharing_a_home_says_no_more_than_the_rules_let_a_household() -> None:
    """A record naming only the family's surname, beside a named one at its home, neither birth date
    to compare: any member of the household writes so. EM read the shared home as a match's, and
    such records linked a family's members to one another; the home is read into a given-name level
    of its own, which says at most what the rules let a household's evidence count for. With the
    birth dates compared the home stays the address's own level, whose weight the data decide."""
    model = MatchModel(
        version=1,
        estimated_at=AT,
        pairs_used=1000,
        match_share=0.01,
        m={"firstName": {"exact": 0.75, "missing+home": 0.05}, "lastName": {"exact": 0.9},
           "address": {"sameAddress": 0.6}, "birthDate": {"exact": 0.8}},
        u={"firstName": {"exact": 0.6, "missing+home": 0.0001}, "lastName": {"exact": 0.3},
           "address": {"sameAddress": 0.001}, "birthDate": {"exact": 0.01}},
        iterations=1,
    )  # fmt: skip
    home = {"last_name": "hormeier", "addresses": [Address(street="123 Lindenweg", postcode="60311")]}
    sabine = normalised_fields(first_name="sabine", **home)  # type: ignore[arg-type]
    nameless = normalised_fields(birth_date=date(1998, 8, 7), **home)  # type: ignore[arg-type]
    vector = dict(comparison(score_pair(sabine, nameless).reasons))
    assert vector["firstName"] == "missing+home" and "address" not in vector
    assert math.log2(0.05 / 0.0001) > HOUSEHOLD_CONTACT_BITS  # as estimated
    assert model.bits("firstName", "missing+home") == pytest.approx(HOUSEHOLD_CONTACT_BITS)
    assert model.score(sabine, nameless).score < DEFAULT_MIN_SCORE
    contacts = contacts_of(sabine) & contacts_of(nameless)
    assert model.ceiling(sabine, nameless, contacts) < DEFAULT_MIN_SCORE  # passed over unread
    # Born the same day: the person (or a twin), read as the data say.
    dated = normalised_fields(first_name="sabine", birth_date=date(1998, 8, 7), **home)  # type: ignore[arg-type]
    vector = dict(comparison(score_pair(dated, nameless).reasons))
    assert "firstName" not in vector and vector["address"] == "sameAddress"
    assert model.score(dated, nameless).score >= DEFAULT_MIN_SCORE


def test_a_model_stored_in_an_earlier_form_is_not_used() -> None:
    """Its levels are not the ones compared now: the rules answer until the next estimate."""
    document = estimate(_vectors(SAME + DIFFERENT), version=3, at=AT).to_document()
    assert MatchModel.from_document(document).separates()
    del document["form"], document["frequencies"]
    earlier = MatchModel.from_document(document)
    assert earlier.version == 3
    assert not earlier.separates()


def _households(seed: int, count: int) -> list[tuple[MatchFields, MatchFields]]:
    """Two people of one home: another given name, the surname and the address shared, another birth
    date or none on one side (what is left among a store's candidates once records sharing an email
    or a phone were merged)."""
    rng = random.Random(seed)
    pairs = []
    for n in range(count):
        home = {
            "last_name": rng.choice(SURNAMES),
            "addresses": [Address(street=f"{rng.randrange(1, 90)} rue Haute", postcode=f"69{n % 7:03d}")],
        }
        first, second = rng.sample(GIVEN, 2)
        born = [date(1950, 1, 1) + timedelta(days=rng.randrange(20_000)) for _ in range(2)]
        if rng.random() < 0.5:
            born[1] = None  # type: ignore[call-overload]
        pairs.append(
            (
                normalised_fields(first_name=first, birth_date=born[0], **home),  # type: ignore[arg-type]
                normalised_fields(first_name=second, birth_date=born[1], **home),  # type: ignore[arg-type]
            )
        )
    return pairs


def test_households_outnumbering_duplicates_are_not_learned_as_matches() -> None:
    """A store whose candidates are mostly households (three for each person with two records): a
    shared surname and home with another given name stays evidence against one person."""
    same, strangers = _people(11, 100)
    households = _households(12, 300)
    model = estimate(_vectors(same + strangers + households), version=1, at=AT)
    assert model.separates()
    assert sum(1 for a, b in households if model.score(a, b).score >= 0.5) == 0
    assert sum(1 for a, b in same if model.score(a, b).score >= 0.5) >= 0.9 * len(same)


def test_a_model_reads_given_names_one_letter_apart_as_two_when_its_frequencies_count_both_common() -> None:
    """As the rules read them (`scoring.read_apart`): twins Maria and Marta sharing a home and a
    birth date are two people when the profiles the model counted hold both names often enough,
    and one person's typo when they do not."""
    born = {"last_name": "martin", "birth_date": date(1980, 2, 3), "addresses": [Address(street="9 rue Basse")]}
    maria = normalised_fields(first_name="maria", **born)  # type: ignore[arg-type]
    marta = normalised_fields(first_name="marta", **born)  # type: ignore[arg-type]
    profiles = [normalised_fields(first_name=name, last_name=surname) for name in GIVEN for surname in SURNAMES]
    few = value_frequencies([*profiles, maria, maria, marta, marta], salt="s1")
    many = value_frequencies([*profiles, *[maria] * COMMON_GIVEN_NAME, *[marta] * COMMON_GIVEN_NAME], salt="s1")
    vectors = _vectors(SAME + DIFFERENT)
    typo = estimate(vectors, version=1, at=AT, frequencies=few).score(maria, marta)
    apart = estimate(vectors, version=1, at=AT, frequencies=many).score(maria, marta)
    assert {r.field: r.method for r in typo.reasons}["firstName"] != "different"
    assert {r.field: r.method for r in apart.reasons}["firstName"] == "different"
    assert apart.score < DEFAULT_MIN_SCORE <= typo.score


def test_agreeing_on_a_common_name_says_less_than_agreeing_on_a_rare_one() -> None:
    """Term frequencies: a pair agreeing on everything the model compares scores lower when the name
    they share is one many profiles hold (namesakes are then likelier) than when it is rare."""
    profiles = [normalised_fields(first_name="jean", last_name="martin") for _ in range(60)]
    profiles += [normalised_fields(first_name=name, last_name=surname) for name in GIVEN for surname in SURNAMES]
    profiles += [normalised_fields(first_name="ysolde", last_name="quarante")]
    frequencies = value_frequencies(profiles, salt="s1")
    assert frequencies["lastName"].bits("martin") < 0 < frequencies["lastName"].bits("quarante")
    assert frequencies["firstName"].bits("jean") < 0 < frequencies["firstName"].bits("ysolde")

    model = estimate(_vectors(SAME + DIFFERENT), version=1, at=AT, frequencies=frequencies)
    born = {"birth_date": date(1980, 2, 3)}
    common = normalised_fields(first_name="jean", last_name="martin", **born)  # type: ignore[arg-type]
    rare = normalised_fields(first_name="ysolde", last_name="quarante", **born)  # type: ignore[arg-type]
    assert comparison(model.score(common, common).reasons) == comparison(model.score(rare, rare).reasons)
    assert model.score(common, common).score < model.score(rare, rare).score
    back = MatchModel.from_document(model.to_document())
    assert back == model and back.score(common, common) == model.score(common, common)


def test_frequencies_keep_no_name_and_weigh_each_as_the_name_itself_would() -> None:
    """The shares are keyed by a keyed hash of each value: the stored model holds no name (an erased
    person's rare name outlived them there), and every value weighs what it weighed keyed by itself."""
    profiles = [normalised_fields(first_name=name, last_name=surname) for name in GIVEN for surname in SURNAMES]
    profiles += [normalised_fields(first_name="ysolde", last_name="quarante") for _ in range(2)]
    keyed, plain = value_frequencies(profiles, salt="s1"), value_frequencies(profiles, salt="s2")
    text = json.dumps({f: v.to_document() for f, v in keyed.items()})
    assert not [name for name in [*GIVEN, *SURNAMES, "ysolde", "quarante"] if name in text]
    assert keyed["lastName"].shares.keys().isdisjoint(plain["lastName"].shares)  # each model its own key
    for name in [*GIVEN, "ysolde", "nobody"]:
        assert keyed["firstName"].bits(name) == plain["firstName"].bits(name)
    assert keyed["lastName"].bits("quarante") > keyed["lastName"].bits("martin")


def test_frequencies_without_erased_profiles_count_their_names_once_less_each() -> None:
    """What an erasure leaves of a model's frequencies: a name left on fewer than two profiles is no
    longer kept (its keyed hash, with the key stored beside it, named the erased person); a common
    one weighs as if the erased profiles had never been counted. A model stored before the count of
    profiles was kept reads it from its floor (one profile's share)."""
    profiles = [normalised_fields(first_name=name, last_name=surname) for name in GIVEN for surname in SURNAMES]
    profiles += [normalised_fields(first_name="ysolde", last_name="quarante") for _ in range(2)]
    kept = value_frequencies(profiles, salt="s1")["lastName"]
    erased = Counter({"quarante": 2, "martin": 3, "nobody": 1})

    for frequencies in (kept, replace(kept, profiles=None), ValueFrequencies.from_document(kept.to_document())):
        recounted = ValueFrequencies.from_document({**frequencies.to_document(), "profiles": frequencies.profiles})
        without = recounted.without(erased)
        assert without.bits("quarante") == without.bits("nobody")  # no longer kept: as rare as a name unseen
        assert without.shares[value_key("s1", "martin")] * len(profiles) == pytest.approx(len(GIVEN) - 3)
        assert without.shares[value_key("s1", "roux")] == kept.shares[value_key("s1", "roux")]


def _population_pairs() -> list[tuple[MatchFields, MatchFields]]:
    """The pairs of generated records (bench/people: typos, nicknames, households sharing a home, a
    landline and a mailbox, twins, namesakes) that share a blocking key, as a store compares them."""
    records = population_records(population_people(400, 3), 3)
    fields = [
        normalised_fields(
            first_name=r.first_name,
            last_name=r.last_name,
            birth_date=r.birth_date,
            emails=[e.lower() for e in r.emails],
            phones=[p.replace(" ", "") for p in r.phones],
            addresses=[Address(street=r.street, city=r.city, postcode=r.postcode)] if r.street or r.postcode else [],
        )
        for r in records
    ]
    blocks: dict[str, list[int]] = {}
    for index, found in enumerate(fields):
        for key in blocking_keys(found):
            blocks.setdefault(key, []).append(index)
    pairs = {(i, j) for members in blocks.values() for i, j in itertools.combinations(members, 2)}
    return [(fields[i], fields[j]) for i, j in sorted(pairs)]


def _estimated_and_random_models(
    pairs: list[tuple[MatchFields, MatchFields]], *, seed: int, random_models: int
) -> list[MatchModel]:
    """The model estimated on `pairs`, then models of its levels whose every level weighs at random:
    a bound must hold for any weights EM may find."""
    frequencies = value_frequencies([f for pair in pairs for f in pair], salt="test")
    estimated = estimate(_vectors(pairs), version=1, at=AT, frequencies=frequencies)
    rng = random.Random(seed)
    models = [estimated]
    for version in range(2, 2 + random_models):
        m = {f: {level: rng.uniform(0.001, 1.0) for level in levels} for f, levels in estimated.m.items()}
        u = {f: {level: rng.uniform(0.001, 1.0) for level in levels} for f, levels in estimated.u.items()}
        models.append(replace(estimated, version=version, m=m, u=u, match_share=rng.uniform(0.001, 0.5)))
    return models


def test_a_models_ceiling_bounds_every_pairs_score_whatever_its_weights() -> None:
    """A learned model passes over a pair whose names, birth dates and the contact fields both hold
    keep it below the threshold (`ceiling`), before comparing the rest. The bound is the model's
    own, so it must hold for any weights EM may find: for the model estimated on these pairs and for
    models whose every level weighs at random (a contradiction with a shared mailbox read as strong
    evidence for a match, a shared home against), no pair scores above its ceiling, and the ceiling
    reads nothing but the names, the birth dates and which contact fields are held."""
    pairs = _population_pairs()
    assert len(pairs) > 1000
    models = _estimated_and_random_models(pairs, seed=5, random_models=4)
    estimated = models[0]
    for model in models:
        for a, b in pairs:
            contacts = contacts_of(a) & contacts_of(b)
            ceiling = model.ceiling(names_and_birth_date(a), names_and_birth_date(b), contacts)
            assert model.score(a, b).score <= ceiling, (model.version, a, b)
            assert model.ceiling(a, b, contacts) == ceiling
    # And it passes over pairs: most look-alikes sharing a broad key cannot reach the threshold.
    passed_over = [a for a, b in pairs if estimated.score_reaching(a, b, DEFAULT_MIN_SCORE) is None]
    assert len(passed_over) > len(pairs) / 10
    assert all(estimated.score(a, b).score < DEFAULT_MIN_SCORE for a, b in pairs if estimated.ceiling(
        a, b, contacts_of(a) & contacts_of(b)) < DEFAULT_MIN_SCORE)  # fmt: skip


def test_a_models_bound_with_the_emails_and_phones_compared_passes_over_only_pairs_below() -> None:
    """Once a pair's names pass the first bound, its emails and phones are compared and bounded
    again before its addresses are (`score_reaching`, `score_lookalike`). For the estimated model
    and models of random weights, at several thresholds: a pair passed over scores below the
    threshold, one scored has its full score, and the second bound passes over pairs the first kept.
    `may_reach` agrees with the ceiling as shown, to the last digit shown."""
    pairs = _population_pairs()
    models = _estimated_and_random_models(pairs, seed=11, random_models=3)
    kept_by_names_only = 0
    for model in models:
        for threshold in (0.05, DEFAULT_MIN_SCORE, 0.9):
            for a, b in pairs:
                score = model.score(a, b)
                for bounded in (model.score_reaching(a, b, threshold), model.score_lookalike(a, b, threshold)):
                    if bounded is None:
                        assert score.score < threshold, (model.version, threshold, a, b)
                    else:
                        assert bounded == score
                first = model.ceiling(a, b, contacts_of(a) & contacts_of(b))
                assert model.may_reach(MatchView("a", (), a), MatchView("b", (), b), threshold) == (first >= threshold)
                if first >= threshold and model.score_lookalike(a, b, threshold) is None:
                    kept_by_names_only += 1
        # At a threshold equal to a pair's ceiling, it may reach it; one step above, it may not.
        for a, b in pairs[:300]:
            first = model.ceiling(a, b, contacts_of(a) & contacts_of(b))
            views = MatchView("a", (), a), MatchView("b", (), b)
            assert model.may_reach(*views, first)
            assert first >= 1 or not model.may_reach(*views, round(first + 10**-SCORE_DIGITS, SCORE_DIGITS))
    assert kept_by_names_only > len(pairs) / 10


def test_a_model_asked_for_ever_new_min_scores_answers_each_as_its_ceiling_says_and_keeps_few() -> None:
    """A model compares a pair's bound in bits with the fewest that reach each `minScore`, found once
    and kept: a client asking for 500 different ones gets each answered as the rounded ceiling
    says, and the model keeps a bounded number of them."""
    pairs = _population_pairs()[:40]
    (model,) = _estimated_and_random_models(pairs, seed=5, random_models=0)
    ceilings = [model.ceiling(a, b, contacts_of(a) & contacts_of(b)) for a, b in pairs]
    asked = random.Random(5).sample(range(1, 10**SCORE_DIGITS), 500)
    for step in asked:
        min_score = step / 10**SCORE_DIGITS
        for (a, b), ceiling in zip(pairs, ceilings, strict=True):
            views = MatchView("a", (), a), MatchView("b", (), b)
            assert model.may_reach(*views, min_score) == (ceiling >= min_score), (min_score, ceiling)
    assert 0 < len(model._reaching) <= 64


def test_a_surname_or_a_year_read_in_an_email_is_the_field_alone_to_a_learned_model() -> None:
    """The rules read a married name, a year of birth and a given name's ending in an email; a
    learned model's vector is the fields' own, as estimated and as scored (its bound reads names and
    birth dates alone)."""
    born = date(1961, 1, 17)
    maiden = normalised_fields(first_name="Elodie", last_name="Fachin", birth_date=born)
    married = normalised_fields(first_name="Elodie", last_name="Morel", birth_date=born, emails=["e.fachin@yahoo.fr"])
    dated = normalised_fields(first_name="Jean", last_name="Tamac", birth_date=date(1963, 7, 19))
    undated = normalised_fields(first_name="Jean", last_name="Tamac", emails=["jeantamac63@gmail.com"])
    sophie = normalised_fields(first_name="Sophie", last_name="Chaleron", birth_date=born)
    sophi = normalised_fields(first_name="Sophi", last_name="Chaleron", birth_date=born, emails=["sophie.c@sfr.fr"])
    for a, b, field, read in (
        (maiden, married, "lastName", "inEmail"),
        (dated, undated, "birthDate", "yearInEmail"),
        (sophi, sophie, "firstName", "inEmail"),
    ):
        assert {r.field: r.method for r in score_pair(a, b).reasons}[field] == read
        alone = comparison(score_pair(names_and_birth_date(a), names_and_birth_date(b)).reasons)
        assert comparison(score_pair(a, b).reasons) == alone
