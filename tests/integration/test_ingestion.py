"""Ingestion through the service layer, on every storage backend."""

from __future__ import annotations

import asyncio
import itertools
import random
import sqlite3
import threading
from collections.abc import Awaitable, Callable
from dataclasses import replace
from datetime import datetime, timedelta, timezone
from typing import Any, TypeVar

import pytest

from app.domain import clock
from app.domain.errors import InvalidInput, LimitExceeded
from app.domain.event_limits import EventLimits
from app.domain.events import EventType, RawEvent, RawIdentifier
from app.domain.matching.index import keys_of
from app.domain.merge_protection import MergeProtection
from app.domain.profile import RECENT_INTERACTIONS_CAP, Profile
from app.services import ingestion, merging, profile_reads, profile_writes, profiles
from app.services.idempotency_ttl import with_remembered_ttl
from app.services.identity_policy import IdentityPolicy
from app.services.ingestion import EventStatus, IngestionPolicy, ingest_each_alone, ingest_events
from app.services.merge_steps import merge_in_transaction
from app.services.ports import ProfileStore, StoreTransaction
from app.services.profile_changes import ProfileChanges
from app.store.sqlite.store import SQLiteStore
from tests.builders import PROPERTIES, event
from tests.interleaving import StandIn
from tests.key_purges import purge_keys

T = TypeVar("T")

EXPECTED_STATS = {
    "identify": {},
    "page_view": {"page_views": 1, "visits": 1},
    "product_view": {"product_views": 1, "visits": 1},
    "add_to_cart": {"add_to_carts": 1, "visits": 1},
    "cart_abandoned": {"cart_abandons": 1},
    "order_completed": {"orders": 1, "revenue_cents": 5990, "items_purchased": 2},
    "order_returned": {"returns": 1, "returned_cents": 2995},
    "email_open": {"email_opens": 1},
    "email_click": {"email_clicks": 1},
    "email_reply": {"email_replies": 1},
    "support_contact": {"support_contacts": 1},
    "survey_response": {"survey_responses": 1},
    "consent_update": {},
}


async def _emma(store: ProfileStore) -> Profile:
    profile = await profile_reads.get_profile_by_identifier(store, "email", "emma@example.com")
    assert profile is not None
    return profile


def test_every_event_type_has_an_expectation() -> None:
    assert set(EXPECTED_STATS) == {t.value for t in EventType} == set(PROPERTIES)


@pytest.mark.parametrize("event_type", list(EXPECTED_STATS))
async def test_each_event_type_lands_in_stats_and_history(store: ProfileStore, event_type: str) -> None:
    sent = event(event_type, channel="mobile")
    [outcome] = await ingest_events(store, [sent])
    assert outcome.status is EventStatus.ACCEPTED, outcome.reason
    profile = await _emma(store)
    stats = profile.stats.model_dump()
    for name, value in EXPECTED_STATS[event_type].items():
        assert stats[name] == value, name
    untouched = {"orders", "page_views", "email_opens", "returns", "cart_abandons", "support_contacts"}
    for name in untouched - set(EXPECTED_STATS[event_type]):
        assert stats[name] == 0, name
    assert stats["events_total"] == 1
    assert stats["channels"] == {"mobile": 1}
    assert stats["first_seen_at"] == stats["last_seen_at"] == sent.timestamp
    assert [(i.message_id, i.type) for i in profile.recent] == [(sent.message_id, event_type)]
    assert profile.recent[0].properties == sent.properties


async def test_qualitative_and_identity_events_fill_their_fields(store: ProfileStore) -> None:
    await ingest_events(
        store,
        [
            event("identify"),
            event("survey_response", properties={"nps": 3, "rating": 2, "comment": "late"}, minutes=1),
            event("survey_response", properties={"nps": 10}, minutes=-60),  # older answer arrives late
            event("consent_update", properties={"purpose": "sms_marketing", "granted": True}, minutes=2),
            event("consent_update", properties={"purpose": "sms_marketing", "granted": False}, minutes=-5),
        ],
    )
    profile = await _emma(store)
    assert (profile.first_name, profile.last_name, profile.traits) == ("Emma", "Martin", {"tier": "gold"})
    assert profile.qualitative.nps_score == 3  # the newest answer wins, whatever the arrival order
    assert profile.qualitative.average_rating == 2.0
    assert profile.consents["sms_marketing"].granted is True


async def test_each_event_of_a_batch_reads_what_the_ones_before_it_set(store: ProfileStore) -> None:
    """One profile's events in one batch: a second address joins the first, the names of both
    identify events are kept, and the blocking keys are those of the names as they end."""
    paris = {"street": "1 rue de Rivoli", "city": "Paris", "postcode": "75001"}
    lyon = {"street": "2 quai Perrache", "city": "Lyon", "postcode": "69002"}
    await ingest_events(
        store,
        [
            event("identify", properties={"firstName": "Ann", "address": paris}),
            event("page_view", minutes=1),
            event("identify", properties={"lastName": "Lee", "address": lyon}, minutes=2),
            event("page_view", minutes=3),
        ],
    )
    profile = await _emma(store)
    assert (profile.first_name, profile.last_name) == ("Ann", "Lee")
    assert [(a.city, a.postcode) for a in profile.addresses] == [("Lyon", "69002"), ("Paris", "75001")]
    assert profile.blocking_keys == keys_of(profile)
    assert (profile.stats.page_views, profile.stats.visits) == (2, 1)


