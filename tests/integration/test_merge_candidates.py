"""Fuzzy merge candidates through the services, on every storage backend: the blocking-key index is
kept by every kind of profile write, candidates are found through it, and the optional automatic
fuzzy merge respects merge protection."""

from __future__ import annotations

import asyncio
from datetime import timedelta
from typing import Any

import pytest

from app.bootstrap import Services
from app.domain import clock
from app.domain.errors import InvalidInput, NotFound
from app.domain.events import RawIdentifier
from app.domain.matching import (
    DEFAULT_MIN_SCORE,
    MatchFields,
    MatchModel,
    MatchScore,
    PairScorer,
    blocking,
    match_fields,
    score_pair,
)
from app.domain.matching.candidates import Named
from app.domain.matching.index import KEYS_VERSION, keys_of
from app.domain.merge_protection import MergeProtection
from app.domain.profile import Profile
from app.domain.profile_change import ProfileChange
from app.domain.segments.upkeep import UPKEEP_GRACE
from app.services import (
    common_names,
    match_candidates,
    match_index,
    merging,
    privacy,
    profile_reads,
    profiles,
    review_list,
)
from app.services.identity_policy import IdentityPolicy
from app.services.ingestion import EventStatus, IngestionPolicy, ingest_events
from app.services.ports import ProfileStore, StoreTransaction
from app.settings import Settings
from tests.builders import event
from tests.interleaving import StandIn

NO_AUTO = IdentityPolicy(protection=MergeProtection(automatic_merges=False))
FUZZY = IdentityPolicy(fuzzy_merge_score=0.9)

JEAN = {
    "first_name": "Jean",
    "last_name": "Dupont",
    "birth_date": "1980-03-12",
    "addresses": [{"street": "12 rue Victor Hugo", "city": "Lyon", "postcode": "69002", "country": "FR"}],
}
# The same man typed again in a shop: a surname typo, day and month swapped, the street abbreviated,
# another mailbox. No identifier in common.
JEAN_AGAIN = {
    "first_name": "Jean",
    "last_name": "Dupond",
    "birth_date": "1980-12-03",
    "addresses": [{"street": "12 r. Victor Hugo", "city": "Lyon", "postcode": "69002", "country": "FR"}],
}
STRANGER = {
    "first_name": "Lucia",
    "last_name": "Romano",
    "birth_date": "1992-07-30",
    "addresses": [{"street": "Via Roma 3", "city": "Milano", "postcode": "20121", "country": "IT"}],
}


async def _upsert(
    store: ProfileStore, email: str, fields: dict[str, Any], policy: IdentityPolicy = NO_AUTO, **extra: str
) -> Profile:
    identifiers = [RawIdentifier("email", email), *(RawIdentifier(t, v) for t, v in extra.items())]
    return await profiles.upsert_profile(store, identifiers, fields, source="crm", policy=policy)


async def _stored(store: ProfileStore, profile_id: str) -> Profile:
    profile = await store.get_profile(profile_id)
    assert profile is not None
    return profile


async def test_every_write_keeps_the_keys_of_the_fields(store: ProfileStore) -> None:
    created = await _upsert(store, "jean.dupont@gmail.com", JEAN)
    stored = await _stored(store, created.id)
    assert stored.blocking_keys and stored.blocking_keys == keys_of(stored)
    assert [p.id for p in await store.profiles_sharing_keys(stored.blocking_keys, max_block=10, limit=10)] == [
        created.id
    ]

    # An update that moves the keys: the old ones no longer find the profile, the new ones do.
    await _upsert(store, "jean.dupont@gmail.com", {"last_name": "Lefebvre", "birth_date": "1975-01-20"})
    updated = await _stored(store, created.id)
    assert updated.blocking_keys == keys_of(updated) and updated.blocking_keys != stored.blocking_keys
    gone = sorted(set(stored.blocking_keys) - set(updated.blocking_keys))
    assert gone and await store.profiles_sharing_keys(gone, max_block=10, limit=10) == []
    assert await store.profile_ids_sharing_keys(gone, max_block=10, limit=10) == []
    assert await store.profile_ids_sharing_keys(updated.blocking_keys, max_block=10, limit=10) == [created.id]

    # An event that changes no identity field leaves the keys alone (and is not re-keyed).
    outcomes = await ingest_events(store, [event("page_view", email="jean.dupont@gmail.com")], IngestionPolicy())
    assert outcomes[0].status is EventStatus.ACCEPTED
    assert (await _stored(store, created.id)).blocking_keys == updated.blocking_keys


