"""The storage contract: every backend behaves the same behind the ProfileStore interface."""

from __future__ import annotations

from collections.abc import Awaitable
from datetime import datetime, timedelta
from typing import Any

import orjson
import pytest

from app.domain.access import ApiKey, Scope
from app.domain.clock import now
from app.domain.errors import InvalidInput
from app.domain.event_effects import RECENT_ORDER
from app.domain.identifiers import Identifier
from app.domain.merge import MergeRecord, MergeRefusal, MergeStatus
from app.domain.privacy import ConsentDecision
from app.domain.profile import Address, IdentifierRecord, Interaction, Profile, new_profile
from app.domain.profile_change import CappedPush, ProfileChange
from app.domain.profile_query import (
    InteractionFilter,
    InteractionPosition,
    ProfileFilter,
    StatsField,
    StatsRange,
)
from app.domain.segments.segment import MembershipChange, Segment, SegmentEvent, new_event_id
from app.services.ports import (
    IdentityTaken,
    MessageAlreadyProcessed,
    ProfileStore,
    ProfileWrite,
    StoreTransaction,
    VersionConflict,
)
from tests.builders import BASE_TIME

EMMA = Identifier("email", "emma@example.com")


async def _create(store: ProfileStore, profile_id: str, *identifiers: Identifier, **fields: object) -> Profile:
    records = [IdentifierRecord(type=i.type, value=i.value, added_at=BASE_TIME) for i in identifiers]
    profile = new_profile(profile_id, BASE_TIME).model_copy(update={"identifiers": records, **fields})

    async def work(tx: StoreTransaction) -> None:
        await tx.claim_identities(profile_id, list(identifiers), BASE_TIME)
        await tx.insert_profile(profile)

    await store.run_in_transaction(work)
    return profile


async def test_inserted_profile_reads_back_equal(store: ProfileStore) -> None:
    created = await _create(store, "p1", EMMA, first_name="Emma", traits={"tier": "gold", "kids": [1, 2]})
    assert await store.get_profile("p1") == created
    assert await store.get_profile("missing") is None


async def test_an_identifier_belongs_to_one_profile_only(store: ProfileStore) -> None:
    await _create(store, "p1", EMMA)
    with pytest.raises(IdentityTaken) as taken:
        await _create(store, "p2", Identifier("phone", "+33612345678"), EMMA)
    assert taken.value.key == EMMA.key
    # The failed transaction left nothing behind: neither the profile nor its other identifier.
    assert await store.get_profile("p2") is None
    assert await store.find_profile_by_identity("phone:+33612345678") is None

    async def owners(tx: StoreTransaction) -> dict[str, str]:
        return await tx.owners_of([EMMA.key, "phone:+33612345678"])

    assert await store.run_in_transaction(owners) == {EMMA.key: "p1"}


async def test_find_by_identity_returns_the_owning_profile(store: ProfileStore) -> None:
    await _create(store, "p1", EMMA, first_name="Emma")
    found = await store.find_profile_by_identity(EMMA.key)
    assert found is not None and found.first_name == "Emma"
    assert await store.find_profile_by_identity("email:nobody@example.com") is None


async def test_update_applies_all_operators_in_one_write(store: ProfileStore) -> None:
    await _create(store, "p1", EMMA)
    later = BASE_TIME + timedelta(days=1)
    change = ProfileChange(
        set={"firstName": "Emma", "traits.tier": "gold"},
        inc={"stats.orders": 2, "stats.channels.store": 1},
        max={"stats.lastSeenAt": later},
        min={"stats.firstSeenAt": later},
        push={"recent": CappedPush([_interaction("m1", later)], RECENT_ORDER, 50)},
        append={"identifiers": [{"type": "email", "value": "e@x.com", "addedAt": later}]},
    ).stamped(later)

    async def work(tx: StoreTransaction) -> None:
        await tx.update_profile("p1", change, expected_version=0)

    await store.run_in_transaction(work)
    profile = await store.get_profile("p1")
    assert profile is not None
    assert (profile.first_name, profile.traits, profile.version) == ("Emma", {"tier": "gold"}, 1)
    assert (profile.stats.orders, profile.stats.channels) == (2, {"store": 1})
    assert profile.stats.last_seen_at == later == profile.stats.first_seen_at
    assert profile.updated_at == later
    assert [i.message_id for i in profile.recent] == ["m1"]
    assert [i.value for i in profile.identifiers] == ["emma@example.com", "e@x.com"]


async def test_stale_version_is_refused_and_changes_nothing(store: ProfileStore) -> None:
    await _create(store, "p1", EMMA)

    async def stale(tx: StoreTransaction) -> None:
        await tx.update_profile("p1", ProfileChange(set={"firstName": "X"}).stamped(BASE_TIME), expected_version=7)

    with pytest.raises(VersionConflict):
        await store.run_in_transaction(stale)
    profile = await store.get_profile("p1")
    assert profile is not None and profile.first_name is None and profile.version == 0


async def test_recent_list_is_capped_keeping_the_newest(store: ProfileStore) -> None:
    await _create(store, "p1", EMMA)
    for minute in [5, 1, 9, 3, 7]:
        item = _interaction(f"m{minute}", BASE_TIME + timedelta(minutes=minute))

        async def work(tx: StoreTransaction, item: dict = item) -> None:  # type: ignore[type-arg]
            await tx.update_profile("p1", ProfileChange(push={"recent": CappedPush([item], RECENT_ORDER, 3)}))

        await store.run_in_transaction(work)
    profile = await store.get_profile("p1")
    assert profile is not None
    assert [i.message_id for i in profile.recent] == ["m9", "m7", "m5"]


async def test_a_failing_unit_of_work_writes_nothing(store: ProfileStore) -> None:
    async def work(tx: StoreTransaction) -> None:
        await tx.claim_identities("p1", [EMMA], BASE_TIME)
        await tx.insert_profile(new_profile("p1", BASE_TIME))
        await tx.record_message("m1", "p1", now() + timedelta(days=1))  # not expired (MongoDB drops expired ones)
        raise RuntimeError("boom")

    with pytest.raises(RuntimeError):
        await store.run_in_transaction(work)
    assert await store.get_profile("p1") is None
    assert await store.find_profile_by_identity(EMMA.key) is None
    assert await store.count_profiles() == 0


async def test_a_message_id_is_recorded_once(store: ProfileStore) -> None:
    expires = BASE_TIME + timedelta(days=36500)

    async def record(tx: StoreTransaction) -> bool:
        seen_before = await tx.message_seen("m1")
        await tx.record_message("m1", "p1", expires)
        return seen_before

    assert await store.run_in_transaction(record) is False
    with pytest.raises(MessageAlreadyProcessed):
        await store.run_in_transaction(record)