async def test_money_is_summed_exactly(store: ProfileStore) -> None:
    orders = [event("order_completed", properties={"orderId": f"o{i}", "total": 0.1}) for i in range(30)]
    await ingest_events(store, orders)
    assert (await _emma(store)).stats.revenue_cents == 300


async def test_a_replayed_event_is_a_duplicate_and_changes_nothing(store: ProfileStore) -> None:
    order = event("order_completed")
    [first] = await ingest_events(store, [order])
    before = await _emma(store)
    outcomes = await ingest_events(store, [order, order])
    assert [o.status for o in outcomes] == [EventStatus.DUPLICATE, EventStatus.DUPLICATE]
    assert outcomes[0].reason == "messageId already processed"
    assert await _emma(store) == before
    assert first.status is EventStatus.ACCEPTED


async def test_the_same_message_twice_in_one_batch_counts_once(store: ProfileStore) -> None:
    order = event("order_completed")
    outcomes = await ingest_events(store, [order, order])
    assert [o.status for o in outcomes] == [EventStatus.ACCEPTED, EventStatus.DUPLICATE]
    assert (await _emma(store)).stats.orders == 1


async def test_a_duplicate_answers_the_profile_its_first_delivery_landed_on_as_it_is_now(store: ProfileStore) -> None:
    """A client sending a batch again after a timeout learns the profile ids it never got: a
    DUPLICATE answered no profile id. Once that profile is merged away, its survivor."""
    order = event("order_completed")
    [first] = await ingest_events(store, [order])
    again = await ingest_events(store, [order, order, event("page_view", email="zoe@example.com")])
    assert [(o.status, o.profile_id) for o in again[:2]] == [(EventStatus.DUPLICATE, first.profile_id)] * 2
    assert again[2].status is EventStatus.ACCEPTED
    [within] = [o for o in await ingest_events(store, [event("page_view", email="ann@example.com")] * 2)][1:]
    assert within.status is EventStatus.DUPLICATE and within.profile_id is not None

    survivor, merged = again[2].profile_id or "", first.profile_id or ""
    await merging.merge_profiles(store, survivor, [merged], reason="same", actor="t", policy=IdentityPolicy())
    [replayed] = await ingest_events(store, [order])
    assert (replayed.status, replayed.profile_id) == (EventStatus.DUPLICATE, again[2].profile_id)


class _UnreadableKeys(StandIn):
    """The store, but its idempotency keys' profiles cannot be read (a store closing at shutdown)."""

    async def message_profiles(self, message_ids: Any) -> dict[str, str]:
        raise sqlite3.ProgrammingError("Cannot operate on a closed database.")


async def test_a_duplicate_whose_profile_cannot_be_read_is_answered_without_it(store: ProfileStore) -> None:
    """The batch is durable: its answer never fails on that read (a ProgrammingError was not caught)."""
    order = event("order_completed")
    await ingest_events(store, [order])
    [again] = await ingest_events(_UnreadableKeys(store), [order])  # type: ignore[arg-type]
    assert (again.status, again.profile_id) == (EventStatus.DUPLICATE, None)


async def test_a_request_cancelled_after_its_commit_still_answers_its_duplicates_profiles(store: ProfileStore) -> None:
    """Cancelled during the segment upkeep that follows the commit (a server stopping past its grace
    period), a request answers its outcomes all the same: its DUPLICATEs' profiles too (the read of
    them was skipped, found by a review)."""
    order = event("order_completed")
    [first] = await ingest_events(store, [order])
    upkeep_started, go_on = asyncio.Event(), asyncio.Event()

    async def slow_listener(changes: Any) -> None:
        upkeep_started.set()
        await go_on.wait()

    policy = IngestionPolicy(changes=ProfileChanges(slow_listener))
    fresh = event("page_view", email="zoe@example.com")
    request = asyncio.ensure_future(ingest_events(store, [order, fresh], policy, answer_once_committed=True))
    await upkeep_started.wait()
    request.cancel()
    go_on.set()
    [again, _] = await request
    assert (again.status, again.profile_id) == (EventStatus.DUPLICATE, first.profile_id)


async def test_concurrent_batches_naming_a_new_email_create_one_profile(store: ProfileStore) -> None:
    batches = [
        [event("page_view", identifiers=[("email", " NEW@Example.com"), ("anonymousId", f"anon-{n}")])]
        for n in range(12)
    ]
    results = await asyncio.gather(*(ingest_events(store, batch) for batch in batches))
    owners = {outcome.profile_id for [outcome] in results}
    assert len(owners) == 1
    assert await store.count_profiles() == 1
    profile = await profile_reads.get_profile_by_identifier(store, "email", "new@example.com")
    assert profile is not None and profile.stats.page_views == 12
    assert len(profile.identifiers) == 13


async def test_identifiers_stitch_an_anonymous_visitor_to_the_known_customer(store: ProfileStore) -> None:
    await ingest_events(store, [event("page_view", identifiers=[("anonymousId", "anon-1")])])
    await ingest_events(
        store, [event("identify", identifiers=[("anonymousId", "anon-1"), ("email", "emma@example.com")])]
    )
    await ingest_events(store, [event("order_completed", email="emma@example.com")])
    anonymous = await profile_reads.get_profile_by_identifier(store, "anonymousId", "anon-1")
    assert anonymous == await _emma(store)
    assert anonymous is not None and (anonymous.stats.page_views, anonymous.stats.orders) == (1, 1)
    assert await store.count_profiles() == 1


