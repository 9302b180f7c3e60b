"""Bad event data through HTTP, sent as a hostile or buggy client would: JSON variables as Python's
json module reads them (Infinity, NaN, lone surrogates, huge numbers, deep nesting). Each bad event
is its own REJECTED naming the field, the rest of the batch lands, and no stored value, even one
written by an older version, can make a profile's reads fail."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import pytest

from app.bootstrap import start
from app.domain.event_effects import RECENT_ORDER
from app.domain.identifiers import Identifier
from app.domain.profile import RECENT_INTERACTIONS_CAP, new_profile
from app.domain.profile_change import CappedPush, ProfileChange
from app.main import create_app
from app.services.ports import ProfileStore, StoreTransaction
from app.settings import Settings

INGEST = """
mutation Ingest($events: [EventInput!]!) {
  ingestEvents(events: $events) {
    accepted rejected
    results { messageId status reason field }
  }
}
"""

# The query a frontend sends to personalise a page.
PERSONALISATION = """
query Personalise($type: String!, $value: String!) {
  profileByIdentifier(type: $type, value: $value) {
    id
    stats { orders itemsPurchased pageViews eventsTotal revenue channels { channel count } }
    interactions(first: 10) { edges { node { messageId properties } } }
  }
}
"""

EXPORT = "query Export($id: ID!) { exportProfile(id: $id) }"


def _nested(levels: int) -> dict[str, Any]:
    value: dict[str, Any] = {"leaf": 1}
    for _ in range(levels - 1):
        value = {"a": value}
    return value


def _event(message_id: str, type_: str = "page_view", **changes: Any) -> dict[str, Any]:
    properties = {
        "page_view": {"url": "/home"},
        "order_completed": {
            "orderId": "o1",
            "total": 20.5,
            "lines": [{"productId": "p1", "quantity": 2, "price": 10.25}],
        },
    }
    return {
        "messageId": message_id,
        "type": type_,
        "channel": "web",
        "timestamp": "2026-05-01T10:00:00Z",
        "identifiers": [{"type": "email", "value": "emma@example.com"}],
        "properties": properties.get(type_, {}),
        **changes,
    }


def _order(**changes: Any) -> dict[str, Any]:
    return {**_event("x", "order_completed")["properties"], **changes}


async def _post(client: httpx.AsyncClient, query: str, variables: dict[str, Any]) -> httpx.Response:
    # json.dumps as Python writes it: Infinity and NaN as such, a lone surrogate as "\\ud800".
    body = json.dumps({"query": query, "variables": variables})
    return await client.post("/graphql", content=body, headers={"content-type": "application/json"})


async def _read(client: httpx.AsyncClient) -> dict[str, Any]:
    response = await _post(client, PERSONALISATION, {"type": "email", "value": "emma@example.com"})
    assert response.status_code == 200, response.text
    assert response.headers["content-type"].startswith("application/json")
    body: dict[str, Any] = response.json()
    assert "errors" not in body, body
    profile: dict[str, Any] = body["data"]["profileByIdentifier"]
    return profile


BAD_EVENTS = [
    pytest.param(_event("bad", "order_completed", properties=_order(total=1e18)), "properties.total", id="total-1e18"),
    # Numbers only, and a consent decision is true or false: read leniently, `true` was an order of
    # 1.00 and an NPS of 1, a text "1e3" 1,000, and "no" a decision.
    pytest.param(_event("bad", "order_completed", properties=_order(total=True)), "properties.total", id="total-true"),
    pytest.param(_event("bad", "order_completed", properties=_order(total="1e3")), "properties.total", id="total-text"),
    pytest.param(
        _event("bad", "order_completed", properties=_order(lines=[{"productId": "p", "quantity": True, "price": 1}])),
        "properties.lines[0].quantity",
        id="quantity-true",
    ),
    pytest.param(_event("bad", "survey_response", properties={"nps": True}), "properties.nps", id="nps-true"),
    pytest.param(_event("bad", "survey_response", properties={"rating": "5"}), "properties.rating", id="rating-text"),
    # Found by an audit: kept as sent on the profile's ratings, they made the profile unreadable.
    pytest.param(
        _event("bad", "survey_response", properties={"rating": 5, "productId": 8812345678}),
        "properties.productId",
        id="survey-product-id-a-number",
    ),
    pytest.param(
        _event("bad", "survey_response", properties={"rating": 5, "comment": {"text": "ok"}}),
        "properties.comment",
        id="survey-comment-an-object",
    ),
    # Found by an audit: MongoDB's driver reads such an object back as a DBRef, and the profile holding
    # it no longer read (its export and erasure failed), where the embedded store kept it.
    pytest.param(
        _event("bad", "page_view", properties={"url": "/", "schema": {"$ref": "#/defs/cart", "$id": "https://x"}}),
        "properties.schema",
        id="an-object-mongodb-reads-as-a-reference",
    ),
    pytest.param(
        _event("bad", "consent_update", properties={"purpose": "email_marketing", "granted": "no"}),
        "properties.granted",
        id="granted-text",
    ),
    pytest.param(
        _event("bad", "order_completed", properties=_order(total=1e300)), "properties.total", id="total-1e300"
    ),
    pytest.param(
        _event("bad", "order_completed", properties=_order(total=float("inf"))), "properties.total", id="infinity"
    ),
    pytest.param(_event("bad", "order_completed", properties=_order(total=float("nan"))), "properties.total", id="nan"),
    pytest.param(
        _event(
            "bad",
            "order_completed",
            properties=_order(lines=[{"productId": "p", "quantity": 3_000_000_000, "price": 1}]),
        ),
        "properties.lines[0].quantity",
        id="quantity-3e9",
    ),
    pytest.param(
        _event(
            "bad",
            identifiers=[{"type": "email", "value": "emma@example.com"}, {"type": "customerId", "value": "\ud800"}],
        ),
        "identifiers[1].value",
        id="surrogate-in-identifier",
    ),
    pytest.param(_event("bad", properties={"url": "/\ud800"}), "properties.url", id="surrogate-in-property"),
    pytest.param(
        _event("bad", properties={"url": "/", "x": _nested(300)}), "properties.x" + ".a" * 15, id="300-levels"
    ),
    pytest.param(_event("bad", properties={"url": "/" + "x" * 900_000}), "properties.url", id="900-KB-url"),
    pytest.param(_event("bad", timestamp="0001-01-01T00:00:00+01:00"), "timestamp", id="timestamp-out-of-range"),
    # A day alone is no date-time (README: a timestamp that is no ISO 8601 date-time is REJECTED): it was
    # taken as that day's midnight, UTC.
    pytest.param(_event("bad", timestamp="2026-05-01"), "timestamp", id="timestamp-a-date-only"),
    pytest.param(_event("bad", timestamp="2026-W18-5"), "timestamp", id="timestamp-a-week-day-only"),
    # A "no date" default (Go's zero time) or a year typo: stored, it was the profile's last order, its
    # text (year 999 unpadded) sorted after every real time, and the profile could no longer be read.
    pytest.param(_event("bad", timestamp="0001-01-01T00:00:00Z"), "timestamp", id="timestamp-year-1"),
    pytest.param(_event("bad", timestamp="0999-06-01T00:00:00Z"), "timestamp", id="timestamp-year-999"),
    pytest.param(_event("bad", timestamp="1969-12-31T23:59:59Z"), "timestamp", id="timestamp-before-1970"),
    pytest.param(_event("bad", properties={"url": "/", "ids": list(range(5000))}), "properties.ids", id="5000-items"),
    pytest.param(
        _event("bad", identifiers=[{"type": "email", "value": f"emma{n}@example.com"} for n in range(21)]),
        "identifiers",
        id="21-identifiers",
    ),
    # Two customers in one event (merge protection's limit on one profile, README).
    pytest.param(
        _event("bad", identifiers=[{"type": "customerId", "value": f"C{n}"} for n in range(2)]),
        "identifiers",
        id="two-customer-ids",
    ),
    # An identify event sets the fields upsertProfile sets, within the same bounds (person_fields.py).
    *(
        pytest.param(_event("bad", "identify", properties=properties), field, id=name)
        for name, properties, field in [
            ("identify-born-2999", {"birthDate": "2999-01-01"}, "properties.birthDate"),
            ("identify-born-30-february", {"birthDate": "1987-02-30"}, "properties.birthDate"),
            ("identify-500-letter-name", {"firstName": "x" * 500}, "properties.firstName"),
            ("identify-not-a-language", {"language": "not a lang"}, "properties.language"),
            ("identify-5000-letter-street", {"address": {"street": "x" * 5000}}, "properties.address.street"),
            ("identify-address-of-nothing", {"address": {"kind": "home", "city": None}}, "properties.address"),
            ("identify-5000-letter-company", {"company": "c" * 5000}, "properties.company"),
        ]
    ),
]


@pytest.mark.parametrize(("bad", "field"), BAD_EVENTS)
async def test_a_bad_event_is_its_own_rejection_and_the_valid_one_beside_it_is_stored(
    client: httpx.AsyncClient, bad: dict[str, Any], field: str
) -> None:
    response = await _post(client, INGEST, {"events": [_event("good"), bad]})
    assert response.status_code == 200, response.text
    body = response.json()
    assert "errors" not in body, body
    result = body["data"]["ingestEvents"]
    assert (result["accepted"], result["rejected"]) == (1, 1)
    good, rejected = result["results"]
    assert good["status"] == "ACCEPTED"
    assert (rejected["messageId"], rejected["status"], rejected["field"]) == ("bad", "REJECTED", f"events[1].{field}")
    assert rejected["reason"].startswith(f"events[1].{field}: ")

    profile = await _read(client)
    assert [edge["node"]["messageId"] for edge in profile["interactions"]["edges"]] == ["good"]
    assert (profile["stats"]["eventsTotal"], profile["stats"]["orders"]) == (1, 0)


async def test_a_retried_batch_lands_once_its_bad_event_is_fixed(client: httpx.AsyncClient) -> None:
    bad = _event("order-1", "order_completed", properties=_order(total=float("inf")))
    first = (await _post(client, INGEST, {"events": [_event("view-1"), bad]})).json()["data"]["ingestEvents"]
    assert [r["status"] for r in first["results"]] == ["ACCEPTED", "REJECTED"]
    fixed = _event("order-1", "order_completed")
    again = (await _post(client, INGEST, {"events": [_event("view-1"), fixed]})).json()["data"]["ingestEvents"]
    assert [r["status"] for r in again["results"]] == ["DUPLICATE", "ACCEPTED"]
    assert (await _read(client))["stats"]["orders"] == 1


async def test_a_page_view_nested_250_levels_is_refused_and_the_profile_still_reads(client: httpx.AsyncClient) -> None:
    deep = _event("deep", properties={"url": "/", "x": _nested(250)})
    result = (await _post(client, INGEST, {"events": [_event("good"), deep]})).json()["data"]["ingestEvents"]
    assert [r["status"] for r in result["results"]] == ["ACCEPTED", "REJECTED"]
    profile = await _read(client)
    export = await _post(client, EXPORT, {"id": profile["id"]})
    assert export.status_code == 200 and "errors" not in export.json(), export.text


async def _write_as_an_older_version_could(store: ProfileStore) -> str:
    """A profile holding what ingestion before the bounds let through: properties nested 249 levels
    (as deep as the embedded store's encoder takes inside a profile), counters past GraphQL's Int, and
    a rating whose product id and comment were stored as sent (a number, an object)."""
    at = datetime(2026, 5, 1, 10, tzinfo=UTC)
    profile = new_profile("p-legacy", at)
    deep = {
        "messageId": "legacy-deep",
        "type": "page_view",
        "channel": "web",
        "timestamp": at,
        "properties": {"url": "/", "x": _nested(248)},
        "origin": profile.id,
        "receivedAt": at,
        "identifiers": ["email:emma@example.com"],
    }
    change = ProfileChange()
    change.inc.update({"stats.itemsPurchased": 3_000_000_000, "stats.orders": 2**40, "stats.eventsTotal": 2**40})
    change.inc["stats.channels.web"] = 2**40
    change.push["recent"] = CappedPush([deep], RECENT_ORDER, RECENT_INTERACTIONS_CAP)
    rating = {"rating": 4, "at": at, "productId": 8812345678, "comment": {"text": "ok"}}
    change.push["qualitative.ratings"] = CappedPush([rating], {"at": -1}, 20)

    async def work(tx: StoreTransaction) -> None:
        await tx.claim_identities(profile.id, [Identifier("email", "emma@example.com")], at)
        await tx.insert_profile(profile)
        await tx.update_profile(profile.id, change, expected_version=profile.version)
        await tx.append_interaction(profile.id, deep)

    await store.run_in_transaction(work)
    return profile.id


async def test_values_stored_before_the_bounds_cannot_make_a_read_fail(
    client: httpx.AsyncClient, store: ProfileStore
) -> None:
    profile_id = await _write_as_an_older_version_could(store)

    profile = await _read(client)
    stats = profile["stats"]
    int_max = 2**31 - 1  # GraphQL Int: a counter beyond it reads as the largest Int
    assert (stats["itemsPurchased"], stats["orders"], stats["eventsTotal"]) == (int_max, int_max, int_max)
    assert stats["channels"] == [{"channel": "web", "count": int_max}]
    [edge] = profile["interactions"]["edges"]
    properties = edge["node"]["properties"]
    assert properties["url"] == "/"
    depth, value = 1, properties["x"]
    while isinstance(value, dict):
        depth, value = depth + 1, value.get("a", value.get("leaf"))
    assert depth <= 64 < 249  # the part too deep to be sent is cut, said so, and the rest is served
    assert isinstance(value, str) and "nested too deep" in value

    export = await _post(client, EXPORT, {"id": profile_id})
    assert export.status_code == 200, export.text
    assert "errors" not in export.json(), export.text
    [interaction] = export.json()["data"]["exportProfile"]["interactions"]
    assert interaction["messageId"] == "legacy-deep"


async def test_the_limits_are_set_from_the_environment(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("CDP_MAX_EVENT_STRING_LENGTH", "64")
    monkeypatch.setenv("CDP_MAX_EVENT_ARRAY_ITEMS", "3")
    settings = Settings(database_url=f"sqlite:///{tmp_path}/cdp.sqlite3", seed_fixtures=False, auth=False)
    services = await start(settings)
    try:
        transport = httpx.ASGITransport(app=create_app(services=services))
        async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
            events = [
                _event("fits", properties={"url": "/" + "x" * 63, "ids": [1, 2, 3]}),
                _event("long", properties={"url": "/" + "x" * 64}),
                _event("many", properties={"url": "/", "ids": [1, 2, 3, 4]}),
            ]
            result = (await _post(client, INGEST, {"events": events})).json()["data"]["ingestEvents"]
    finally:
        await services.close()
    assert [(r["status"], r["reason"]) for r in result["results"]] == [
        ("ACCEPTED", None),
        ("REJECTED", "events[1].properties.url: at most 64 characters"),
        ("REJECTED", "events[2].properties.ids: at most 3 items"),
    ]


async def test_an_identify_event_and_an_upsert_take_a_country_in_either_case(client: httpx.AsyncClient) -> None:
    identify = _event("who", "identify", properties={"firstName": "Emma", "address": {"city": "Lyon", "country": "fr"}})
    result = (await _post(client, INGEST, {"events": [identify]})).json()["data"]["ingestEvents"]
    assert [r["status"] for r in result["results"]] == ["ACCEPTED"], result
    upsert = """mutation { upsertProfile(input: {identifiers: [{type: "email", value: "emma@example.com"}],
      addresses: [{city: "Lyon", country: "fr"}, {city: "Gent", country: "BE"}]}) { addresses { city country } } }"""
    body = (await _post(client, upsert, {})).json()
    assert "errors" not in body, body
    assert body["data"]["upsertProfile"]["addresses"] == [
        {"city": "Lyon", "country": "FR"},
        {"city": "Gent", "country": "BE"},
    ]


async def test_a_consent_update_takes_the_purposes_set_consent_takes(client: httpx.AsyncClient) -> None:
    """README: setConsent accepts the purposes of CDP_CONSENT_PURPOSES, and a consent_update event "does the
    same". One for a purpose nobody configured was stored before (and no segment reads it)."""
    known = _event("known", "consent_update", properties={"purpose": "email_marketing", "granted": True})
    unknown = _event("unknown", "consent_update", properties={"purpose": "telepathy", "granted": True})
    result = (await _post(client, INGEST, {"events": [known, unknown]})).json()["data"]["ingestEvents"]
    assert [r["status"] for r in result["results"]] == ["ACCEPTED", "REJECTED"], result
    assert result["results"][1]["field"] == "events[1].properties.purpose"
    assert "unknown purpose 'telepathy'; expected one of" in result["results"][1]["reason"]
    consents = """query { profileByIdentifier(type: "email", value: "emma@example.com") {
      consents { purpose granted } consentHistory { purpose } } }"""
    profile = (await _post(client, consents, {})).json()["data"]["profileByIdentifier"]
    assert [c["purpose"] for c in profile["consents"]] == ["email_marketing"]
    assert [c["purpose"] for c in profile["consentHistory"]] == ["email_marketing"]


async def test_a_whole_number_written_with_a_zero_decimal_part_is_taken_as_that_integer(
    client: httpx.AsyncClient,
) -> None:
    """Found by an audit of numbers: `"quantity": 2.0`, what an encoder of doubles writes, was refused as
    "not a valid integer"; 2.5 still is."""
    whole = _order(lines=[{"productId": "p1", "quantity": 2.0, "price": 10.25}])
    half = _order(lines=[{"productId": "p1", "quantity": 2.5, "price": 10.25}])
    events = [_event("whole", "order_completed", properties=whole), _event("half", "order_completed", properties=half)]
    result = (await _post(client, INGEST, {"events": events})).json()["data"]["ingestEvents"]
    assert [r["status"] for r in result["results"]] == ["ACCEPTED", "REJECTED"], result
    profile = await _read(client)
    assert (profile["stats"]["orders"], profile["stats"]["itemsPurchased"]) == (1, 2)
    [edge] = profile["interactions"]["edges"]
    assert edge["node"]["properties"]["lines"][0]["quantity"] == 2 and "2.0" not in json.dumps(edge["node"])