async def test_consent_decisions_made_by_events_move_with_them_and_direct_ones_stay(store: ProfileStore) -> None:
    def decided(profile_id: str, message_id: str | None, minutes: int = 0) -> ConsentDecision:
        at = BASE_TIME + timedelta(minutes=minutes)
        return ConsentDecision(
            profile_id=profile_id, purpose="ads", granted=True, source="web", at=at, message_id=message_id
        )

    async def record(tx: StoreTransaction) -> None:
        for decision in (decided("p1", None), decided("p1", "m1"), decided("p1", "m2"), decided("p2", "m3", 1)):
            await tx.append_consent(decision)

    async def move(tx: StoreTransaction) -> list[ConsentDecision]:
        await tx.assign_consents("p1", {"m1": "p2", "m3": "p1", "m9": "p3"})  # m3 is p2's: not p1's to move
        return await tx.consent_decisions("p1")

    await store.run_in_transaction(record)
    kept = await store.run_in_transaction(move)
    assert sorted((d.profile_id, d.message_id or "") for d in kept) == [("p1", ""), ("p1", "m2")]
    assert [(d.profile_id, d.message_id) for d in await store.consent_history(["p2"])] == [("p2", "m3"), ("p2", "m1")]
    # Decisions of one millisecond keep the order they were made in.
    assert [d.message_id for d in await store.consent_history(["p1", "p2"])] == ["m3", "m2", "m1", None]