async def test_with_automatic_merges_off_two_profiles_stay_apart_and_the_strongest_gets_the_event(
    store: ProfileStore,
) -> None:
    no_merges = IngestionPolicy(identity=IdentityPolicy(protection=MergeProtection(automatic_merges=False)))
    [by_phone] = await ingest_events(store, [event("page_view", identifiers=[("phone", "+33612345678")])])
    [by_customer] = await ingest_events(store, [event("page_view", identifiers=[("customerId", "C1")])])
    [both] = await ingest_events(
        store,
        [
            event(
                "order_completed",
                identifiers=[("phone", "+33 6 12 34 56 78"), ("customerId", "C1"), ("deviceId", "d1")],
            )
        ],
        no_merges,
    )
    assert both.profile_id == by_customer.profile_id != by_phone.profile_id
    phone_owner = await profile_reads.get_profile_by_identifier(store, "phone", "+33612345678")
    assert phone_owner is not None and phone_owner.id == by_phone.profile_id  # left unmerged, not stolen
    customer = await profile_reads.get_profile_by_identifier(store, "deviceId", "d1")
    assert customer is not None and customer.id == by_customer.profile_id and customer.stats.orders == 1


async def test_history_beyond_the_embedded_list_pages_in_order(store: ProfileStore) -> None:
    from app.domain.paging import Window
    from app.domain.profile_query import InteractionFilter
    from app.services.history import interactions_page, position_of

    sent = [event("page_view" if i % 4 else "email_open", minutes=i * 7 % 300 + i / 1000) for i in range(130)]
    await ingest_events(store, sent)
    profile = await _emma(store)
    assert len(profile.recent) == RECENT_INTERACTIONS_CAP
    expected = [e.message_id for e in sorted(sent, key=lambda e: (e.timestamp, e.message_id), reverse=True)]
    assert [i.message_id for i in profile.recent] == expected[:RECENT_INTERACTIONS_CAP]

    async def walk(where: InteractionFilter, first: int) -> list[str]:
        seen: list[str] = []
        after = None
        while True:
            page = await interactions_page(store, profile, Window(first, after=after), where=where, max_page_size=100)
            seen += [i.message_id for i in page.interactions]
            if not page.has_next:
                return seen
            after = position_of(page.interactions[-1])

    assert await walk(InteractionFilter(), 17) == expected
    emails = [
        e.message_id
        for e in sorted(sent, key=lambda e: (e.timestamp, e.message_id), reverse=True)
        if e.type == "email_open"
    ]
    assert await walk(InteractionFilter(types=frozenset({"email_open"})), 5) == emails


BAD_EVENTS = [
    pytest.param(event("teleport"), "events[0].type", "unknown event type", id="unknown-type"),
    pytest.param(event(channel="pigeon"), "events[0].channel", "unknown channel", id="unknown-channel"),
    pytest.param(event(identifiers=[]), "events[0].identifiers", "at least one identifier", id="no-identifiers"),
    pytest.param(event(email="emma@"), "events[0].identifiers[0].value", "not a valid email", id="malformed-email"),
    pytest.param(
        event("order_completed", properties={"orderId": "o1"}),
        "events[0].properties.total",
        "Field required",
        id="missing-total",
    ),
    pytest.param(
        event("order_completed", properties={"orderId": "o1", "total": "lots"}),
        "events[0].properties.total",
        "valid number",
        id="wrong-type",
    ),
    pytest.param(
        event("order_completed", properties={"orderId": "o1", "total": -5}),
        "events[0].properties.total",
        "greater than or equal",
        id="negative-amount",
    ),
    pytest.param(
        event(properties=["not", "an", "object"]), "events[0].properties", "valid dictionary", id="properties-list"
    ),
    pytest.param(
        event(at=clock.now() + timedelta(days=1)), "events[0].timestamp", "in the future", id="future-timestamp"
    ),
    pytest.param(event(message_id="  "), "events[0].messageId", "messageId", id="blank-message-id"),
    pytest.param(
        event("identify", properties={"traits": {"a.b": 1}}),
        "events[0].properties.traits",
        "key 'a.b'",
        id="dotted-trait",
    ),
]


@pytest.mark.parametrize(("bad", "field", "message"), BAD_EVENTS)
async def test_bad_events_are_rejected_with_a_reason_and_write_nothing(
    store: ProfileStore, bad: object, field: str, message: str
) -> None:
    [outcome] = await ingest_events(store, [bad])  # type: ignore[list-item]
    assert outcome.status is EventStatus.REJECTED
    assert outcome.field == field
    assert outcome.reason is not None and message in outcome.reason and outcome.reason.startswith(field)
    assert await store.count_profiles() == 0


async def test_a_rejected_event_does_not_fail_the_batch_or_burn_its_message_id(store: ProfileStore) -> None:
    bad = event("order_completed", properties={"orderId": "o1"}, message_id="m-fixed")
    outcomes = await ingest_events(store, [event("page_view"), bad, event("email_open")])
    assert [o.status for o in outcomes] == [EventStatus.ACCEPTED, EventStatus.REJECTED, EventStatus.ACCEPTED]
    fixed = event("order_completed", message_id="m-fixed")
    [retry] = await ingest_events(store, [fixed])
    assert retry.status is EventStatus.ACCEPTED
    assert (await _emma(store)).stats.orders == 1


async def test_a_batch_over_the_limit_is_refused_whole(store: ProfileStore) -> None:
    with pytest.raises(LimitExceeded, match="at most 3 events") as refused:
        await ingest_events(store, [event() for _ in range(4)], IngestionPolicy(max_batch_size=3))
    assert refused.value.field == "events"
    assert await store.count_profiles() == 0