async def test_candidates_for_one_profile_find_the_typo_duplicate_and_say_why(store: ProfileStore) -> None:
    jean = await _upsert(store, "jean.dupont@gmail.com", JEAN)
    again = await _upsert(store, "j.dupond@orange.fr", JEAN_AGAIN)
    await _upsert(store, "lucia.romano@libero.it", STRANGER)

    found = await match_candidates.candidates_for_profile(store, jean.id)
    assert [(c.a, c.b) for c in found] == [(jean.id, again.id)]
    assert 0.9 <= found[0].score <= 1.0
    fields = {r.field for r in found[0].reasons}
    assert {"lastName", "birthDate"} <= fields, found[0].reasons
    assert all(r.method and 0.0 <= r.similarity <= 1.0 for r in found[0].reasons)

    # Symmetric, and the whole-store list holds the pair once.
    assert [(c.a, c.b) for c in await match_candidates.candidates_for_profile(store, again.id)] == [(again.id, jean.id)]
    everywhere = await review_list.candidates_in_store(store)
    assert [{c.a, c.b} for c in everywhere] == [{jean.id, again.id}]


async def test_records_alike_only_by_name_are_linked_through_a_third(store: ProfileStore) -> None:
    # One woman three times: in a shop with her Gmail address, online with her Orange one, and in the
    # loyalty programme with both mailboxes typed otherwise (no dot; a +tag): no identifier in common.
    isabelle = {"first_name": "Isabelle", "last_name": "Chaet"}
    shop = await _upsert(store, "isabelle.chaet@gmail.com", isabelle | {"birth_date": "1969-06-17"})
    online = await _upsert(store, "ichaet@orange.fr", isabelle)
    both = [RawIdentifier("email", "isabellechaet@gmail.com"), RawIdentifier("email", "ichaet+fid@orange.fr")]
    loyalty = await profiles.upsert_profile(store, both, isabelle, source="crm", policy=NO_AUTO)
    assert score_pair(match_fields(shop), match_fields(online)).score < DEFAULT_MIN_SCORE  # namesakes alone

    found = {c.b: c for c in await match_candidates.candidates_for_profile(store, shop.id)}
    assert set(found) == {loyalty.id, online.id}
    assert found[loyalty.id].via is None
    link = found[online.id]
    assert link.via == loyalty.id and link.score >= 0.99
    assert ("profile", "linkedThrough") in {(r.field, r.method) for r in link.reasons}

    everywhere = {(c.a, c.b): c.via for c in await review_list.candidates_in_store(store)}
    assert everywhere == {
        tuple(sorted((shop.id, loyalty.id))): None,
        tuple(sorted((online.id, loyalty.id))): None,
        tuple(sorted((shop.id, online.id))): loyalty.id,
    }


class _ScoredByGivenName:
    """A pair scorer reading a table of scores by the two given names (the scores a link's lookup is
    judged on), never passing a pair over unscored."""

    counts_unique_names = False
    TABLE = {
        frozenset({"tess", "lena"}): 0.9,  # the link
        frozenset({"tess", "olga"}): 0.6,  # a candidate the link resembles more: listed through it
        frozenset({"lena", "olga"}): 0.95,
        frozenset({"tess", "pia"}): 0.95,  # a candidate resembled more than the link: listed alone
        frozenset({"lena", "pia"}): 0.99,
        frozenset({"olga", "pia"}): 0.2,
    }

    def __call__(self, a: MatchFields, b: MatchFields) -> MatchScore:
        return MatchScore(self.TABLE[frozenset({a.first_name, b.first_name})], [], "table")

    def may_reach(self, a: Named, b: Named, min_score: float) -> bool:
        return True

    def score_reaching(
        self, a: MatchFields, b: MatchFields, min_score: float, *, unique_names: bool = False
    ) -> MatchScore | None:
        return self(a, b)

    score_lookalike = score_reaching