async def test_history_pages_newest_first_with_filters_and_positions(store: ProfileStore) -> None:
    items = [
        _interaction(f"m{i:03d}", BASE_TIME + timedelta(minutes=i // 2), type_="page_view" if i % 3 else "email_open")
        for i in range(450)
    ]

    async def work(tx: StoreTransaction) -> None:
        for item in items:
            await tx.append_interaction("p1", item)

    await store.run_in_transaction(work)
    expected = sorted(items, key=lambda i: (i["timestamp"], i["messageId"]), reverse=True)
    first = await store.list_interactions("p1", before=None, where=InteractionFilter(), limit=10)
    assert [i.message_id for i in first] == [i["messageId"] for i in expected[:10]]
    last = first[-1]
    page = await store.list_interactions(
        "p1", before=InteractionPosition(last.timestamp, last.message_id), where=InteractionFilter(), limit=500
    )
    assert [i.message_id for i in page] == [i["messageId"] for i in expected[10:]]
    emails = await store.list_interactions(
        "p1", before=None, where=InteractionFilter(types=frozenset({"email_open"})), limit=1000
    )
    assert [i.message_id for i in emails] == [i["messageId"] for i in expected if i["type"] == "email_open"]
    assert await store.list_interactions("other", before=None, where=InteractionFilter(), limit=5) == []


async def test_profiles_list_in_id_order_with_typed_filters(store: ProfileStore) -> None:
    await _create(store, "p1", EMMA, first_name="Emma", last_name="Martin")
    await _create(store, "p2", Identifier("phone", "+33612345678"), first_name="Jean", last_name="Emmanuel")
    await _create(store, "p3", Identifier("customerId", "C3"), first_name="Zoé")

    async def bump(tx: StoreTransaction) -> None:
        await tx.update_profile("p2", ProfileChange(inc={"stats.orders": 3}, set={"addresses": [{"city": "Lyon"}]}))
        await tx.update_profile("p3", ProfileChange(set={"segments": ["vip"], "mergedInto": None}))

    await store.run_in_transaction(bump)

    async def ids(query: ProfileFilter, after: str | None = None, limit: int = 10) -> list[str]:
        return [p.id for p in await store.list_profiles(query, after=after, limit=limit)]

    assert await ids(ProfileFilter()) == ["p1", "p2", "p3"]
    assert await ids(ProfileFilter(), after="p1", limit=1) == ["p2"]
    assert await ids(ProfileFilter(name_prefix="emm")) == ["p1", "p2"]
    assert await ids(ProfileFilter(name_prefix="%")) == []
    assert await ids(ProfileFilter(identifier_type="phone")) == ["p2"]
    assert await ids(ProfileFilter(city="LYON")) == ["p2"]
    assert await ids(ProfileFilter(segment="vip")) == ["p3"]
    assert await ids(ProfileFilter(stats=(StatsRange(StatsField.ORDERS, min=1),))) == ["p2"]
    assert await ids(ProfileFilter(stats=(StatsRange(StatsField.ORDERS, max=0),))) == ["p1", "p3"]
    assert await store.count_profiles() == 3


async def test_a_name_prefix_is_compared_as_text_whatever_characters_it_holds(store: ProfileStore) -> None:
    """MongoDB compares a name prefix as a range of the folded names (app/store/mongo/profile_folds.py):
    its bound above is the prefix's last character moved up one, past the surrogates and the last
    character there is; the embedded store escapes LIKE's wildcards. Both find the same names."""
    names = {
        "p1": "Ann",
        "p2": "ANNE",
        "p3": "Ao",  # the character after the prefix's last: not within "an"
        "p4": "O'Brien",
        "p5": "J.(Luc)*",
        "p6": "\ud7ffx",  # the last character before the surrogates...
        "p7": "\ue000",  # ...and the first after them
        "p8": "\U0010ffff",  # the last character there is
        "p9": "\U0010ffffz",
    }
    for profile_id, name in names.items():
        await _create(store, profile_id, Identifier("customerId", profile_id), first_name=name)

    async def ids(prefix: str) -> list[str]:
        return [p.id for p in await store.list_profiles(ProfileFilter(name_prefix=prefix), after=None, limit=20)]

    assert await ids("an") == ["p1", "p2"]
    assert await ids("o'b") == ["p4"]
    assert (await ids("j.("), await ids("j.(luc)*")) == (["p5"], ["p5"])
    assert (await ids("."), await ids("j.*")) == ([], [])
    assert await ids("\ud7ff") == ["p6"]
    assert await ids("\U0010ffff") == ["p8", "p9"]
    assert await ids("\U0010ffffz") == ["p9"]


async def test_merged_away_profiles_are_not_listed(store: ProfileStore) -> None:
    await _create(store, "p1", EMMA)
    await _create(store, "p2", Identifier("customerId", "C2"))

    async def merge(tx: StoreTransaction) -> None:
        await tx.update_profile("p2", ProfileChange(set={"mergedInto": "p1"}))

    await store.run_in_transaction(merge)
    assert [p.id for p in await store.list_profiles(ProfileFilter(), after=None, limit=10)] == ["p1"]
    assert await store.count_profiles() == 1


async def test_list_filters_follow_every_kind_of_profile_write(store: ProfileStore) -> None:
    """What lists filter on follows each write: a change, a replacement, a merge and its undoing,
    an erasure (the embedded store keeps it in rows of its own beside the documents)."""
    await _create(store, "p1", EMMA, first_name="Emma", addresses=[Address(city="Paris")])
    await _create(store, "p2", Identifier("customerId", "C2"), first_name="Louis")
    paris, orders = ProfileFilter(city="paris"), ProfileFilter(stats=(StatsRange(StatsField.ORDERS, min=2),))

    async def ids(query: ProfileFilter) -> list[str]:
        listed = [p.id for p in await store.list_profiles(query, after=None, limit=10)]
        if query == ProfileFilter():
            assert await store.count_profiles() == len(listed)
        return listed

    async def change(profile_id: str, change: ProfileChange) -> None:
        async def work(tx: StoreTransaction) -> None:
            await tx.update_profile(profile_id, change)

        await store.run_in_transaction(work)

    assert (await ids(paris), await ids(orders)) == (["p1"], [])
    await change(
        "p1", ProfileChange(set={"addresses": [{"city": "Lyon"}, {"city": "Nantes"}]}, inc={"stats.orders": 2})
    )
    assert (await ids(paris), await ids(ProfileFilter(city="NANTES")), await ids(orders)) == ([], ["p1"], ["p1"])
    p2 = await store.get_profile("p2")
    assert p2 is not None

    async def rename(tx: StoreTransaction) -> None:
        await tx.replace_profile(p2.model_copy(update={"first_name": "Amélie"}), expected_version=p2.version)

    await store.run_in_transaction(rename)
    assert (await ids(ProfileFilter(name_prefix="lou")), await ids(ProfileFilter(name_prefix="AMÉ"))) == ([], ["p2"])
    # In capitals a word ends with a capital sigma, which lower() makes the final one: the stores match
    # it to the sigma inside the name (the embedded store missed it), as to a city named in capitals.
    greek = await store.get_profile("p2")
    assert greek is not None

    async def rename_in_greek(tx: StoreTransaction) -> None:
        odysseas = {"first_name": "\u039f\u03b4\u03c5\u03c3\u03c3\u03ad\u03b1\u03c2"}  # Odysseas
        city = [Address(city="\u039a\u03b1\u03bb\u03b1\u03bc\u03b1\u03c4\u03b1\u03c2")]  # Kalamatas, final sigma
        renamed = greek.model_copy(update=odysseas | {"addresses": city})
        await tx.replace_profile(renamed, expected_version=greek.version)

    await store.run_in_transaction(rename_in_greek)
    upper = ProfileFilter(name_prefix="\u039f\u0394\u03a5\u03a3")  # ΟΔΥΣ: "odys" in capitals
    assert await ids(upper) == ["p2"]
    assert await ids(ProfileFilter(city="\u039a\u0391\u039b\u0391\u039c\u0391\u03a4\u0391\u03a3")) == ["p2"]
    await change("p1", ProfileChange(set={"mergedInto": "p2"}))
    assert (await ids(ProfileFilter()), await ids(orders), await ids(ProfileFilter(name_prefix="emm"))) == (
        ["p2"],
        [],
        [],
    )
    await change("p1", ProfileChange(set={"mergedInto": None}))
    assert (await ids(ProfileFilter()), await ids(orders)) == (["p1", "p2"], ["p1"])

    async def erase(tx: StoreTransaction) -> None:
        await tx.erase(["p1"])

    await store.run_in_transaction(erase)
    assert (await ids(ProfileFilter()), await ids(orders), await ids(ProfileFilter(city="lyon"))) == (["p2"], [], [])


async def test_profiles_sharing_keys_past_the_limit_are_the_first_by_id_on_every_store(store: ProfileStore) -> None:
    """More look-alikes than asked for: each store answered the ones its index gave first (the
    embedded store by key, then id), so a profile's candidates past the limit differed by store."""
    held = {"p5": ["k:a"], "p6": ["k:a"], "p1": ["k:b"], "p2": ["k:b"], "p3": ["k:a", "k:b"], "p4": ["k:c"]}

    async def insert(tx: StoreTransaction) -> None:
        profiles = [new_profile(pid, BASE_TIME).to_document() | {"blockingKeys": keys} for pid, keys in held.items()]
        await tx.write_profiles([ProfileWrite(document, None) for document in profiles])

    await store.run_in_transaction(insert)
    for limit in (2, 3, 10):
        views = await store.profiles_sharing_keys(["k:a", "k:b"], max_block=10, limit=limit)
        ids = await store.profile_ids_sharing_keys(["k:a", "k:b"], max_block=10, limit=limit)
        expected = ["p1", "p2", "p3", "p5", "p6"][:limit]
        assert ([v.id for v in views], ids) == (expected, expected), limit


async def test_a_key_held_by_more_than_max_block_profiles_is_passed_over_on_every_store(store: ProfileStore) -> None:
    """A key is read when at most `max_block` profiles hold it, whichever way a store counts (the
    embedded store stops at the entry past the `max_block`th), a key asked twice as once."""
    held = {f"p{n}": ["k:wide"] for n in range(1, 5)} | {"p5": ["k:edge"], "p6": ["k:edge"], "p7": ["k:edge"]}
    held["p1"] = ["k:wide", "k:edge"]  # k:wide: four profiles, k:edge: four

    async def insert(tx: StoreTransaction) -> None:
        profiles = [new_profile(pid, BASE_TIME).to_document() | {"blockingKeys": keys} for pid, keys in held.items()]
        await tx.write_profiles([ProfileWrite(document, None) for document in profiles])

    await store.run_in_transaction(insert)
    for max_block, expected in ((3, []), (4, sorted(held))):
        for keys in (["k:wide", "k:edge"], ["k:edge", "k:wide", "k:edge"]):
            views = await store.profiles_sharing_keys(keys, max_block=max_block, limit=10)
            ids = await store.profile_ids_sharing_keys(keys, max_block=max_block, limit=10)
            assert ([v.id for v in views], ids) == (expected, expected), (max_block, keys)
    ids = await store.profile_ids_sharing_keys(["k:edge", "k:none"], max_block=4, limit=10)
    assert ids == ["p1", "p5", "p6", "p7"]


async def test_profiles_encoded_before_their_write_read_back_as_the_documents_they_encode(
    store: ProfileStore,
) -> None:
    """A batch planned on a snapshot encodes its documents there, before the write lock
    (StoreTransaction.encoded); the store keeps the documents, however they reached it."""
    emma = new_profile("p1", BASE_TIME).to_document() | {"firstName": "Émma", "traits": {"tier": "gold"}}
    lea = new_profile("p2", BASE_TIME).to_document() | {"firstName": "Léa"}

    async def insert(tx: StoreTransaction) -> None:
        await tx.write_profiles(await tx.encoded([ProfileWrite(emma, None)]) + [ProfileWrite(lea, None)])

    await store.run_in_transaction(insert)
    changed = emma | {"lastName": "Martin", "version": emma["version"] + 1}

    async def update(tx: StoreTransaction) -> None:
        await tx.write_profiles(await tx.encoded([ProfileWrite(changed, emma["version"], keys_moved=False)]))

    await store.run_in_transaction(update)
    first, second = await store.get_profile("p1"), await store.get_profile("p2")
    assert first is not None and second is not None
    assert (first.first_name, first.last_name, first.traits, first.version) == ("Émma", "Martin", {"tier": "gold"}, 1)
    assert second.first_name == "Léa"


async def test_products_put_in_a_transaction_replace_by_id_and_read_back_there(store: ProfileStore) -> None:
    def product(product_id: str, price: float) -> dict[str, Any]:
        return {"_id": product_id, "name": "P", "category": "c", "price": price, "stock": 1, "updatedAt": BASE_TIME}

    await store.run_in_transaction(lambda tx: tx.put_products([product("sku-1", 10.0), product("sku-2", 5.0)]))

    async def update(tx: StoreTransaction) -> dict[str, float]:
        await tx.put_products([product("sku-1", 12.0)])
        return {p.id: p.price for p in (await tx.products_of(["sku-1", "sku-2", "sku-9"])).values()}

    assert await store.run_in_transaction(update) == {"sku-1": 12.0, "sku-2": 5.0}
    assert await store.count_products() == 2


def _interaction(message_id: str, at: object, type_: str = "page_view") -> dict[str, object]:
    return {"messageId": message_id, "type": type_, "channel": "web", "timestamp": at, "properties": {"url": "/"}}


# -- the batch path's bulk methods -----------------------------------------------------------------
async def test_bulk_writes_insert_and_replace_profiles_claim_identities_and_record_messages(
    store: ProfileStore,
) -> None:
    await _create(store, "p-old", EMMA)
    bob = Identifier("email", "bob@example.com")
    old = await store.get_profile("p-old")
    assert old is not None
    changed = old.to_document() | {"firstName": "Emma", "version": old.version + 2}
    fresh = new_profile("p-new", BASE_TIME).to_document() | {"blockingKeys": ["e:bob"]}

    async def work(tx: StoreTransaction) -> None:
        assert set(await tx.get_profiles(["p-old", "p-none"])) == {"p-old"}
        await tx.claim_identity_keys([(bob, "p-new")], BASE_TIME)
        await tx.write_profiles([ProfileWrite(changed, old.version, keys_moved=False), ProfileWrite(fresh, None)])
        await tx.record_messages(
            [("m-1", "p-old"), ("m-2", "p-new")], now() + timedelta(days=1)
        )  # not expired (MongoDB drops expired ones)
        await tx.append_interactions(
            [
                ("p-new", _interaction("m-2", BASE_TIME)),
                ("p-old", _interaction("m-1", BASE_TIME + timedelta(minutes=1))),
            ]
        )
        assert await tx.known_messages(["m-1", "m-2", "m-3"]) == {"m-1", "m-2"}

    await store.run_in_transaction(work)
    replaced, created = await store.get_profile("p-old"), await store.find_profile_by_identity(bob.key)
    assert replaced is not None and replaced.first_name == "Emma" and replaced.version == old.version + 2
    assert created is not None and created.id == "p-new"
    assert [p.id for p in await store.profiles_sharing_keys(["e:bob"], max_block=10, limit=10)] == ["p-new"]
    history = await store.list_interactions("p-new", before=None, where=InteractionFilter(), limit=10)
    assert [i.message_id for i in history] == ["m-2"]


async def test_history_moves_between_profiles_that_hold_the_same_message(store: ProfileStore) -> None:
    """A message id sent again once its idempotency key expired can land on another person: merging
    the two then failed on the embedded store's key for interactions (an internal error)."""
    await _create(store, "p1", EMMA)
    await _create(store, "p2", Identifier("email", "bob@example.com"))

    async def write(tx: StoreTransaction) -> None:
        await tx.append_interactions([("p1", _interaction("m-1", BASE_TIME)), ("p2", _interaction("m-1", BASE_TIME))])
        await tx.append_interactions([("p2", _interaction("m-2", BASE_TIME + timedelta(minutes=1)))])

    async def merge(tx: StoreTransaction) -> None:
        await tx.reassign_history(["p2"], "p1")

    async def undo(tx: StoreTransaction) -> None:
        await tx.assign_history("p1", {"m-1": "p2", "m-2": "p2"}, {})

    def ids(history: list[Interaction]) -> set[str]:
        return {i.message_id for i in history}

    await store.run_in_transaction(write)
    await store.run_in_transaction(merge)
    assert ids(await store.list_interactions("p1", before=None, where=InteractionFilter(), limit=10)) == {"m-1", "m-2"}
    assert await store.list_interactions("p2", before=None, where=InteractionFilter(), limit=10) == []
    await store.run_in_transaction(undo)
    assert "m-2" in ids(await store.list_interactions("p2", before=None, where=InteractionFilter(), limit=10))
    assert "m-2" not in ids(await store.list_interactions("p1", before=None, where=InteractionFilter(), limit=10))


async def test_history_moved_back_keeps_only_the_fields_it_is_told(store: ProfileStore) -> None:
    """An unmerge moves each interaction to its person and rewrites, on those it names, the fields
    given (the identifiers the other person holds again, the origin); the others keep theirs."""
    await _create(store, "p1", EMMA)
    await _create(store, "p2", Identifier("email", "bob@example.com"))
    carrying = {"identifiers": ["email:emma@example.com", "phone:+33622222222"], "origin": "p1"}

    async def write(tx: StoreTransaction) -> None:
        await tx.append_interactions(
            [
                ("p1", _interaction("m-1", BASE_TIME) | carrying),
                ("p1", _interaction("m-2", BASE_TIME + timedelta(minutes=1)) | carrying),
                ("p1", _interaction("m-3", BASE_TIME + timedelta(minutes=2)) | carrying),
            ]
        )

    async def undo(tx: StoreTransaction) -> None:
        rewrites: dict[str, dict[str, object]] = {
            "m-1": {"identifiers": ["email:emma@example.com"]},
            "m-2": {"identifiers": [], "origin": "p2"},
        }
        await tx.assign_history("p1", {"m-2": "p2", "m-3": "p2"}, rewrites)

    await store.run_in_transaction(write)
    await store.run_in_transaction(undo)

    def carried(profile_id: str) -> Awaitable[dict[str, tuple[list[str], str | None]]]:
        async def read(tx: StoreTransaction) -> dict[str, tuple[list[str], str | None]]:
            return {i.message_id: (i.identifiers, i.origin) for i in await tx.history(profile_id)}

        return store.run_in_transaction(read)

    assert await carried("p1") == {"m-1": (["email:emma@example.com"], "p1")}
    assert await carried("p2") == {"m-2": ([], "p2"), "m-3": (carrying["identifiers"], "p1")}


async def test_activity_between_gives_the_time_type_and_channel_within_any_window_both_ends_included(
    store: ProfileStore,
) -> None:
    """What a merge reads of the history it does not replay (history_rebuild.absorb_behaviour)."""
    await _create(store, "p1", EMMA)
    await _create(store, "p2", Identifier("email", "bob@example.com"))

    def at(minutes: int) -> datetime:
        return BASE_TIME + timedelta(minutes=minutes)

    async def write(tx: StoreTransaction) -> None:
        await tx.append_interactions(
            [
                ("p1", _interaction(f"m-{m}", at(m), "email_open" if m == 30 else "page_view"))
                for m in (0, 10, 30, 50, 90)
            ]
            + [("p2", _interaction("other", at(10)))]
        )

    async def read(tx: StoreTransaction) -> list[tuple[datetime, str, str]]:
        windows = [(at(60), at(90)), (at(10), at(30)), (at(25), at(50)), (at(200), at(300))]  # two overlap
        return await tx.activity_between("p1", windows)

    await store.run_in_transaction(write)
    found = sorted(await store.run_in_transaction(read))
    assert found == [
        (at(10), "page_view", "web"),
        (at(30), "email_open", "web"),
        (at(50), "page_view", "web"),
        (at(90), "page_view", "web"),
    ]

    async def nothing(tx: StoreTransaction) -> list[tuple[datetime, str, str]]:
        return await tx.activity_between("p1", [])

    assert await store.run_in_transaction(nothing) == []


async def test_a_batch_writes_back_whole_the_document_it_read(store: ProfileStore) -> None:
    """What this version's model does not know (a field a newer replica wrote, free-form data nested
    deeper than a profile shows) survives a batch's read and write: MongoDB's batch read rebuilt the
    document through Profile, and the write-back lost both."""
    deep: dict[str, object] = {"leaf": 1}
    for _ in range(80):
        deep = {"a": deep}
    stored = new_profile("p-1", BASE_TIME).to_document() | {"loyaltyTier2": "platinum", "traits": {"deep": deep}}

    async def insert(tx: StoreTransaction) -> None:
        await tx.write_profiles([ProfileWrite(stored, None)])

    async def bump(tx: StoreTransaction) -> None:
        document = (await tx.get_profile_documents(["p-1"]))["p-1"]
        await tx.write_profiles([ProfileWrite(document | {"version": document["version"] + 1}, document["version"])])

    async def read(tx: StoreTransaction) -> dict[str, object]:
        return (await tx.get_profile_documents(["p-1"]))["p-1"]

    await store.run_in_transaction(insert)
    await store.run_in_transaction(bump)
    document = await store.run_in_transaction(read)
    assert document["version"] == stored["version"] + 1
    assert document["loyaltyTier2"] == "platinum"
    assert document["traits"] == {"deep": deep}


async def test_the_batch_read_gives_each_profile_as_a_single_read_does_deep_free_form_data_cut(
    store: ProfileStore,
) -> None:
    deep: dict[str, object] = {"leaf": 1}
    for _ in range(80):  # past MAX_STORED_DEPTH, as an older version could store it
        deep = {"a": deep}
    await _create(store, "p-deep", EMMA, traits={"tier": "gold", "deep": deep})
    await _create(store, "p-plain", Identifier("email", "bob@example.com"), first_name="Bob")

    async def work(tx: StoreTransaction) -> dict[str, Profile]:
        return await tx.get_profiles(["p-deep", "p-plain"])

    read = await store.run_in_transaction(work)
    for profile_id in ("p-deep", "p-plain"):
        assert read[profile_id] == await store.get_profile(profile_id)
    assert "nested too deep" in orjson.dumps(read["p-deep"].traits).decode()


async def test_bulk_writes_refuse_a_moved_version_a_claimed_identifier_and_a_known_message(store: ProfileStore) -> None:
    await _create(store, "p-1", EMMA)
    profile = await store.get_profile("p-1")
    assert profile is not None

    async def stale(tx: StoreTransaction) -> None:
        await tx.write_profiles([ProfileWrite(profile.to_document(), profile.version + 1)])

    async def taken(tx: StoreTransaction) -> None:
        await tx.claim_identity_keys([(Identifier("email", "new@example.com"), "p-2"), (EMMA, "p-2")], BASE_TIME)

    async def record(tx: StoreTransaction) -> None:
        await tx.record_messages(
            [("m-1", "p-1")], now() + timedelta(days=1)
        )  # not expired (MongoDB drops expired ones)

    with pytest.raises(VersionConflict):
        await store.run_in_transaction(stale)
    with pytest.raises(IdentityTaken):
        await store.run_in_transaction(taken)
    assert await store.find_profile_by_identity("email:new@example.com") is None  # rolled back whole
    await store.run_in_transaction(record)
    with pytest.raises(MessageAlreadyProcessed):
        await store.run_in_transaction(record)


# -- reads for many parents at once (GraphQL loaders) ------------------------------------------------
async def test_reads_for_many_parents_answer_as_one_read_per_parent_does(store: ProfileStore) -> None:
    for n in range(1, 6):
        await _create(store, f"p{n}", Identifier("customerId", f"C{n}"))
    memberships = {"p1": ["gold", "vip"], "p2": ["vip"], "p3": ["vip"], "p4": ["vip"], "p5": ["gold"]}
    items = {
        "p1": [
            _interaction(f"a{i:02d}", BASE_TIME + timedelta(minutes=i), "email_open" if i % 2 else "page_view")
            for i in range(12)
        ],
        "p2": [_interaction(f"b{i:02d}", BASE_TIME + timedelta(minutes=i % 3)) for i in range(4)],
    }
    merge = MergeRecord(_id="m1", survivor_id="p1", merged_ids=["p2"], at=BASE_TIME, reason="test", actor="t")
    undone = merge.model_copy(
        update={"id": "m2", "survivor_id": "p3", "merged_ids": ["p1"], "status": MergeStatus.UNMERGED}
    )
    early = merge.model_copy(update={"id": "m0", "survivor_id": "p4", "at": BASE_TIME - timedelta(days=1)})
    refusals = [
        MergeRefusal(_id="r1", at=BASE_TIME, profile_ids=["p1", "p3"], reason="protected"),
        MergeRefusal(_id="r2", at=BASE_TIME - timedelta(hours=1), profile_ids=["p3"], reason="protected"),
    ]

    async def work(tx: StoreTransaction) -> None:
        for profile_id, segments in memberships.items():
            await tx.update_profile(profile_id, ProfileChange(set={"segments": segments}))
        await tx.update_profile("p4", ProfileChange(set={"mergedInto": "p1"}))  # members are live profiles only
        for profile_id, interactions in items.items():
            for item in interactions:
                await tx.append_interaction(profile_id, item)
        for record in (merge, undone, early):
            await tx.insert_merge(record)
        for refusal in refusals:
            await tx.record_refusal(refusal)

    await store.run_in_transaction(work)
    for segment_id in ("gold", "vip"):
        await store.save_segment(
            Segment(_id=segment_id, name=segment_id, condition={}, created_at=BASE_TIME, updated_at=BASE_TIME)
        )
    ids = ["p1", "p2", "p3", "p4", "p5", "missing"]

    segments = await store.get_segments(["vip", "gold", "missing", "vip"])
    assert segments == {s: await store.get_segment(s) for s in ("gold", "vip")}

    async def in_transaction(tx: StoreTransaction) -> tuple[dict[str, Segment], dict[str, Segment]]:
        return await tx.get_segments(["vip", "gold", "missing", "vip"]), await tx.get_segments([])

    assert await store.run_in_transaction(in_transaction) == (segments, {})

    async def refused(tx: StoreTransaction) -> list[list[MergeRefusal]]:
        return [await tx.refusals_of(p) for p in ids]

    assert await store.run_in_transaction(refused) == [await store.refusals_of(p) for p in ids]
    assert [r.id for r in await store.refusals_of("p3")] == ["r2", "r1"]
    assert await store.merges_of_profiles(ids) == {p: await store.merges_of(p) for p in ids}
    assert [r.id for r in (await store.merges_of_profiles(["p1"]))["p1"]] == ["m1", "m2"]
    assert await store.refusals_of_profiles(ids) == {p: await store.refusals_of(p) for p in ids}
    assert [r.id for r in (await store.refusals_of_profiles(["p3"]))["p3"]] == ["r2", "r1"]
    groups = ["gold", "vip", "none"]
    assert await store.member_counts(groups) == {"gold": 2, "vip": 3, "none": 0}
    for after, limit in ((None, 2), ("p1", 2), (None, 10)):
        assert await store.members_of_segments(groups, after=after, limit=limit) == {
            s: await store.list_profiles(ProfileFilter(segment=s), after=after, limit=limit) for s in groups
        }
    last = items["p1"][5]
    for before, where, limit in (
        (None, InteractionFilter(), 3),
        (None, InteractionFilter(types=frozenset({"email_open"})), 4),
        (InteractionPosition(last["timestamp"], str(last["messageId"])), InteractionFilter(), 100),  # type: ignore[arg-type]
    ):
        assert await store.interactions_of_profiles(ids, before=before, where=where, limit=limit) == {
            p: await store.list_interactions(p, before=before, where=where, limit=limit) for p in ids
        }
    assert await store.get_segments([]) == {}
    assert await store.member_counts([]) == {}
    assert await store.members_of_segments([], after=None, limit=5) == {}
    assert await store.interactions_of_profiles([], before=None, where=InteractionFilter(), limit=5) == {}


async def test_segment_entries_give_each_profile_s_newest_entry_into_each_segment(store: ProfileStore) -> None:
    def change(n: int, profile_id: str, segment_id: str, entered: bool, minutes: int) -> SegmentEvent:
        kind = MembershipChange.ENTERED if entered else MembershipChange.EXITED
        at = BASE_TIME + timedelta(minutes=minutes)
        return SegmentEvent(_id=f"e{n}", segment_id=segment_id, profile_id=profile_id, change=kind, at=at, cause="t")

    events = [  # p1 entered gold, left it and entered it again (the re-entry written first); p2 only left
        change(1, "p1", "gold", True, 120),
        change(2, "p1", "gold", True, 0),
        change(3, "p1", "gold", False, 60),
        change(4, "p1", "vip", True, 30),
        change(5, "p2", "gold", False, 10),
        change(6, "p3", "vip", True, 5),
    ]
    await store.run_in_transaction(lambda tx: tx.insert_segment_events(events))
    ids = ["p1", "p2", "p3", "missing"]

    found = await store.segment_entries(ids)
    assert found == {
        "p1": {"gold": BASE_TIME + timedelta(minutes=120), "vip": BASE_TIME + timedelta(minutes=30)},
        "p2": {},
        "p3": {"vip": BASE_TIME + timedelta(minutes=5)},
        "missing": {},
    }
    for profile_id in ids:  # as the membership changes read one profile at a time give them
        entries: dict[str, list[datetime]] = {}
        for event in await store.segment_events(profile_id=profile_id, limit=100):
            if event.change is MembershipChange.ENTERED:
                entries.setdefault(event.segment_id, []).append(event.at)
        assert found[profile_id] == {segment_id: max(at) for segment_id, at in entries.items()}
    assert await store.segment_entries([]) == {}


async def test_old_segment_changes_page_oldest_first_by_time_then_id_and_are_deleted_by_id(store: ProfileStore) -> None:
    def change(n: int, days: int) -> SegmentEvent:
        at = BASE_TIME + timedelta(days=days)
        return SegmentEvent(
            _id=f"e{n}", segment_id="gold", profile_id=f"p{n}", change=MembershipChange.ENTERED, at=at, cause="t"
        )

    events = [change(5, 3), change(1, 3), change(2, 1), change(9, 40), change(3, 7), change(4, 3)]
    await store.run_in_transaction(lambda tx: tx.insert_segment_events(events))
    cutoff = BASE_TIME + timedelta(days=30)

    first = await store.old_segment_changes(before=cutoff, after=None, limit=3)
    assert [e.id for e in first] == ["e2", "e1", "e4"]  # day 1, then day 3 by id
    rest = await store.old_segment_changes(before=cutoff, after=(first[-1].at, first[-1].id), limit=3)
    assert [e.id for e in rest] == ["e5", "e3"]  # e9 is not old
    assert rest[0] == events[0]

    assert await store.delete_segment_events(["e1", "e3", "missing"]) == 2
    assert await store.delete_segment_events([]) == 0
    assert sorted(e.id for e in await store.segment_events(limit=100)) == ["e2", "e4", "e5", "e9"]


async def test_a_meta_value_set_by_default_is_never_replaced_and_reads_the_same_in_a_transaction(
    store: ProfileStore,
) -> None:
    assert await store.setdefault_meta("erasure key", "first") == "first"
    assert await store.setdefault_meta("erasure key", "second") == "first"
    assert await store.read_meta("erasure key") == "first"

    async def read(tx: StoreTransaction) -> tuple[str | None, str | None]:
        return await tx.read_meta("erasure key"), await tx.read_meta("nothing here")

    assert await store.run_in_transaction(read) == ("first", None)
    await store.write_meta("erasure key", "replaced")  # a plain write replaces it, as before
    assert await store.setdefault_meta("erasure key", "third") == "replaced"


async def test_an_evaluation_is_marked_only_on_the_definition_it_was_made_for(store: ProfileStore) -> None:
    defined, later = BASE_TIME, BASE_TIME + timedelta(minutes=1)
    legacy = Segment(_id="old", name="Old", condition={}, created_at=defined, updated_at=defined)  # no revision
    segment = legacy.model_copy(update={"id": "vip", "name": "VIP", "revision": "r1"})
    for saved in (legacy, segment):
        await store.save_segment(saved)
        assert await store.mark_evaluated(saved, evaluated_at=later)
        assert await store.get_segment(saved.id) == saved.model_copy(update={"evaluated_at": later})
    # Redefined in the same millisecond: only the revision tells the two definitions apart.
    await store.save_segment(segment.model_copy(update={"name": "Very", "revision": "r2"}))
    assert not await store.mark_evaluated(segment, evaluated_at=later + timedelta(minutes=1))
    assert ((await store.get_segment("vip")) or pytest.fail()).evaluated_at is None
    await store.delete_segment("vip")
    assert not await store.mark_evaluated(segment, evaluated_at=later)
    assert await store.get_segment("vip") is None


async def test_a_lease_is_held_by_one_holder_at_a_time_until_it_runs_out(store: ProfileStore) -> None:
    start, minute = BASE_TIME, timedelta(minutes=1)
    assert await store.take_lease("job", "a", now=start, until=start + 5 * minute)
    assert not await store.take_lease("job", "b", now=start + minute, until=start + 6 * minute)
    assert await store.take_lease("other job", "b", now=start, until=start + minute)  # leases are apart
    assert await store.take_lease("job", "a", now=start + 2 * minute, until=start + 7 * minute)  # renewed
    assert not await store.take_lease("job", "b", now=start + 6 * minute, until=start + 9 * minute)
    # Its holder gone quiet past its time: taken over, and the old holder can no longer renew it.
    assert await store.take_lease("job", "b", now=start + 8 * minute, until=start + 13 * minute)
    assert not await store.take_lease("job", "a", now=start + 9 * minute, until=start + 14 * minute)
    await store.end_lease("job", "a")  # not the holder: nothing happens
    assert not await store.take_lease("job", "c", now=start + 9 * minute, until=start + 14 * minute)
    await store.end_lease("job", "b")
    assert await store.take_lease("job", "c", now=start + 9 * minute, until=start + 14 * minute)


async def test_the_keys_version_moves_with_each_key_created_or_revoked_and_with_nothing_else(
    store: ProfileStore,
) -> None:
    start = await store.api_keys_version()
    await _create(store, "p1", EMMA)
    await store.write_meta("note", "unrelated")
    assert await store.api_keys_version() == start
    key = ApiKey(_id="k1", name="crm", scopes=[Scope.READ_PROFILES], secret_hash="0" * 64, created_at=BASE_TIME)
    await store.insert_api_key(key)
    created = await store.api_keys_version()
    assert created > start
    assert await store.api_keys_version() == created  # reading it moves nothing
    assert await store.revoke_api_key("k1", BASE_TIME)
    revoked = await store.api_keys_version()
    assert revoked > created
    assert not await store.revoke_api_key("k1", BASE_TIME)  # already revoked: nothing changed
    assert not await store.revoke_api_key("missing", BASE_TIME)
    assert await store.api_keys_version() == revoked


async def test_blocking_groups_are_every_key_two_live_profiles_hold_even_their_only_key(store: ProfileStore) -> None:
    """A phone-only or email-only customer holds one key: the steward's review list must still pair it."""
    await _create(store, "p1", blocking_keys=["phone:12345678"])
    await _create(store, "p2", blocking_keys=["phone:12345678"])
    await _create(store, "p3", blocking_keys=["name:martin", "zip:69001"])
    await _create(store, "p4", blocking_keys=["zip:69001"])
    await _create(store, "p5", blocking_keys=["name:martin"], merged_into="p3")  # merged away: not live
    await _create(store, "p6", blocking_keys=["alone"])
    groups = [group async for group in store.blocking_groups()]
    assert groups == [("phone:12345678", ["p1", "p2"]), ("zip:69001", ["p3", "p4"])]


async def test_key_counts_are_the_live_profiles_holding_each_key_under_a_prefix(store: ProfileStore) -> None:
    """How many profiles hold each given name (under each surname initial): every key under the
    prefix a live profile holds, and nothing else."""
    await _create(store, "p1", blocking_keys=["g:anna|m", "n:MRTNa"])
    await _create(store, "p2", blocking_keys=["g:anna|m", "g:lena|b"])
    await _create(store, "p3", blocking_keys=["g:anna|d"])
    await _create(store, "p4", blocking_keys=["g:anna|m"], merged_into="p1")  # merged away: not live
    await _create(store, "p5", blocking_keys=["h:anna|m", "g"])  # outside the prefix
    assert await store.key_counts("g:") == {"g:anna|m": 2, "g:lena|b": 1, "g:anna|d": 1}
    assert await store.key_counts("g:anna|") == {"g:anna|m": 2, "g:anna|d": 1}
    assert await store.key_counts("x:") == {}


async def test_profiles_holding_a_key_prefix_are_counted_live_and_up_to_a_bound(store: ProfileStore) -> None:
    """How common a given name is: every live profile holding a key under the prefix, counted once,
    no further than asked (a common name's count stops there)."""
    await _create(store, "p1", blocking_keys=["g:anna|m", "n:MRTNa"])
    await _create(store, "p2", blocking_keys=["g:anna|b"])
    await _create(store, "p3", blocking_keys=["g:anna|d", "g:anna|z"])  # two keys under it: one profile
    await _create(store, "p4", blocking_keys=["g:annabel|m", "g:ann|m"])  # other names
    await _create(store, "p5", blocking_keys=["g:anna|m"], merged_into="p1")  # merged away: not live

    async def count(prefix: str, at_most: int) -> int:
        async def work(tx: StoreTransaction) -> int:
            return await tx.profiles_holding_key_prefix(prefix, at_most=at_most)

        return await store.run_in_transaction(work)

    assert await count("g:anna|", 10) == 3
    assert await count("g:anna|", 2) == 2
    assert await count("g:lena|", 10) == 0
    assert await count("g:ann", 10) == 4


# -- pages from either end, between two positions, and counts (Relay connections) --------------------
async def test_profile_pages_from_either_end_between_two_ids_and_their_count(store: ProfileStore) -> None:
    for n in range(1, 8):
        await _create(store, f"p{n}", Identifier("customerId", f"C{n}"), first_name="Emma" if n % 2 else "Jean")

    async def vip(tx: StoreTransaction) -> None:
        for n in (2, 3, 5, 6):
            await tx.update_profile(f"p{n}", ProfileChange(set={"segments": ["vip"]}))

    await store.run_in_transaction(vip)
    for query in (ProfileFilter(), ProfileFilter(name_prefix="emm"), ProfileFilter(segment="vip")):
        every = [p.id for p in await store.list_profiles(query, after=None, limit=100)]
        assert await store.count_profiles(query) == len(every)
        for after, before in ((None, None), ("p2", None), (None, "p6"), ("p1", "p7"), ("p3", "p4")):
            inside = [i for i in every if (after is None or i > after) and (before is None or i < before)]
            for limit in (1, 2, 10):
                forward = await store.list_profiles(query, after=after, before=before, limit=limit)
                backward = await store.list_profiles(query, after=after, before=before, limit=limit, from_end=True)
                assert [p.id for p in forward] == inside[:limit], (query, after, before, limit)
                assert [p.id for p in backward] == inside[-limit:], (query, after, before, limit)
    assert await store.count_profiles(ProfileFilter(segment="none")) == 0
    groups = ["vip", "none"]
    for after, before, limit, from_end in ((None, None, 2, True), ("p2", "p6", 1, True), (None, "p5", 2, False)):
        assert await store.members_of_segments(groups, after=after, before=before, limit=limit, from_end=from_end) == {
            s: await store.list_profiles(
                ProfileFilter(segment=s), after=after, before=before, limit=limit, from_end=from_end
            )
            for s in groups
        }


async def test_history_pages_from_either_end_between_two_positions_their_count_and_what_came_since(
    store: ProfileStore,
) -> None:
    items = [  # more than a MongoDB bucket holds, several per minute, two types
        _interaction(f"m{i:03d}", BASE_TIME + timedelta(minutes=i // 3), "email_open" if i % 4 == 0 else "page_view")
        for i in range(210)
    ]

    async def work(tx: StoreTransaction) -> None:
        for item in items:
            await tx.append_interaction("p1", item)
        await tx.append_interaction("p2", _interaction("x1", BASE_TIME))

    await store.run_in_transaction(work)
    newest_first = sorted(items, key=lambda i: (i["timestamp"], i["messageId"]), reverse=True)

    def position(index: int) -> InteractionPosition:
        item = newest_first[index]
        return InteractionPosition(item["timestamp"], str(item["messageId"]))  # type: ignore[arg-type]

    emails = InteractionFilter(types=frozenset({"email_open"}))
    for where in (InteractionFilter(), emails):
        kept = [i for i in newest_first if where.matches(str(i["type"]), str(i["channel"]))]
        ranges = ((None, None), (5, None), (None, 180), (3, 150), (10, 11)) if not where.types else ((3, 150),)
        for older_than, newer_than in ranges:
            before = position(older_than) if older_than is not None else None
            after = position(newer_than) if newer_than is not None else None
            inside = [
                str(i["messageId"])
                for i in kept
                if (before is None or (i["timestamp"], i["messageId"]) < (before.timestamp, before.message_id))
                and (after is None or (i["timestamp"], i["messageId"]) > (after.timestamp, after.message_id))
            ]
            for limit in (7, 500) if older_than is None and newer_than is None else (7,):
                newest = await store.list_interactions("p1", before=before, after=after, where=where, limit=limit)
                oldest = await store.list_interactions(
                    "p1", before=before, after=after, where=where, limit=limit, from_end=True
                )
                assert [i.message_id for i in newest] == inside[:limit], (older_than, newer_than, limit)
                assert [i.message_id for i in oldest] == inside[-limit:], (older_than, newer_than, limit)
        assert await store.count_interactions(["p1", "p2", "missing"], where) == {
            "p1": len(kept),
            "p2": 0 if where.types else 1,
            "missing": 0,
        }
        since = BASE_TIME + timedelta(minutes=40)  # the 120th item's minute: a page view, an email open after it
        found = await store.interactions_since(["p1", "p2", "missing"], since, where)
        assert {p: sorted(i.message_id for i in got) for p, got in found.items()} == {
            "p1": sorted(str(i["messageId"]) for i in kept if i["timestamp"] >= since)
        }
    assert await store.count_interactions([], InteractionFilter()) == {}
    ids = ["p1", "p2", "missing"]
    for after, from_end in ((position(150), True), (None, True), (position(20), False)):
        assert await store.interactions_of_profiles(
            ids, before=None, after=after, where=InteractionFilter(), limit=4, from_end=from_end
        ) == {
            p: await store.list_interactions(
                p, before=None, after=after, where=InteractionFilter(), limit=4, from_end=from_end
            )
            for p in ids
        }


async def test_the_suppression_list_reads_back_whole_with_its_times(store: ProfileStore) -> None:
    later = BASE_TIME + timedelta(days=1)

    async def suppress(tx: StoreTransaction) -> None:
        await tx.suppress(["h1", "h2"], BASE_TIME)
        await tx.suppress(["h3", "h1"], later)  # h1 listed already: it keeps its first time

    assert await store.suppression_list() == {}
    await store.run_in_transaction(suppress)
    assert await store.suppression_list() == {"h1": BASE_TIME, "h2": BASE_TIME, "h3": later}


async def test_identity_owners_pages_through_every_key_in_order(store: ProfileStore) -> None:
    phone = Identifier("phone", "+33612345678")
    await _create(store, "p1", EMMA, phone)
    await _create(store, "p2", Identifier("email", "ana@example.com"))
    first = await store.identity_owners(after=None, limit=2)
    assert first == [("email:ana@example.com", "p2"), (EMMA.key, "p1")]
    assert await store.identity_owners(after=first[-1][0], limit=2) == [(phone.key, "p1")]
    assert await store.identity_owners(after=phone.key, limit=2) == []


@pytest.mark.parametrize(
    "filters", [{}, {"segment_id": "gold"}, {"profile_id": "p1"}], ids=["all", "segment", "profile"]
)
async def test_segment_history_pages_back_from_any_event_to_the_first(
    store: ProfileStore, filters: dict[str, str]
) -> None:
    """`before` an event's id: the changes after it in newest-first order, so that a subscriber that
    missed more than one page (README: it catches up with segmentHistory) reaches every one; five of
    the events share one millisecond, as a segment's evaluation writes them."""

    def change(n: int, minutes: int) -> SegmentEvent:
        return SegmentEvent(
            _id=f"e{n:02d}", segment_id="gold" if n % 3 else "vip", profile_id=f"p{n % 2}",
            change=MembershipChange.ENTERED, at=BASE_TIME + timedelta(minutes=minutes), cause="t",
        )  # fmt: skip

    events = [change(n, minutes) for n, minutes in enumerate([0, 1, 1, 1, 1, 1, 2, 3, 3, 4, 5, 6])]
    await store.run_in_transaction(lambda tx: tx.insert_segment_events(events))
    whole = [e.id for e in await store.segment_events(**filters, limit=100)]
    assert len(whole) == len({e.id for e in events if all(getattr(e, k) == v for k, v in filters.items())})
    paged: list[str] = []
    before = None
    while page := await store.segment_events(**filters, limit=2, before=before):
        paged += [e.id for e in page]
        before = page[-1].id
    assert paged == whole
    with pytest.raises(InvalidInput) as unknown:
        await store.segment_events(limit=2, before="no-such-event")
    assert unknown.value.field == "before"


async def test_consent_history_gives_each_profile_s_newest_decisions_when_limited(store: ProfileStore) -> None:
    """A banner records a decision with every visit: `consentHistory(last)` reads each profile's newest
    `last` (a merged family's newest are among its members' newest), not the whole log."""

    async def record(tx: StoreTransaction) -> None:
        for profile_id, minutes in [("p1", 0), ("p1", 5), ("p1", 5), ("p1", 9), ("p1", 2), ("p2", 7), ("p2", 1)]:
            at = BASE_TIME + timedelta(minutes=minutes)
            await tx.append_consent(
                ConsentDecision(profile_id=profile_id, purpose="ads", granted=True, source="web", at=at)
            )

    await store.run_in_transaction(record)
    whole = await store.consent_history(["p1", "p2"])
    assert [int((d.at - BASE_TIME).total_seconds() // 60) for d in whole] == [9, 7, 5, 5, 2, 1, 0]
    limited = await store.consent_history(["p1", "p2"], limit=2)
    newest = {p: [d for d in whole if d.profile_id == p][:2] for p in ("p1", "p2")}
    assert limited == sorted([*newest["p1"], *newest["p2"]], key=whole.index)
    assert await store.consent_history(["p1"], limit=3) == [d for d in whole if d.profile_id == "p1"][:3]
    assert await store.consent_history([], limit=3) == []


async def test_consent_refusals_are_every_profiles_refusals_oldest_first(store: ProfileStore) -> None:
    async def record(tx: StoreTransaction) -> None:
        for profile_id, minutes, granted in [
            ("p1", 9, False), ("p2", 3, True), ("p1", 1, True), ("p3", 5, False), ("p2", 0, False),
        ]:  # fmt: skip
            at = BASE_TIME + timedelta(minutes=minutes)
            await tx.append_consent(
                ConsentDecision(profile_id=profile_id, purpose="ads", granted=granted, source="web", at=at)
            )

    await store.run_in_transaction(record)
    refusals = await store.consent_refusals()
    assert [(d.profile_id, d.granted, int((d.at - BASE_TIME).total_seconds() // 60)) for d in refusals] == [
        ("p2", False, 0),
        ("p3", False, 5),
        ("p1", False, 9),
    ]


async def test_history_resumes_after_an_event_an_erasure_deleted_since(store: ProfileStore) -> None:
    """Found by an audit: a subscriber catching up pages back `before` the last change it read, and an
    erasure between two pages deleted that change: the walk was refused, and could only start over."""

    def changes(count: int) -> list[SegmentEvent]:  # one write's: one time, ids made after it
        at = now()
        return [
            SegmentEvent(
                _id=new_event_id(),
                segment_id="gold",
                profile_id=f"p{n % 2}",
                change=MembershipChange.ENTERED,
                at=at,
                cause="t",
            )
            for n in range(count)
        ]

    events = changes(1) + changes(4) + changes(1) + changes(3)
    await store.run_in_transaction(lambda tx: tx.insert_segment_events(events))
    first = await store.segment_events(segment_id="gold", limit=4)  # into the write of four
    last_read = first[-1]
    await store.run_in_transaction(lambda tx: tx.erase([last_read.profile_id]))

    rest = await store.segment_events(segment_id="gold", limit=100, before=last_read.id)
    newest_first = sorted(events, key=lambda e: (e.at, e.id), reverse=True)
    after_it = newest_first[newest_first.index(next(e for e in events if e.id == last_read.id)) + 1 :]
    assert [e.id for e in rest] == [e.id for e in after_it if e.profile_id != last_read.profile_id]