# -- bounds on event data, and every event judged alone (issue 12, items 4, 12, 13) ----------------


def _nested(levels: int) -> dict[str, object]:
    """`levels` objects, each holding the next under "a"."""
    value: dict[str, object] = {"leaf": 1}
    for _ in range(levels - 1):
        value = {"a": value}
    return value


def _order(**changes: object) -> dict[str, object]:
    return {**PROPERTIES["order_completed"], **changes}


def _line(**changes: object) -> dict[str, object]:
    return {"productId": "sku-1", "quantity": 1, "price": 1.0, **changes}


# (the bad event, the field its rejection names, words of the reason). Each goes between two good
# events of the same customer, Emma.
BAD_DATA = [
    pytest.param(
        event(properties={"url": "/" + "x" * 8192}), "properties.url", "at most 8,192 characters", id="long-url"
    ),
    pytest.param(
        event(properties={"url": "/", "meta": {"notes": ["ok", "x" * 9000]}}),
        "properties.meta.notes[1]",
        "at most 8,192 characters",
        id="long-string-deep-inside",
    ),
    pytest.param(
        event(properties={"url": "/", "k" * 8193: 1}),
        "properties",
        "a key of more than 8,192 characters",
        id="long-key",
    ),
    pytest.param(
        event(properties={"url": "/", "x": _nested(16)}),
        "properties.x" + ".a" * 15,
        "nested deeper than 16 levels",
        id="17-levels",
    ),
    pytest.param(
        event(properties={"url": "/", "x": _nested(299)}),
        "properties.x" + ".a" * 15,
        "nested deeper than 16 levels",
        id="300-levels",
    ),
    pytest.param(
        event(properties={"url": "/", "tags": list(range(1001))}),
        "properties.tags",
        "at most 1,000 items",
        id="long-array",
    ),
    pytest.param(
        event(properties={"url": "/", "blocks": ["x" * 8000] * 9}),
        "properties",
        "at most 65,536 bytes",
        id="too-large",
    ),
    pytest.param(
        event("order_completed", properties=_order(total=1e18)),
        "properties.total",
        "less than or equal to 1000000000",
        id="total-1e18",
    ),
    pytest.param(
        event("order_completed", properties=_order(total=1e300)),
        "properties.total",
        "less than or equal to 1000000000",
        id="total-1e300",
    ),
    pytest.param(
        event("order_completed", properties=_order(total=float("inf"))),
        "properties.total",
        "finite number",
        id="total-infinity",
    ),
    pytest.param(
        event("order_completed", properties=_order(total=float("nan"))),
        "properties.total",
        "finite number",
        id="total-nan",
    ),
    pytest.param(
        event("order_completed", properties=_order(lines=[_line(), _line(quantity=3_000_000_000)])),
        "properties.lines[1].quantity",
        "less than or equal to 2147483647",
        id="quantity-beyond-int",
    ),
    pytest.param(
        event("add_to_cart", properties={"productId": "sku-1", "quantity": 2**31}),
        "properties.quantity",
        "less than or equal to 2147483647",
        id="cart-quantity-beyond-int",
    ),
    pytest.param(
        event("product_view", properties={"productId": "sku-1", "price": float("-inf")}),
        "properties.price",
        "finite number",
        id="price-minus-infinity",
    ),
    pytest.param(
        event(properties={"url": "/", "score": float("inf")}),
        "properties.score",
        "finite number",
        id="free-form-infinity",
    ),
    pytest.param(
        event(properties={"url": "/", "big": 10**19}),
        "properties.big",
        "64 bits",
        id="free-form-integer-beyond-64-bit",
    ),
    pytest.param(
        event(identifiers=[("email", "emma@example.com"), ("customerId", "c-\ud800")]),
        "identifiers[1].value",
        "not valid Unicode",
        id="surrogate-in-identifier",
    ),
    pytest.param(event(message_id="m-\ud800"), "messageId", "not valid Unicode", id="surrogate-in-message-id"),
    pytest.param(
        event(properties={"url": "/\ud800"}), "properties.url", "not valid Unicode", id="surrogate-in-property"
    ),
    pytest.param(
        event(properties={"url": "/", "x\udfff": 1}),
        "properties",
        "a key that is not valid Unicode",
        id="surrogate-key",
    ),
    pytest.param(event(properties={"url": "/", "meta": {"a\x00b": 1}}), "properties.meta", "NUL", id="nul-in-key"),
    pytest.param(
        event(at=datetime(1, 1, 1, tzinfo=timezone(timedelta(hours=1)))),
        "timestamp",
        "out of range",
        id="timestamp-before-year-1-in-utc",
    ),
]


@pytest.mark.parametrize(("bad", "field", "words"), BAD_DATA)
async def test_an_event_beyond_the_bounds_is_rejected_alone_and_the_rest_of_its_batch_lands(
    store: ProfileStore, bad: RawEvent, field: str, words: str
) -> None:
    # A minute apart: the history is ordered by time, then by messageId (which the builder numbers).
    before, after = event("page_view"), event("email_open", minutes=1)
    outcomes = await ingest_events(store, [before, bad, after])
    assert [o.status for o in outcomes] == [EventStatus.ACCEPTED, EventStatus.REJECTED, EventStatus.ACCEPTED]
    rejected = outcomes[1]
    assert rejected.field == f"events[1].{field}"
    assert rejected.reason == f"events[1].{field}: {rejected.reason.split(': ', 1)[1]}"
    assert words in rejected.reason
    assert len(rejected.reason) < 300  # names the field, never echoes the value
    rejected.message_id.encode()  # what goes back to the client is valid text
    profile = await _emma(store)
    assert [i.message_id for i in profile.recent] == [after.message_id, before.message_id]
    assert profile.stats.events_total == 2
    assert [(i.type, i.value) for i in profile.identifiers] == [("email", "emma@example.com")]
    assert await store.count_profiles() == 1