async def test_a_candidate_the_link_resembles_more_than_the_profile_does_is_listed_through_it(
    store: ProfileStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A link's lookup leaves out what `with_links` could not list through it (the profile itself,
    and the candidates resembling the profile at least as much as the link does), and nothing more:
    a candidate the profile resembles less than the link is listed through the link at their
    product."""
    ids = await _scored_by_table(store, monkeypatch, _ScoredByGivenName())
    found = {c.b: (c.score, c.via) for c in await match_candidates.candidates_for_profile(store, ids["Tess"])}
    assert found == {
        ids["Lena"]: (0.99 * 0.95, ids["Pia"]),  # through Pia, the better link: 0.9405 over 0.9
        ids["Olga"]: (0.855, ids["Lena"]),
        ids["Pia"]: (0.95, None),
    }


class _ScoresLogged(_ScoredByGivenName):
    """The table's scores, each pair scored logged by the given name it was scored for."""

    def __init__(self, log: list[str]) -> None:
        self.log = log

    def score_reaching(
        self, a: MatchFields, b: MatchFields, min_score: float, *, unique_names: bool = False
    ) -> MatchScore | None:
        self.log.append(a.first_name)
        return self(a, b)

    score_lookalike = score_reaching


async def test_requests_waiting_for_the_loop_go_between_two_links_judging(
    store: ProfileStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A lookup's links are judged one after the other, the loop let go between two: a request
    arriving meanwhile (a frontend's profile read) waits for one link's judging, not for all of
    them."""
    log: list[str] = []
    ids = await _scored_by_table(store, monkeypatch, _ScoresLogged(log))
    asked = False

    async def other_requests() -> None:
        while not asked:
            log.append("other")
            await asyncio.sleep(0)

    others = asyncio.create_task(other_requests())
    try:
        found = await match_candidates.candidates_for_profile(store, ids["Tess"])
    finally:
        asked = True
        await others
    assert {c.via for c in found} == {None, ids["Lena"], ids["Pia"]}  # both links followed
    first, second = "pia", "lena"  # the links, best first: Pia (0.95) then Lena (0.9)
    after_first = max(i for i, entry in enumerate(log) if entry == first)
    second_begins = log.index(second, after_first)
    assert "other" in log[after_first:second_begins]


async def _scored_by_table(
    store: ProfileStore, monkeypatch: pytest.MonkeyPatch, scorer: _ScoredByGivenName
) -> dict[str, str]:
    """Tess, Lena, Olga and Pia Quorndon (one surname and birth date: every pair shares keys), their
    lookups scored by `scorer`; their ids by given name."""

    async def table(_store: ProfileStore) -> PairScorer:
        return scorer

    monkeypatch.setattr(match_candidates, "current_scorer", table)
    ids = {}
    for name in ("Tess", "Lena", "Olga", "Pia"):
        says = {"first_name": name, "last_name": "Quorndon", "birth_date": "1977-05-19"}
        ids[name] = (await _upsert(store, f"{name.lower()}.q@example.com", says)).id
    return ids


async def test_two_profiles_whose_names_no_other_holds_are_listed_until_a_namesake_comes(store: ProfileStore) -> None:
    # Olivia Walrwood twice, online with her mailbox and in a shop with her phone: nothing to compare
    # but her names, which no other profile of the store holds names sounding like, so the two are
    # likelier one person than namesakes.
    olivia = {"first_name": "Olivia", "last_name": "Walrwood"}
    first = await _upsert(store, "owalrwood@outlook.com", olivia | {"birth_date": "1966-06-29"})
    phone = [RawIdentifier("phone", "+447911123456")]
    second = await profiles.upsert_profile(store, phone, olivia, source="shop", policy=NO_AUTO)
    await _upsert(store, "lucia.romano@libero.it", STRANGER)
    assert score_pair(match_fields(first), match_fields(second)).score < DEFAULT_MIN_SCORE  # the names alone

    held_alone = ("name", "heldByNoOther")
    found = await match_candidates.candidates_for_profile(store, first.id)
    assert [c.b for c in found] == [second.id] and held_alone in {(r.field, r.method) for r in found[0].reasons}
    assert [c.b for c in await match_candidates.candidates_for_profile(store, second.id)] == [first.id]
    listed = await review_list.candidates_in_store(store)
    assert [{c.a, c.b} for c in listed] == [{first.id, second.id}]
    assert listed[0].score == found[0].score and held_alone in {(r.field, r.method) for r in listed[0].reasons}

    # A third Olivia Walrwood (born another year): the names are no longer theirs alone.
    third = await _upsert(store, "olivia1990@yahoo.com", olivia | {"birth_date": "1990-01-02"})
    assert await match_candidates.candidates_for_profile(store, third.id) == []
    assert await match_candidates.candidates_for_profile(store, first.id) == []
    assert await match_candidates.candidates_for_profile(store, second.id) == []
    assert await review_list.candidates_in_store(store) == []


async def test_twins_whose_given_names_are_one_letter_apart_and_common_are_not_candidates(
    store: ProfileStore,
) -> None:
    """Marta and Maria Zuzera, twins sharing a home and a birth date, each with her own mailbox: one
    letter apart, their given names read as one mistyped, and the steward was asked to merge them
    (0.99). Once the store holds both as names people have (five Martas and five Marias besides),
    neither one profile's candidates nor the review list pair them; Mrata, a typo of Marta no other
    profile holds, is still her candidate."""
    home = {
        "last_name": "Zuzera",
        "birth_date": "1966-10-16",
        "addresses": [{"street": "Plaza Mayor 85", "city": "Valencia", "postcode": "46060", "country": "ES"}],
    }
    marta = await _upsert(store, "mzuzera@hotmail.com", home | {"first_name": "Marta"})
    maria = await _upsert(store, "maria.zuzera@gmail.com", home | {"first_name": "Maria"})
    twins = {marta.id, maria.id}
    assert [c.b for c in await match_candidates.candidates_for_profile(store, marta.id)] == [maria.id]

    for name in ("Marta", "Maria"):
        for n in range(4):
            await _upsert(store, f"{name}{n}@example.org", {"first_name": name, "last_name": f"Ortiz{n}"})
    mrata = await _upsert(store, "mrata.zuzera@gmail.com", home | {"first_name": "Mrata"})
    assert {"marta", "maria"} <= await common_names.count_given_names(store)  # as every minute
    found = {c.b: c for c in await match_candidates.candidates_for_profile(store, marta.id, min_score=0.0)}
    assert found[maria.id].score < DEFAULT_MIN_SCORE <= found[mrata.id].score
    assert ("firstName", "different") in {(r.field, r.method) for r in found[maria.id].reasons}
    assert maria.id not in {c.b for c in await match_candidates.candidates_for_profile(store, marta.id)}
    assert marta.id not in {c.b for c in await match_candidates.candidates_for_profile(store, maria.id)}
    listed = [{c.a, c.b} for c in await review_list.candidates_in_store(store)]
    assert twins not in listed and {marta.id, mrata.id} in listed


async def test_common_given_names_are_counted_once_then_again_behind_the_requests(
    store: ProfileStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The first request counts the store's common given names; the next ones read that count
    until it is CACHE_SECONDS old, then get it while a new count runs, and the one after it."""
    assert await common_names.common_given_names(store) == frozenset()
    for n in range(5):
        await _upsert(store, f"maria{n}@example.org", {"first_name": "María", "last_name": f"Ortiz{n}"})
    assert await common_names.common_given_names(store) == frozenset()  # counted under a minute ago
    monkeypatch.setattr(common_names, "CACHE_SECONDS", 0.0)
    assert await common_names.common_given_names(store) == frozenset()  # the old count, a new one begun
    for _ in range(200):
        await asyncio.sleep(0.005)
        if await common_names.common_given_names(store):
            break
    assert await common_names.common_given_names(store) == {"maria"}


async def test_a_merge_retires_the_tombstone_keys_and_an_unmerge_restores_them(store: ProfileStore) -> None:
    jean = await _upsert(store, "jean.dupont@gmail.com", JEAN)
    again = await _upsert(store, "j.dupond@orange.fr", JEAN_AGAIN)
    keys_before = (await _stored(store, again.id)).blocking_keys
    record, _ = await merging.merge_profiles(
        store, jean.id, [again.id], reason="same man", actor="steward", policy=NO_AUTO
    )
    tomb = await _stored(store, again.id)
    assert tomb.merged_into == jean.id and tomb.blocking_keys == []
    stored_survivor = await _stored(store, jean.id)
    assert stored_survivor.blocking_keys == keys_of(stored_survivor)
    assert set(keys_before) & set(stored_survivor.blocking_keys)  # the survivor now holds both mailboxes
    assert await match_candidates.candidates_for_profile(store, jean.id) == []
    assert await review_list.candidates_in_store(store) == []
    # The merged-away id stands for its survivor.
    assert await match_candidates.candidates_for_profile(store, again.id) == []

    await merging.unmerge_profile(store, record.id, actor="steward")
    restored = await _stored(store, again.id)
    assert restored.blocking_keys == keys_before
    assert [(c.a, c.b) for c in await match_candidates.candidates_for_profile(store, jean.id)] == [(jean.id, again.id)]


async def test_bad_requests_are_refused_clearly(store: ProfileStore) -> None:
    jean = await _upsert(store, "jean.dupont@gmail.com", JEAN)
    with pytest.raises(InvalidInput, match="minScore") as bad_score:
        await match_candidates.candidates_for_profile(store, jean.id, min_score=1.5)
    assert bad_score.value.field == "minScore"
    with pytest.raises(InvalidInput, match="first"):
        await review_list.candidates_in_store(store, first=0)
    with pytest.raises(NotFound, match="no profile nope"):
        await match_candidates.candidates_for_profile(store, "nope")


async def test_automatic_fuzzy_merge_above_the_configured_score(store: ProfileStore) -> None:
    jean = await _upsert(store, "jean.dupont@gmail.com", JEAN, policy=FUZZY)
    written = await _upsert(store, "j.dupond@orange.fr", JEAN_AGAIN, policy=FUZZY)
    assert written.id == jean.id  # the older profile survives and the write answers with it
    survivor = await profile_reads.get_profile_by_identifier(store, "email", "j.dupond@orange.fr")
    assert survivor is not None and survivor.id == jean.id
    (record,) = await store.merges_of(jean.id)
    # Recorded as the server's, not a steward's (it said automatic: false: an audit log filtered on it
    # missed every fuzzy merge).
    assert record.automatic is True and record.actor == "system" and "fuzzy match" in record.reason

    # A stranger is not merged; nor is anyone when the setting is off, nor with automatic merges off
    # (CDP_AUTO_MERGE=false: fuzzy merges were made all the same).
    lucia = await _upsert(store, "lucia.romano@libero.it", STRANGER, policy=FUZZY)
    assert (await _stored(store, lucia.id)).merged_into is None
    again = await _upsert(store, "lucia.r@gmail.com", STRANGER, policy=NO_AUTO)
    assert (await _stored(store, again.id)).merged_into is None
    off = IdentityPolicy(fuzzy_merge_score=0.9, protection=MergeProtection(automatic_merges=False))
    twin = await _upsert(store, "lucia.romano@gmail.com", STRANGER, policy=off)
    assert (await _stored(store, twin.id)).merged_into is None and twin.id != lucia.id


async def test_a_fuzzy_merge_a_stopped_process_never_made_is_made_when_its_writes_check_comes_due(
    store: ProfileStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    services = Services(settings=Settings(seed_fixtures=False), store=store, ingestion=IngestionPolicy(identity=FUZZY))
    jean = await _upsert(store, "jean.dupont@gmail.com", JEAN)
    # Written, and nothing after the commit: as when the process stops right then.
    again = await _upsert(store, "j.dupond@orange.fr", JEAN_AGAIN)
    assert (await _stored(store, again.id)).merged_into is None

    real = clock.now
    monkeypatch.setattr(clock, "now", lambda: real() + UPKEEP_GRACE + timedelta(seconds=1))
    assert await services.segments.run_due_checks() == 2
    assert (await _stored(store, again.id)).merged_into == jean.id


async def test_a_steward_who_undid_an_automatic_fuzzy_merge_is_not_overruled_by_the_next_write(
    store: ProfileStore,
) -> None:
    jean = await _upsert(store, "jean.dupont@gmail.com", JEAN, policy=FUZZY)
    await _upsert(store, "j.dupond@orange.fr", JEAN_AGAIN, policy=FUZZY)
    (record,) = await store.merges_of(jean.id)
    _, (_, again) = await merging.unmerge_profile(store, record.id, actor="steward")  # not the same man

    # Both go on receiving events and updates: the look-alike is not merged again by the matcher.
    await _upsert(store, "j.dupond@orange.fr", {**JEAN_AGAIN, "job_title": "Chef"}, policy=FUZZY)
    late = event("page_view", email="jean.dupont@gmail.com")
    assert (await ingest_events(store, [late], IngestionPolicy(identity=FUZZY)))[0].status is EventStatus.ACCEPTED
    assert (await _stored(store, again.id)).merged_into is None
    assert (await _stored(store, jean.id)).merged_into is None
    assert [r.id for r in await store.merges_of(jean.id)] == [record.id]

    # A steward may still merge them by hand.
    await merging.merge_profiles(store, jean.id, [again.id], reason="checked", actor="steward", policy=FUZZY)
    assert (await _stored(store, again.id)).merged_into == jean.id


class _ErasedBeforeTheMerge(StandIn):
    """The store, where the look-alike found is erased just before the automatic merge reaches it."""

    def __init__(self, store: ProfileStore, erase: str) -> None:
        super().__init__(store)
        self._erase = erase

    async def merges_of_profiles(self, *args: Any, **kwargs: Any) -> Any:
        found = await self._inner.merges_of_profiles(*args, **kwargs)
        if await self._inner.get_profile(self._erase) is not None:
            await privacy.delete_profile(self._inner, self._erase, actor="dpo")
        return found


async def test_an_automatic_fuzzy_merge_that_cannot_be_made_never_fails_the_committed_write(
    store: ProfileStore,
) -> None:
    jean = await _upsert(store, "jean.dupont@gmail.com", JEAN, policy=FUZZY)
    wrapped = _ErasedBeforeTheMerge(store, jean.id)
    again = await profiles.upsert_profile(
        wrapped,  # type: ignore[arg-type]
        [RawIdentifier("email", "j.dupond@orange.fr")],
        JEAN_AGAIN,
        source="crm",
        policy=FUZZY,
    )
    assert (await _stored(store, again.id)).merged_into is None  # written, and left alone
    assert await store.get_profile(jean.id) is None
    late = event("page_view", email="j.dupond@orange.fr")
    outcomes = await ingest_events(wrapped, [late], IngestionPolicy(identity=FUZZY))  # type: ignore[arg-type]
    assert [o.status for o in outcomes] == [EventStatus.ACCEPTED]


async def test_automatic_fuzzy_merge_respects_merge_protection(store: ProfileStore) -> None:
    jean = await _upsert(store, "jean.dupont@gmail.com", JEAN, policy=FUZZY, customerId="C1")
    again = await _upsert(store, "j.dupond@orange.fr", JEAN_AGAIN, policy=FUZZY, customerId="C2")
    assert again.id != jean.id
    assert (await _stored(store, again.id)).merged_into is None
    (refusal,) = await store.refusals_of(jean.id)
    assert set(refusal.profile_ids) == {jean.id, again.id} and "customerId" in refusal.reason


class _IdentifiedBeforeTheMerge(StandIn):
    """The store, where the written profile gets a second customer id once the automatic merge has
    judged the group (its score and merge protection), before the merge is made."""

    def __init__(self, store: ProfileStore) -> None:
        super().__init__(store)
        self._done = False

    async def merges_of_profiles(self, *args: Any, **kwargs: Any) -> Any:
        found = await self._inner.merges_of_profiles(*args, **kwargs)
        if not self._done:
            self._done = True
            await _upsert(self._inner, "j.dupond@orange.fr", JEAN_AGAIN, customerId="C2")
        return found


async def test_an_automatic_fuzzy_merge_is_made_of_the_profiles_as_it_judged_them(store: ProfileStore) -> None:
    jean = await _upsert(store, "jean.dupont@gmail.com", JEAN, customerId="C1")
    await profiles.upsert_profile(
        _IdentifiedBeforeTheMerge(store),  # type: ignore[arg-type]
        [RawIdentifier("email", "j.dupond@orange.fr")],
        JEAN_AGAIN,
        source="crm",
        policy=FUZZY,
    )
    # Merged now, the two would hold two customer ids, which merge protection refuses.
    again = await profile_reads.get_profile_by_identifier(store, "email", "j.dupond@orange.fr") or pytest.fail()
    assert again.id != jean.id and {i.value for i in again.identifiers if i.type == "customerId"} == {"C2"}
    assert {i.value for i in (await _stored(store, jean.id)).identifiers if i.type == "customerId"} == {"C1"}


class _RenamedAfterTheRead(StandIn):
    """The store, where a customer's surname is changed (by another worker) right after a page is read."""

    def __init__(self, store: ProfileStore, email: str) -> None:
        super().__init__(store)
        self._email = email

    async def list_profiles(self, *args: Any, **kwargs: Any) -> Any:
        page = await self._inner.list_profiles(*args, **kwargs)
        if page:
            await _upsert(self._inner, self._email, {**JEAN, "last_name": "Martin"})
        return page


async def test_start_up_rekeys_profiles_with_their_fields_as_stored_when_it_writes(store: ProfileStore) -> None:
    jean = await _upsert(store, "jean.dupont@gmail.com", JEAN)

    async def forget(tx: StoreTransaction) -> None:  # as written by a version without the index
        await tx.update_profile(jean.id, ProfileChange(set={"blockingKeys": []}))

    await store.run_in_transaction(forget)
    await store.write_meta(match_index.META_KEY, "0")
    await match_index.ensure_blocking_keys(_RenamedAfterTheRead(store, "jean.dupont@gmail.com"))  # type: ignore[arg-type]
    stored = await _stored(store, jean.id)
    assert stored.last_name == "Martin" and stored.blocking_keys == keys_of(stored)


async def test_start_up_rekeys_profiles_written_without_keys(store: ProfileStore) -> None:
    jean = await _upsert(store, "jean.dupont@gmail.com", JEAN)
    again = await _upsert(store, "j.dupond@orange.fr", JEAN_AGAIN)
    expected = {p: (await _stored(store, p)).blocking_keys for p in (jean.id, again.id)}

    async def forget(tx: StoreTransaction) -> None:  # as written by a version without the index
        for profile_id in expected:
            await tx.update_profile(profile_id, ProfileChange(set={"blockingKeys": []}))

    await store.run_in_transaction(forget)
    assert await match_candidates.candidates_for_profile(store, jean.id) == []
    await store.write_meta(match_index.META_KEY, KEYS_VERSION)
    assert await match_index.ensure_blocking_keys(store) == 0  # the version mark says: nothing to do

    await store.write_meta(match_index.META_KEY, "0")
    checked: list[int] = []
    assert await match_index.ensure_blocking_keys(store, checked.append) == 2
    assert checked == [2]
    assert {p: (await _stored(store, p)).blocking_keys for p in expected} == expected
    assert len(await match_candidates.candidates_for_profile(store, jean.id)) == 1
    assert await match_index.ensure_blocking_keys(store) == 0


async def test_keys_shared_by_too_many_profiles_are_passed_over(store: ProfileStore) -> None:
    namesakes = [
        await _upsert(store, f"jean.dupont{n}@example.org", {"first_name": "Jean", "last_name": "Dupont"})
        for n in range(4)
    ]
    key_sets = [set((await _stored(store, p.id)).blocking_keys) for p in namesakes]
    shared = sorted(set.intersection(*key_sets))
    assert shared  # the name keys
    found = await store.profiles_sharing_keys(shared, max_block=4, limit=10)
    assert sorted(p.id for p in found) == sorted(p.id for p in namesakes)
    assert await store.profiles_sharing_keys(shared, max_block=3, limit=10) == []
    assert len(await store.profiles_sharing_keys(shared, max_block=4, limit=2)) == 2
    # Their ids alone, read from the key index: the same profiles, the same limits.
    assert sorted(await store.profile_ids_sharing_keys(shared, max_block=4, limit=10)) == sorted(p.id for p in found)
    assert await store.profile_ids_sharing_keys(shared, max_block=3, limit=10) == []
    assert len(await store.profile_ids_sharing_keys(shared, max_block=4, limit=2)) == 2


async def test_one_profiles_lookup_passes_over_keys_held_by_more_than_max_lookup_block(
    store: ProfileStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    """One profile's candidates leave out the keys held by more profiles than MAX_LOOKUP_BLOCK (what a
    lookup costs stays bounded); the review list still compares the profiles holding them."""
    name_only = {"first_name": "Jean", "last_name": "Dupont"}  # each one's only keys are the name keys
    namesakes = [await _upsert(store, f"jean.dupont{n}@example.org", name_only) for n in range(3)]
    assert len(await match_candidates.candidates_for_profile(store, namesakes[0].id, min_score=0.01)) == 2
    monkeypatch.setattr(match_candidates, "MAX_LOOKUP_BLOCK", 2)
    assert await match_candidates.candidates_for_profile(store, namesakes[0].id, min_score=0.01) == []
    assert len(await review_list.candidates_in_store(store, min_score=0.01)) == 3


# A learned model reading every pair as even odds (no level it knows): any pair it compares scores 0.5.
EVEN_ODDS = MatchModel(version=1, estimated_at=clock.now(), pairs_used=1000, match_share=0.5, m={}, u={}, iterations=1)


@pytest.mark.parametrize("scorer", ["rules", "learned"])
async def test_a_given_name_alone_under_another_surname_is_passed_over(
    store: ProfileStore, scorer: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A profile without a birth date looks up its given name + surname initial key (`g:`) for a
    surname typo that changed the surname's Metaphone. A look-alike sharing only that key under
    another surname (a namesake by given name) is passed over by its lookup and by the review list;
    one whose surname is a typo is not, nor one sharing another key (a home) under another surname.
    So whichever scorer answers: a learned model listing every pair it compares at 0.5 lists the
    namesake no more than the rules do."""
    if scorer == "learned":

        async def learned(_store: ProfileStore) -> PairScorer:
            return EVEN_ODDS

        monkeypatch.setattr(match_candidates, "current_scorer", learned)
        monkeypatch.setattr(review_list, "current_scorer", learned)
    home = {"addresses": JEAN["addresses"]}
    jean = await _upsert(store, "jean@example.org", {"first_name": "Jean", "last_name": "Dupont", **home})
    typo = await _upsert(store, "jd@example.com", {"first_name": "Jean", "last_name": "Dupomt"})
    other = await _upsert(store, "jeand@example.net", {"first_name": "Jean", "last_name": "Durand"})
    housemate = await _upsert(store, "jdumas@example.net", {"first_name": "Jean", "last_name": "Dumas", **home})
    keys = {p.id: set((await _stored(store, p.id)).blocking_keys) for p in (jean, typo, other, housemate)}
    assert keys[typo.id] & keys[jean.id] == keys[other.id] & keys[jean.id] == {"g:jean|d"}
    assert {"g:", "a:"} <= {k[:2] for k in keys[housemate.id] & keys[jean.id]}

    found = await match_candidates.candidates_for_profile(store, jean.id, min_score=0.0, first=10)
    assert sorted(c.b for c in found) == sorted([typo.id, housemate.id])
    assert await match_candidates.candidates_for_profile(store, other.id, min_score=0.0, first=10) == []
    listed = {frozenset((c.a, c.b)) for c in await review_list.candidates_in_store(store, min_score=0.0)}
    assert {frozenset((jean.id, typo.id)), frozenset((jean.id, housemate.id))} <= listed
    assert not any(other.id in pair for pair in listed)


async def test_the_review_list_compares_a_long_block_by_sorted_neighbourhood(
    store: ProfileStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Keys shared by more profiles than `MAX_BLOCK_SIZE` are no longer passed over by the whole
    store's list: a record holding nothing but Jean Dupont's name, whose every key is shared by his
    namesakes, meets his record among its sorted neighbours (and not every namesake)."""
    monkeypatch.setattr(blocking, "MAX_BLOCK_SIZE", 3)
    monkeypatch.setattr(blocking, "NEIGHBOURHOOD_WINDOW", 2)
    jean = await _upsert(store, "jean@example.org", JEAN)
    for month in range(5, 9):  # namesakes born later the same year: they sort after Jean
        await _upsert(store, f"namesake{month}@example.org", {**JEAN, "birth_date": f"1980-{month:02}-01"})
    name_only = await _upsert(store, "jd@example.org", {"first_name": "Jean", "last_name": "Dupont"})
    found = {frozenset((c.a, c.b)) for c in await review_list.candidates_in_store(store, min_score=0.01)}
    assert frozenset((jean.id, name_only.id)) in found
    assert len(found) < 6 * 5 // 2