async def test_event_limits_come_from_the_policy(store: ProfileStore) -> None:
    tight = IngestionPolicy(limits=EventLimits(max_string_length=10, max_depth=2, max_array_items=2))
    outcomes = await ingest_events(
        store,
        [
            event(properties={"url": "/" + "x" * 9}),
            event(properties={"url": "/" + "x" * 10}),
            event(properties={"url": "/", "x": {"y": 1}}),
            event(properties={"url": "/", "x": {"y": {}}}),
            event(properties={"url": "/", "x": [1, 2]}),
            event(properties={"url": "/", "x": [1, 2, 3]}),
        ],
        tight,
    )
    assert [(o.status, o.field) for o in outcomes] == [
        (EventStatus.ACCEPTED, None),
        (EventStatus.REJECTED, "events[1].properties.url"),
        (EventStatus.ACCEPTED, None),
        (EventStatus.REJECTED, "events[3].properties.x.y"),
        (EventStatus.ACCEPTED, None),
        (EventStatus.REJECTED, "events[5].properties.x"),
    ]


async def test_data_at_the_bounds_is_accepted_and_reads_back_as_sent(store: ProfileStore) -> None:
    at_the_bounds = {
        "url": "/" + "é" * 8191,
        "x": _nested(15),
        "tags": list(range(1000)),
        "big": -(2**63),
        "ratio": 1e300,
    }
    order = _order(total=1_000_000_000, lines=[_line(quantity=2**31 - 1)])
    outcomes = await ingest_events(store, [event(properties=at_the_bounds), event("order_completed", properties=order)])
    assert [o.status for o in outcomes] == [EventStatus.ACCEPTED, EventStatus.ACCEPTED], outcomes
    profile = await _emma(store)
    assert profile.recent[-1].properties == at_the_bounds
    assert (profile.stats.revenue_cents, profile.stats.items_purchased) == (100_000_000_000, 2**31 - 1)


class _Poisoned:
    """The backend, with the history append of one message failing as a bug of ours would: after the
    profile, its identifiers and the messageId were written in the same unit of work."""

    def __init__(self, inner: ProfileStore, message_id: str) -> None:
        self._inner = inner
        self._message_id = message_id

    async def run_in_transaction(self, work: Callable[[StoreTransaction], Awaitable[T]]) -> T:
        poisoned = self._message_id

        class Transaction:
            def __init__(self, tx: StoreTransaction) -> None:
                self._tx = tx

            def __getattr__(self, name: str) -> Any:
                return getattr(self._tx, name)

            async def append_interaction(self, profile_id: str, interaction: dict[str, Any]) -> None:
                await self._tx.append_interaction(profile_id, interaction)
                if interaction["messageId"] == poisoned:
                    raise TypeError("an unexpected failure of ours")

            async def append_interactions(self, items: list[tuple[str, dict[str, Any]]]) -> None:
                await self._tx.append_interactions(items)  # the batch path: its run fails as a whole
                if any(interaction["messageId"] == poisoned for _, interaction in items):
                    raise TypeError("an unexpected failure of ours")

        return await self._inner.run_in_transaction(lambda tx: work(Transaction(tx)))  # type: ignore[arg-type]

    def __getattr__(self, name: str) -> Any:
        return getattr(self._inner, name)


async def test_an_event_the_store_fails_on_unexpectedly_rolls_back_alone_with_an_error_id(
    store: ProfileStore, caplog: pytest.LogCaptureFixture
) -> None:
    good = [event("page_view"), event("email_open")]
    poisoned = event(
        "order_completed",
        identifiers=[("email", "emma@example.com"), ("customerId", "c-9")],
        message_id="order-for-emma@example.com",  # a sender's choice: logged masked, logs outlive an erasure
    )
    outcomes = await ingest_events(
        _Poisoned(store, poisoned.message_id),  # type: ignore[arg-type]
        [good[0], poisoned, good[1]],
    )
    assert [o.status for o in outcomes] == [EventStatus.ACCEPTED, EventStatus.REJECTED, EventStatus.ACCEPTED]
    failed = outcomes[1]
    assert failed.field == "events[1]"
    assert failed.reason is not None and failed.reason.startswith("events[1]: could not be stored (error id ")
    assert "TypeError" not in failed.reason
    [logged] = [r for r in caplog.records if getattr(r, "errorId", None)]
    assert logged.exc_info is not None and logged.errorId in failed.reason  # type: ignore[attr-defined]
    assert "emma@example.com" not in logged.getMessage() and "***" in logged.getMessage()
    # Nothing of the failed event stayed: no order, no identifier, no history, its messageId unspent.
    profile = await _emma(store)
    assert (profile.stats.orders, profile.stats.events_total) == (0, 2)
    assert [i.message_id for i in profile.recent] == [good[1].message_id, good[0].message_id]
    assert await profile_reads.get_profile_by_identifier(store, "customerId", "c-9") is None
    [again] = await ingest_events(store, [poisoned])
    assert again.status is EventStatus.ACCEPTED


class _Paused:
    """The embedded store, with each unit of work stopping once it has started, until `resume` is set
    (or 30 s pass): a batch is then provably in progress, its transaction open, while the test reads."""

    def __init__(self, inner: SQLiteStore) -> None:
        self._inner = inner
        self.started = threading.Event()
        self.resume = threading.Event()
        self.resumed_in_time: bool | None = None

    async def run_in_transaction(self, work: Callable[[StoreTransaction], Awaitable[T]]) -> T:
        async def paused(tx: StoreTransaction) -> T:
            self.started.set()
            if self.resumed_in_time is None:  # the first unit only: the batch's run
                self.resumed_in_time = self.resume.wait(timeout=30)
            return await work(tx)

        return await self._inner.run_in_transaction(paused)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._inner, name)


async def test_a_profile_read_completes_while_a_1000_event_batch_is_being_ingested(sqlite_store: SQLiteStore) -> None:
    [known] = await ingest_events(sqlite_store, [event("identify", email="reader@example.com")])
    paused = _Paused(sqlite_store)
    batch = [event("order_completed", email=f"c{n}@example.com") for n in range(1000)]
    ingesting = asyncio.create_task(ingest_events(paused, batch))  # type: ignore[arg-type]
    assert await asyncio.to_thread(paused.started.wait, 30)  # the batch's transaction is open
    # The unit of work holds its thread until the read below is done: were it on the event loop, the
    # read could not run, the unit would give up waiting after 30 s, and `resumed_in_time` be False.
    profile = await sqlite_store.get_profile(known.profile_id or "")
    listed = await sqlite_store.count_profiles()  # a scan, on a reader thread, during the same batch
    assert not ingesting.done()
    paused.resume.set()
    outcomes = await ingesting
    assert paused.resumed_in_time is True
    assert profile is not None and profile.first_name == "Emma" and listed == 1
    assert {o.status for o in outcomes} == {EventStatus.ACCEPTED}
    assert await sqlite_store.count_profiles() == 1001


async def test_a_batch_commits_while_the_event_loop_is_busy(sqlite_store: SQLiteStore) -> None:
    """An ingested batch runs on the writer thread from BEGIN to COMMIT without coming back to the
    server's loop in between: a saturated loop does not stretch how long it holds the write lock.
    The loop is held below (a blocking wait) until the batch's COMMIT has run: were any step of the
    batch to need the loop, the wait would end at its timeout with nothing committed."""
    begun, committed = threading.Event(), threading.Event()
    seen = {"BEGIN IMMEDIATE": begun, "COMMIT": committed}
    sqlite_store._writer.set_trace_callback(lambda sql: seen[sql].set() if sql in seen else None)
    ingesting = asyncio.create_task(ingest_events(sqlite_store, [event("page_view", email="busy@example.com")]))
    while not begun.is_set():  # the events are parsed on a worker thread, then the batch begins
        await asyncio.sleep(0.001)
    held = committed.wait(timeout=30)  # blocks the event loop itself
    outcomes = await ingesting
    assert held, "the batch needed the event loop before it could commit"
    assert [o.status for o in outcomes] == [EventStatus.ACCEPTED]


def _sessions(minutes: list[int]) -> int:
    """Visits as README defines them: web or app activity with no gap of more than 30 minutes."""
    ordered = sorted(minutes)
    return 1 + sum(later - earlier > 30 for earlier, later in itertools.pairwise(ordered))


@pytest.mark.parametrize("new_device", [False, True], ids=["known", "each-with-a-new-device"])
@pytest.mark.parametrize("one_batch", [False, True], ids=["a-batch-each", "one-batch"])
@pytest.mark.parametrize("seed", range(4))
async def test_visits_do_not_depend_on_the_order_events_arrive_in(
    store: ProfileStore, seed: int, one_batch: bool, new_device: bool
) -> None:
    """A late event counted as a new visit whenever it was more than 30 minutes from the last one:
    views at 10:00 and 12:00, then 10:05, made three visits, and a merge's replay (in time order)
    then made them two. Now a late event joins the visit before or after it, or joins two into one."""
    minutes = [0, 5, 25, 40, 70, 71, 120, 160, 185, 200, 260]  # visits: 0 to 71 | 120 | 160 to 200 | 260
    shuffled = random.Random(seed).sample(minutes, len(minutes))
    # An event that brings an identifier is applied to the whole profile (an offline app's queue, late):
    # built without its recent list, the late view could not see its neighbours.
    views = [
        event("page_view", minutes=m, message_id=f"v{m}", identifiers=_with_device(m) if new_device else None)
        for m in shuffled
    ]
    for batch in [views] if one_batch else [[view] for view in views]:
        await ingest_events(store, batch)
    profile = await _emma(store)
    assert (profile.stats.page_views, profile.stats.visits) == (len(minutes), _sessions(minutes)) == (11, 4)
    [other] = await ingest_events(store, [event("page_view", email="bob@example.com", minutes=1000)])
    assert other.profile_id is not None
    _, merged = await merging.merge_profiles(
        store, other.profile_id, [profile.id], reason="t", actor="t", policy=IdentityPolicy()
    )
    assert merged.stats.visits == 4 + 1  # the replay, in time order, agrees (the other's one visit added)


def _with_device(minutes: int) -> list[tuple[str, str]]:
    return [("email", "emma@example.com"), ("anonymousId", f"a{minutes}")]


@pytest.mark.parametrize("ingest", [ingest_events, ingest_each_alone], ids=["batch", "each-alone"])
async def test_an_older_identify_arriving_late_leaves_the_newer_values(store: ProfileStore, ingest: object) -> None:
    """Found by an audit: an identify dated days earlier, arriving after a newer one, overwrote its
    name and traits; a merge of the profile, undone, then put the newer ones back (the replay goes by
    time): the same events gave two profiles. Each field now takes the newest by time, as consents do."""
    newest = {"firstName": "Gina", "traits": {"plan": "new"}}
    oldest = {"firstName": "Regina", "lastName": "Old", "traits": {"plan": "old", "since": 2019}}
    newer = event("identify", email="gina@example.com", minutes=0, message_id="new", properties=newest)
    older = event("identify", email="gina@example.com", minutes=-5000, message_id="old", properties=oldest)
    await ingest(store, [newer])  # type: ignore[operator]
    await ingest(store, [older])  # type: ignore[operator]
    gina = await store.find_profile_by_identity("email:gina@example.com")
    assert gina is not None
    # What only the older one set still counts: nothing newer decided it.
    assert (gina.first_name, gina.last_name, gina.traits) == ("Gina", "Old", {"plan": "new", "since": 2019})
    other = await profiles.upsert_profile(store, [RawIdentifier("phone", "+33612345678")], {"company": "Acme"})
    record, _ = await merging.merge_profiles(store, gina.id, [other.id], reason="r", actor="t", policy=IdentityPolicy())
    await merging.unmerge_profile(store, record.id, actor="t")
    again = await store.get_profile(gina.id)
    assert again is not None and (again.first_name, again.last_name, again.traits) == (
        gina.first_name,
        gina.last_name,
        gina.traits,
    )


@pytest.mark.parametrize("ingest", [ingest_events, ingest_each_alone], ids=["batch", "each-alone"])
async def test_an_event_replayed_after_its_key_was_purged_is_a_duplicate(store: ProfileStore, ingest: object) -> None:
    """Found by an audit: replayed once its idempotency key was purged (30 days after receipt), an order
    was ACCEPTED again and counted twice in the stats, while the embedded store's history, keyed by
    the messageId, kept it once; a merge's replay later took the second count back out (MongoDB kept
    it twice). Its profile's history holding it, it is a DUPLICATE."""
    old = clock.now() - timedelta(days=45)
    order = event("order_completed", email="dora@example.com", at=old, message_id="d2")
    [first] = await ingest(store, [order])  # type: ignore[operator]
    assert first.status is EventStatus.ACCEPTED
    await purge_keys(store)
    fresh = event("page_view", email="dora@example.com", at=clock.now(), message_id="p1")
    replay, new = await ingest(store, [order, fresh])  # type: ignore[operator]
    assert (replay.status, new.status) == (EventStatus.DUPLICATE, EventStatus.ACCEPTED), (replay, new)
    dora = await profile_reads.get_profile_by_identifier(store, "email", "dora@example.com")
    assert dora is not None and dora.stats.orders == 1 and [i.message_id for i in dora.recent] == ["p1", "d2"]


@pytest.mark.parametrize("ingest", [ingest_events, ingest_each_alone], ids=["batch", "each-alone"])
async def test_a_replay_redated_by_its_sender_after_its_key_was_purged_is_a_duplicate(
    store: ProfileStore, ingest: object
) -> None:
    """Found by an audit: sent at …:00.9996 (kept to the millisecond) and replayed, rounded to the next
    second, after its key was purged, an order was counted twice on the embedded store, whose history
    was asked for the exact time, and once on MongoDB, asked for the messageId."""
    first_sent = clock.now().replace(microsecond=999_600) - timedelta(days=45)
    order = event("order_completed", email="rory@example.com", at=first_sent, message_id="r1")
    [first] = await ingest(store, [order])  # type: ignore[operator]
    assert first.status is EventStatus.ACCEPTED
    await purge_keys(store)
    rounded = replace(order, timestamp=first_sent.replace(microsecond=0) + timedelta(seconds=1))
    [replay] = await ingest(store, [rounded])  # type: ignore[operator]
    assert replay.status is EventStatus.DUPLICATE
    rory = await profile_reads.get_profile_by_identifier(store, "email", "rory@example.com")
    assert rory is not None and rory.stats.orders == 1


async def test_a_replay_after_the_ttl_was_raised_is_a_duplicate(store: ProfileStore) -> None:
    """Found by an audit: run with a 1-day TTL, then 30 days, the store had purged after a day the key
    of an order dated 3 days ago; the 30-day window said its key was still there, so its history was
    not asked and the replay counted twice. The store remembers the shorter TTL."""
    short = await with_remembered_ttl(store, IngestionPolicy(idempotency_ttl=timedelta(days=1)))
    order = event("order_completed", email="raia@example.com", at=clock.now() - timedelta(days=3), message_id="o1")
    [first] = await ingest_events(store, [order], short)
    assert first.status is EventStatus.ACCEPTED
    await purge_keys(store)  # what a day later brings

    raised = await with_remembered_ttl(store, IngestionPolicy(idempotency_ttl=timedelta(days=30)))
    [replay] = await ingest_events(store, [order], raised)
    assert replay.status is EventStatus.DUPLICATE
    raia = await profile_reads.get_profile_by_identifier(store, "email", "raia@example.com")
    assert raia is not None and raia.stats.orders == 1
    # Every run after it too, until the keys of the shorter TTL are older than the new one.
    again = await with_remembered_ttl(store, IngestionPolicy(idempotency_ttl=timedelta(days=30)))
    assert again.purged_sooner == raised.purged_sooner and raised.purged_sooner is not None
    assert raised.purged_sooner[0] == timedelta(days=1)


async def test_colleagues_behind_one_switchboard_stay_two_people(store: ProfileStore) -> None:
    """Found by an audit: a phone's extension was dropped, so two colleagues' events, each with their own
    email and their extension of one switchboard, merged them into one profile that showed each the
    other's name; a third sent with the switchboard's own number stays apart too."""
    people = {
        "alice@acme-corp.com": "+1 212 555 0100 ext. 12",
        "bob@acme-corp.com": "+1 212 555 0100 ext. 34",
        "desk@acme-corp.com": "+1 212 555 0100",
    }
    events = [
        event("identify", identifiers=[("email", email), ("phone", phone)], properties={"firstName": email[:4]})
        for email, phone in people.items()
    ]
    outcomes = await ingest_events(store, events)
    assert [o.status for o in outcomes] == [EventStatus.ACCEPTED] * 3
    assert len({o.profile_id for o in outcomes}) == 3
    bob = await profile_reads.get_profile_by_identifier(store, "phone", "+12125550100;ext=34")
    assert bob is not None and bob.first_name == "bob@"


async def test_a_batch_of_merges_commits_as_it_goes_and_lets_other_writers_in(
    sqlite_store: SQLiteStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Found by an audit of what a write:events key can do: each merge replays the survivor's whole
    history, and a request's events were one transaction, so 100 merges into a profile of 5,000 events
    held every writer of every key for 47 s. A transaction now commits once the events that go alone
    have held it WRITER_HOLD_SECONDS (0 here: after each), and the rest go on in the next: while the
    second merge is held, a reader sees the first one committed."""
    monkeypatch.setattr(ingestion, "WRITER_HOLD_SECONDS", 0)
    people = [("email", f"p{n}@example.com") for n in range(2)]
    devices = [("anonymousId", f"anon-{n}") for n in range(2)]
    apart = await ingest_events(sqlite_store, [event(identifiers=[i]) for i in [*people, *devices]])
    started, release = threading.Event(), threading.Event()
    merges = 0

    async def held_merge(*args: Any, **kwargs: Any) -> Any:
        nonlocal merges
        merges += 1
        if merges == 2:
            started.set()
            release.wait(timeout=30)
        return await merge_in_transaction(*args, **kwargs)

    monkeypatch.setattr(profile_writes, "merge_in_transaction", held_merge)
    linking = [event(identifiers=[person, device]) for person, device in zip(people, devices, strict=True)]
    batch = asyncio.create_task(ingest_events(sqlite_store, linking))
    try:
        assert await asyncio.to_thread(started.wait, 30)
        first_device = await sqlite_store.get_profile(apart[2].profile_id or "")
        assert first_device is not None and first_device.merged_into == apart[0].profile_id
    finally:
        release.set()
    assert [o.status for o in await batch] == [EventStatus.ACCEPTED] * 2


async def test_a_write_naming_its_profiles_own_identifiers_past_a_lowered_limit_lands_and_no_other_does(
    store: ProfileStore,
) -> None:
    """A profile past a limit counts as holding its own (README, merge protection): once the email
    limit went down from five to two, an event or an upsert naming a customer's own three emails was
    REJECTED at validation, before any read could tell they were one profile's."""
    emails = [("email", f"emma{n}@example.com") for n in range(3)]
    [first] = await ingest_events(store, [event("page_view", identifiers=emails)])  # within the limit of five
    two = IdentityPolicy(protection=MergeProtection(limits={"email": 2}))
    lowered = IngestionPolicy(identity=two)
    await ingest_events(store, [event("page_view", email="other@example.com")], lowered)

    batch = [
        event("order_completed", identifiers=emails),  # the customer's own three: one profile's
        event("page_view", identifiers=[*emails[:2], ("email", "new@example.com")]),  # one is nobody's yet
        event("page_view", identifiers=[*emails[:2], ("email", "other@example.com")]),  # one is another's
        *(event("page_view", identifiers=emails) for _ in range(25)),  # a batch the run path takes
    ]
    own, new, other, *more = await ingest_events(store, batch, lowered)

    assert (own.status, own.profile_id) == (EventStatus.ACCEPTED, first.profile_id)
    assert {o.status for o in more} == {EventStatus.ACCEPTED} and {o.profile_id for o in more} == {first.profile_id}
    for index, refused in ((1, new), (2, other)):
        assert (refused.status, refused.field) == (EventStatus.REJECTED, f"events[{index}].identifiers")
        assert refused.reason == (
            f"events[{index}].identifiers: names 3 email identifiers (limit 2), more than one profile may hold "
            "(CDP_MERGE_LIMITS)"
        )
    assert await profile_reads.get_profile_by_identifier(store, "email", "new@example.com") is None
    profile = await profile_reads.get_profile(store, first.profile_id or "")
    assert profile is not None and (profile.stats.orders, profile.stats.events_total) == (1, 27)

    upserted = await profiles.upsert_profile(
        store, [RawIdentifier(t, v) for t, v in emails], {"first_name": "Emma"}, policy=two
    )
    assert upserted.id == first.profile_id and upserted.first_name == "Emma"
    with pytest.raises(InvalidInput, match="names 3 email identifiers"):
        await profiles.upsert_profile(
            store, [RawIdentifier(t, v) for t, v in [*emails[:2], ("email", "new@example.com")]], {}, policy=two
        )
