"""What a key may see depends on the data it selects, wherever it entered: a customer's profile needs
read:profiles through every path (a write's answer, a segment's members, a merge, a subscription), and
personal data leaves the server masked without read:pii wherever it is (event properties, traits,
subscription payloads), filters on it included. Key administration and revocation, over HTTP and
WebSocket."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import httpx
import pytest
from graphql import GraphQLObjectType, get_named_type
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed
from websockets.typing import Subprotocol

from app.bootstrap import Services
from app.domain import clock
from app.domain.access import Scope
from app.main import create_app
from app.services import api_keys
from app.services.ingestion import IngestionPolicy
from app.settings import Settings
from app.store.sqlite.store import SQLiteStore
from graphql_schema.data_scopes import NOT_CUSTOMER_DATA, TYPE_SCOPES
from graphql_schema.schema import schema
from tests.server_process import ROOT, running_server, serving


@pytest.fixture
def services(sqlite_store: SQLiteStore) -> Services:
    return Services(settings=Settings(seed_fixtures=False), store=sqlite_store, ingestion=IngestionPolicy())


async def _key(services: Services, *scopes: Scope) -> str:
    _, token = await api_keys.create_key(services.store, "k", list(scopes))
    return token


async def _call(services: Services, key: str, document: str, variables: dict[str, Any] | None = None) -> Any:
    transport = httpx.ASGITransport(app=create_app(services=services))
    headers = {"authorization": f"Bearer {key}"}
    async with httpx.AsyncClient(transport=transport, base_url="http://t", headers=headers) as client:
        response = await client.post("/graphql", json={"query": document, "variables": variables or {}})
    return response.json()


def _codes(body: dict[str, Any]) -> set[str]:
    return {e["extensions"]["code"] for e in body.get("errors", [])}


EMMA = [{"type": "email", "value": "emma.martin@example.com"}]
IDENTIFY = """mutation($at: DateTime!) { ingestEvents(events: [
  {messageId: "i-1", type: "identify", channel: "web", timestamp: $at,
   identifiers: [{type: "email", value: "emma.martin@example.com"}],
   properties: {firstName: "Emma", lastName: "Martin", birthDate: "1990-04-02",
                address: {street: "4 rue des Lilas", postcode: "69003", city: "Lyon", country: "FR"},
                traits: {contactEmail: "emma.work@example.com", tier: "gold"}, note: "call emma.martin@example.com"}},
  {messageId: "o-1", type: "order_completed", channel: "web", timestamp: $at,
   identifiers: [{type: "email", value: "emma.martin@example.com"}], properties: {orderId: "A-1", total: 30}}
]) { accepted } }"""
AT = {"at": "2026-11-01T10:00:00Z"}


# -- the whole schema: customer data is declared, wherever it is reached ----------------------
def test_every_type_reachable_from_a_profile_is_declared() -> None:
    """A type added under Profile must say whether it is customer data (and so needs read:profiles
    wherever it is reached) or not; TYPE_SCOPES and NOT_CUSTOMER_DATA hold the two answers."""
    graphql_schema = schema._schema
    seen: set[str] = set()
    queue = ["Profile"]
    while queue:
        name = queue.pop()
        if name in seen:
            continue
        seen.add(name)
        node = graphql_schema.get_type(name)
        if isinstance(node, GraphQLObjectType):
            queue += [get_named_type(f.type).name for f in node.fields.values()]
    objects = {n for n in seen if isinstance(graphql_schema.get_type(n), GraphQLObjectType)}
    undeclared = objects - set(TYPE_SCOPES) - NOT_CUSTOMER_DATA
    assert not undeclared, f"declare {sorted(undeclared)} in graphql_schema/data_scopes.py"
    assert set(TYPE_SCOPES) <= set(graphql_schema.type_map), "a declared type no longer exists"


# -- every path to a profile needs read:profiles ---------------------------------------------
UPSERT = 'mutation { upsertProfile(input: {identifiers: [{type: "email", value: "new@example.com"}]}) { id %s } }'
SEGMENT = """mutation { createSegment(input: {name: "Buyers",
  condition: {compare: {path: "stats.orders", op: "gte", value: 1}}}) { segment { name %s } } }"""
MERGE = (
    'mutation($a: ID!, $b: ID!) { mergeProfiles(survivorId: $a, mergedIds: [$b], reason: "same") { merge { id } %s } }'
)
CONSENT = (
    'mutation { setConsent(profileId: "%s", purpose: "analytics", granted: true, source: "form") '
    "{ id consents { purpose granted } } }"
)
PATHS = [
    pytest.param(
        Scope.WRITE_PROFILES, UPSERT % "stats { orders } interactions { edges { node { type } } }", id="upsert"
    ),
    pytest.param(Scope.ADMIN_SEGMENTS, SEGMENT % "members { edges { node { id } } }", id="segment-members"),
    pytest.param(Scope.MERGE_PROFILES, MERGE % "profile { stats { orders } }", id="merge"),
    pytest.param(Scope.WRITE_CONSENT, CONSENT, id="consent"),
]


async def _two_profiles(services: Services) -> tuple[str, str]:
    admin = await _key(services, *Scope)
    ids = []
    for email in ("a@example.com", "b@example.com"):
        body = await _call(services, admin, UPSERT.replace("new@example.com", email) % "")
        ids.append(body["data"]["upsertProfile"]["id"])
    return ids[0], ids[1]


@pytest.mark.parametrize(("root_scope", "document"), PATHS)
async def test_a_write_answers_with_the_customer_only_to_a_key_that_may_read_it(
    services: Services, root_scope: Scope, document: str
) -> None:
    a, b = await _two_profiles(services)
    document = document.replace("%s", a) if "%s" in document else document
    variables = {"a": a, "b": b} if "$a" in document else None
    profiles_before = await services.store.count_profiles()

    refused = await _call(services, await _key(services, root_scope), document, variables)
    assert _codes(refused) == {"FORBIDDEN"} and refused["data"] is None
    assert "needs the scope read:profiles" in refused["errors"][0]["message"]
    # Refused before anything ran: nothing written, nothing merged, no segment, no consent.
    assert await services.store.count_profiles() == profiles_before
    assert await services.store.list_segments() == []
    assert (await services.store.get_profile(b)).merged_into is None  # type: ignore[union-attr]
    assert await services.store.consent_history([a]) == []

    allowed = await _call(services, await _key(services, root_scope, Scope.READ_PROFILES), document, variables)
    assert "errors" not in allowed, allowed


async def test_a_writer_still_reads_back_what_it_wrote(services: Services) -> None:
    body = await _call(services, await _key(services, Scope.WRITE_PROFILES), UPSERT % "version __typename")
    assert body["data"]["upsertProfile"]["version"] == 1


async def test_fragments_do_not_hide_customer_data(services: Services) -> None:
    document = """mutation { upsertProfile(input: {identifiers: [{type: "email", value: "f@example.com"}]}) { ...A } }
      fragment A on Profile { id ...B } fragment B on Profile { ... on Profile { stats { orders } } }"""
    refused = await _call(services, await _key(services, Scope.WRITE_PROFILES), document)
    assert _codes(refused) == {"FORBIDDEN"} and "Profile.stats" in refused["errors"][0]["message"]
    assert await services.store.count_profiles() == 0


# -- personal data is masked wherever it leaves, and cannot be filtered on --------------------
READ_EMMA = """query($email: String!) { profileByIdentifier(type: "email", value: $email) {
  piiMasked firstName traits interactions(first: 5) { edges { node { type properties } } } } }"""


async def test_event_properties_and_traits_are_masked_without_read_pii(services: Services) -> None:
    admin = await _key(services, *Scope)
    assert (await _call(services, admin, IDENTIFY, AT))["data"]["ingestEvents"]["accepted"] == 2
    variables = {"email": "emma.martin@example.com"}

    masked = (await _call(services, await _key(services, Scope.READ_PROFILES), READ_EMMA, variables))["data"]
    profile = masked["profileByIdentifier"]
    identify = next(e["node"] for e in profile["interactions"]["edges"] if e["node"]["type"] == "identify")
    properties = identify["properties"]
    assert (properties["firstName"], properties["lastName"], properties["birthDate"]) == ("E***", "M***", None)
    assert properties["address"] == {"street": "4***", "postcode": "6***", "city": "Lyon", "country": "FR"}
    assert properties["traits"] == {"contactEmail": "e***@example.com", "tier": "gold"}
    assert properties["note"] == "call e***@example.com"
    assert profile["traits"] == {"contactEmail": "e***@example.com", "tier": "gold"}
    assert "Emma" not in json.dumps(masked) and "emma.martin@" not in json.dumps(masked)

    clear = (await _call(services, admin, READ_EMMA, variables))["data"]["profileByIdentifier"]
    identify = next(e["node"] for e in clear["interactions"]["edges"] if e["node"]["type"] == "identify")
    assert identify["properties"]["firstName"] == "Emma" and clear["traits"]["contactEmail"] == "emma.work@example.com"


async def test_event_text_shown_in_ratings_and_preferred_categories_is_masked_without_read_pii(
    services: Services,
) -> None:
    """A rating's productId and a viewed product's category are what the event said: an email address
    there was masked in the interaction's properties but shown in clear in `ratings` and, after the
    traits job, in `preferredCategories`."""
    admin = await _key(services, *Scope)
    now = clock.now().isoformat()
    events = [
        {"messageId": "r-1", "type": "survey_response", "channel": "web", "timestamp": now, "identifiers": EMMA,
         "properties": {"rating": 4, "productId": "jane.doe@example.com"}},
        {"messageId": "v-1", "type": "product_view", "channel": "web", "timestamp": now, "identifiers": EMMA,
         "properties": {"productId": "p-1", "category": "jane@doe.com"}},
    ]  # fmt: skip
    ingested = await _call(services, admin, INGEST, {"events": events})
    assert ingested["data"]["ingestEvents"]["accepted"] == 2, ingested
    assert "errors" not in await _call(services, admin, "mutation { recomputeTraits { processed } }")
    document = """{ profileByIdentifier(type: "email", value: "emma.martin@example.com") {
      qualitative { ratings { productId } } computed { preferredCategories { category } } } }"""
    masked = (await _call(services, await _key(services, Scope.READ_PROFILES), document))["data"]["profileByIdentifier"]
    assert masked["qualitative"]["ratings"] == [{"productId": "j***@example.com"}]
    assert masked["computed"]["preferredCategories"] == [{"category": "j***@doe.com"}]
    clear = (await _call(services, admin, document))["data"]["profileByIdentifier"]
    assert clear["qualitative"]["ratings"] == [{"productId": "jane.doe@example.com"}]
    assert clear["computed"]["preferredCategories"] == [{"category": "jane@doe.com"}]


INGEST = "mutation($events: [EventInput!]!) { ingestEvents(events: $events) { accepted } }"


async def test_personal_data_under_other_names_is_masked_too(services: Services) -> None:
    admin = await _key(services, *Scope)
    written = await _call(
        services,
        admin,
        """mutation { upsertProfile(input: {identifiers: [{type: "customerId", value: "C-1"},
          {type: "workEmail", value: "olga.secret@bigcorp.com"}, {type: "mobileNumber", value: "+33698765432"},
          {type: "crmRef", value: "+447700900123"}, {type: "tel", value: "+33 6 99 88 77 66"},
          {type: "homeTel", value: "07700 900123"}],
          traits: {contactPhone: "+33611111111", shippingAddress: "7 rue Cachee", tier: "gold"}}) { id } }""",
    )
    assert "errors" not in written, written
    document = '{ profileByIdentifier(type: "customerId", value: "C-1") { identifiers { type value } traits } }'
    masked = (await _call(services, await _key(services, Scope.READ_PROFILES), document))["data"]["profileByIdentifier"]
    assert {i["type"]: i["value"] for i in masked["identifiers"]} == {
        "customerId": "C-1",  # a pseudonymous key
        "workEmail": "o***@bigcorp.com",
        "mobileNumber": "+33*******32",
        # Found by an audit: a phone number under a type of the sender's own naming was shown in clear.
        "crmRef": "+44********23",
        "tel": "+33************66",
        "homeTel": "**********23",  # a national number, under a type the free-form keys mask
    }
    assert masked["traits"] == {"contactPhone": "+33*******11", "shippingAddress": "7***", "tier": "gold"}


async def test_personal_data_in_urls_names_and_national_numbers_is_masked_too(services: Services) -> None:
    """Found by an audit: an email address or a phone number in a URL's query string (`%40`, `%2B`), a
    person's `name` trait (Segment's identify trait) and an `ssn` were shown in clear; a product's
    `name` in an event's properties is not a person's and stays."""
    admin = await _key(services, *Scope)
    now = clock.now().isoformat()
    url = "/newsletter/confirm?email=paula.quinn%40example.com&phone=%2B447700900456&step=2&alt=%2B33+6+12+34+56+78"
    events = [
        {"messageId": "u-1", "type": "page_view", "channel": "web", "timestamp": now, "identifiers": EMMA,
         "properties": {"url": url}},
        {"messageId": "u-2", "type": "identify", "channel": "web", "timestamp": now, "identifiers": EMMA,
         "properties": {"traits": {"name": "Paula Quinn", "username": "pquinn1984", "ssn": "123-45-6789",
                                   "homeTel": "+44 7700 900456", "plan": "pro"}}},
        {"messageId": "u-3", "type": "product_view", "channel": "web", "timestamp": now, "identifiers": EMMA,
         "properties": {"productId": "p-1", "name": "Trail runner"}},
    ]  # fmt: skip
    assert (await _call(services, admin, INGEST, {"events": events}))["data"]["ingestEvents"]["accepted"] == 3
    document = """{ profileByIdentifier(type: "email", value: "emma.martin@example.com") {
      traits interactions(first: 5) { edges { node { messageId properties } } } } }"""
    masked = (await _call(services, await _key(services, Scope.READ_PROFILES), document))["data"]["profileByIdentifier"]
    properties = {e["node"]["messageId"]: e["node"]["properties"] for e in masked["interactions"]["edges"]}
    assert properties["u-1"]["url"] == (
        "/newsletter/confirm?email=p***@example.com&phone=%2B44********56&step=2&alt=%2B33************78"
    )
    expected = {"name": "P***", "username": "p***", "ssn": "1***", "homeTel": "+44**********56", "plan": "pro"}
    assert masked["traits"] == expected and properties["u-2"]["traits"] == expected
    assert properties["u-3"]["name"] == "Trail runner"
    # A messageId is the sender's choice; one holding an email address is masked as free text is.
    signup = {"messageId": "signup-jane.doe@example.com", "type": "consent_update", "channel": "web",
              "timestamp": now, "identifiers": EMMA,
              "properties": {"purpose": "analytics", "granted": True}}  # fmt: skip
    assert (await _call(services, admin, INGEST, {"events": [signup]}))["data"]["ingestEvents"]["accepted"] == 1
    ids = """{ profileByIdentifier(type: "email", value: "emma.martin@example.com") {
      interactions(first: 1) { edges { node { messageId } } } consentHistory { messageId } } }"""
    without_pii = (await _call(services, await _key(services, Scope.READ_PROFILES), ids))["data"]
    assert "jane.doe" not in json.dumps(without_pii["profileByIdentifier"]["interactions"]["edges"][0]["node"])
    assert without_pii["profileByIdentifier"]["consentHistory"][0]["messageId"] == "s***@example.com"
    text = json.dumps(masked)
    assert "paula" not in text and "Quinn" not in text and "900456" not in text and "6789" not in text
    clear = (await _call(services, admin, document))["data"]["profileByIdentifier"]
    assert clear["traits"]["name"] == "Paula Quinn"


@pytest.mark.parametrize(
    "document",
    [
        pytest.param('{ profiles(filter: {name: "Em"}) { edges { node { id } } } }', id="profiles-name"),
        pytest.param(
            'mutation { createSegment(input: {name: "E", condition: {compare: {path: "firstName", op: "startsWith", '
            'value: "Em"}}}) { members } }',
            id="segment-first-name",
        ),
        pytest.param(
            'mutation { createSegment(input: {name: "E", condition: {event: {type: "identify", atLeast: 1, '
            'withinDays: 30, where: {property: "lastName", op: "eq", value: "Martin"}}}}) { members } }',
            id="segment-event-property",
        ),
        pytest.param(
            'mutation { createSegment(input: {name: "E", traits: {contactEmail: "string"}, condition: {compare: '
            '{path: "traits.contactEmail", op: "startsWith", value: "emma"}}}) { members } }',
            id="segment-personal-trait",
        ),
        pytest.param(
            'mutation { createSegment(input: {name: "E", condition: {event: {type: "page_view", atLeast: 1, '
            'withinDays: 30, where: {property: "url", op: "contains", value: "email=emma.martin@example.com"}}}}) '
            "{ members } }",
            id="segment-email-in-a-url",
        ),
        pytest.param(
            'mutation { createSegment(input: {name: "E", condition: {event: {type: "page_view", atLeast: 1, '
            'withinDays: 30, where: {property: "url", op: "in", value: ["/x", "+33 6 12 34 56 78"]}}}}) { members } }',
            id="segment-phone-number-anywhere",
        ),
        pytest.param(
            'mutation { createSegment(input: {name: "E", traits: {note: "string"}, condition: {compare: {path: '
            '"traits.note", op: "contains", value: "emma@"}}}) { members } }',
            id="segment-part-of-an-email",
        ),
        # Found by an audit: a part of free-form text, under a key that names nothing personal, spelt
        # out an email address the key reads masked, a letter at a time (and an order, by halves).
        pytest.param(
            'mutation { createSegment(input: {name: "E", traits: {contact: "string"}, condition: {compare: {path: '
            '"traits.contact", op: "startsWith", value: "emma.m"}}}) { members } }',
            id="segment-part-of-free-text",
        ),
        pytest.param(
            'mutation { createSegment(input: {name: "E", traits: {contact: "string"}, condition: {compare: {path: '
            '"traits.contact", op: "gte", value: "emma.m"}}}) { members } }',
            id="segment-free-text-in-order",
        ),
        pytest.param(
            'mutation { createSegment(input: {name: "E", condition: {event: {type: "page_view", atLeast: 1, '
            'withinDays: 30, where: {property: "url", op: "contains", value: "email=emma.m"}}}}) { members } }',
            id="segment-part-of-a-url",
        ),
        pytest.param(
            'mutation { createSegment(input: {name: "E", condition: {event: {type: "page_view", atLeast: 1, '
            'withinDays: 30, where: {property: "url", op: "eq", value: "/c?email=emma%40example.com"}}}}) '
            "{ members } }",
            id="segment-encoded-email-in-a-url",
        ),
        pytest.param(
            'mutation { createSegment(input: {name: "E", traits: {name: "string"}, condition: {compare: {path: '
            '"traits.name", op: "eq", value: "Emma Martin"}}}) { members } }',
            id="segment-a-persons-name-trait",
        ),
    ],
)
async def test_filters_on_personal_data_need_read_pii(services: Services, document: str) -> None:
    admin = await _key(services, *Scope)
    await _call(services, admin, IDENTIFY, AT)
    without_pii = await _key(services, *(s for s in Scope if s is not Scope.READ_PII))

    refused = await _call(services, without_pii, document)
    assert _codes(refused) == {"FORBIDDEN"}, refused
    assert "needs the scope read:pii" in refused["errors"][0]["message"]
    assert await services.store.list_segments() == []
    assert "errors" not in await _call(services, admin, document)


async def test_a_segment_condition_tells_the_personal_values_it_compares_only_to_read_pii(
    services: Services,
) -> None:
    admin = await _key(services, *Scope)
    created = await _call(
        services,
        admin,
        """mutation { createSegment(input: {name: "Callback list", condition: {or: [
          {compare: {path: "lastName", op: "eq", value: "Quist"}},
          {compare: {path: "addresses.street", op: "in", value: ["12 rue Victor Hugo", "3 via Roma"]}},
          {compare: {path: "stats.orders", op: "gte", value: 2}},
          {event: {type: "page_view", atLeast: 1, withinDays: 30,
                   where: {property: "url", op: "contains", value: "email=quist@example.com"}}}]}}) { members } }""",
    )
    assert "errors" not in created, created
    document = "{ segments { condition } }"
    masked = (await _call(services, await _key(services, Scope.READ_PROFILES), document))["data"]["segments"]
    assert masked[0]["condition"] == {"or": [
        {"compare": {"path": "lastName", "op": "eq", "value": "Q***"}},
        {"compare": {"path": "addresses.street", "op": "in", "value": ["1***", "3***"]}},
        {"compare": {"path": "stats.orders", "op": "gte", "value": 2}},  # not personal: as written
        {"event": {"type": "page_view", "atLeast": 1, "withinDays": 30,
                   "where": {"property": "url", "op": "contains", "value": "e***"}}},  # an email address in it
    ]}  # fmt: skip
    clear = (await _call(services, admin, document))["data"]["segments"]
    assert clear[0]["condition"]["or"][0]["compare"]["value"] == "Quist"


async def test_a_segment_name_or_description_naming_a_person_is_masked_without_read_pii(services: Services) -> None:
    """Found by an audit: a steward's segment name or description holding an email (one person's
    re-engagement list) was shown as written to every key that reads segments and their subscribers."""
    admin = await _key(services, *Scope)
    created = await _call(
        services,
        admin,
        """mutation { createSegment(input: {name: "Win back zelda.quist@example.com", description: "call +33612345678",
          condition: {compare: {path: "stats.orders", op: "gte", value: 2}}}) { segment { id } } }""",
    )
    assert "errors" not in created, created
    document = "{ segments { name description } }"
    masked = (await _call(services, await _key(services, Scope.READ_PROFILES), document))["data"]["segments"]
    assert masked == [{"name": "Win back z***@example.com", "description": "call +33*******78"}]
    clear = (await _call(services, admin, document))["data"]["segments"]
    assert clear == [{"name": "Win back zelda.quist@example.com", "description": "call +33612345678"}]


async def test_export_needs_read_profiles_besides_read_pii(services: Services) -> None:
    admin = await _key(services, *Scope)
    await _call(services, admin, IDENTIFY, AT)
    profile = await services.store.find_profile_by_identity("email:emma.martin@example.com")
    assert profile is not None
    document = f'{{ exportProfile(id: "{profile.id}") }}'
    assert _codes(await _call(services, await _key(services, Scope.READ_PII), document)) == {"FORBIDDEN"}
    assert "errors" not in await _call(services, await _key(services, Scope.READ_PII, Scope.READ_PROFILES), document)


# -- subscriptions: the payload's customer data follows the same rules -----------------------
SUBSCRIBE = """subscription { segmentMembershipChanged { change profileId %s } }"""
BUYERS = """mutation { createSegment(input: {name: "Buyers",
  condition: {compare: {path: "stats.orders", op: "gte", value: 1}}}) { members } }"""


async def _socket(url: str, key: str) -> ClientConnection:
    ws = await connect(f"ws://{url}/graphql", subprotocols=[Subprotocol("graphql-transport-ws")])
    await ws.send(json.dumps({"type": "connection_init", "payload": {"Authorization": f"Bearer {key}"}}))
    assert json.loads(await asyncio.wait_for(ws.recv(), 5))["type"] == "connection_ack"
    return ws


async def _subscribe(ws: ClientConnection, selection: str) -> None:
    await ws.send(json.dumps({"id": "1", "type": "subscribe", "payload": {"query": SUBSCRIBE % selection}}))


async def test_subscription_payloads_hold_only_what_the_key_may_see(services: Services) -> None:
    admin = await _key(services, *Scope)
    subscriber = await _key(services, Scope.SUBSCRIBE)
    reader = await _key(services, Scope.SUBSCRIBE, Scope.READ_PROFILES)
    await _call(services, admin, BUYERS)
    async with serving(services) as url:
        refused = await _socket(url, subscriber)
        await _subscribe(refused, "profile { stats { orders } }")
        answer = json.loads(await asyncio.wait_for(refused.recv(), 5))
        errors = answer["payload"] if answer["type"] == "error" else answer["payload"]["errors"]
        assert errors[0]["extensions"]["code"] == "FORBIDDEN" and "Profile.stats" in errors[0]["message"]

        ids_only = await _socket(url, subscriber)
        await _subscribe(ids_only, "")
        masked = await _socket(url, reader)
        await _subscribe(masked, "profile { firstName interactions(first: 5) { edges { node { properties } } } }")
        await asyncio.sleep(0.2)  # both subscriptions are registered before the change
        assert (await _call(services, admin, IDENTIFY, AT))["data"]["ingestEvents"]["accepted"] == 2

        change = json.loads(await asyncio.wait_for(ids_only.recv(), 5))["payload"]["data"]["segmentMembershipChanged"]
        assert change["change"] == "ENTERED" and change["profileId"]
        seen = json.loads(await asyncio.wait_for(masked.recv(), 5))["payload"]["data"]["segmentMembershipChanged"]
        assert seen["profile"]["firstName"] == "E***"
        assert "Emma" not in json.dumps(seen) and "emma.martin@" not in json.dumps(seen)
        for ws in (refused, ids_only, masked):
            await ws.close()


# -- key administration and revocation ---------------------------------------------------------
async def test_admin_keys_creates_lists_and_revokes_keys(services: Services) -> None:
    admin = await _key(services, Scope.ADMIN_KEYS)
    created = await _call(
        services, admin, 'mutation { createApiKey(name: "crm sync", scopes: ["write:profiles"]) { key { id } token } }'
    )
    key_id, token = created["data"]["createApiKey"]["key"]["id"], created["data"]["createApiKey"]["token"]
    assert "errors" not in await _call(services, token, UPSERT % "")
    listed = (await _call(services, admin, "{ apiKeys { id name scopes revokedAt } }"))["data"]["apiKeys"]
    assert {"id": key_id, "name": "crm sync", "scopes": ["write:profiles"], "revokedAt": None} in listed
    assert "secret" not in json.dumps(listed).lower()

    await _call(services, admin, f'mutation {{ revokeApiKey(id: "{key_id}") {{ revokedAt }} }}')
    assert _codes(await _call(services, token, UPSERT % "")) == {"UNAUTHENTICATED"}
    unknown = await _call(services, admin, 'mutation { createApiKey(name: "x", scopes: ["root"]) { token } }')
    assert _codes(unknown) == {"BAD_USER_INPUT"} and "unknown scope 'root'" in unknown["errors"][0]["message"]


async def test_revoking_a_key_closes_its_subscriptions_in_the_server_process(tmp_path: Path) -> None:
    """The key is revoked by another process (the CLI), as an operator would: the server hears it
    through the store and closes the key's socket with 4403; another key's socket stays open."""
    database = f"sqlite:///{tmp_path}/cdp.sqlite3"
    env = {"CDP_DATABASE_URL": database, "CDP_SEED_FIXTURES": "false", "CDP_KEY_CHECK_SECONDS": "0.2"}
    with running_server(env) as url:
        host = url.removeprefix("http://")
        other = (tmp_path / "dev-api-key").read_text().strip()
        token = _cli(database, "keys", "create", "dashboard", "-s", "subscribe")
        doomed, kept = await _socket(host, token), await _socket(host, other)
        await _subscribe(doomed, "")
        await _subscribe(kept, "")
        _cli(database, "keys", "revoke", token.split("_")[1])
        with pytest.raises(ConnectionClosed) as closed:
            await asyncio.wait_for(doomed.recv(), 10)
        assert closed.value.rcvd is not None and closed.value.rcvd.code == 4403
        assert "revoked" in closed.value.rcvd.reason
        await kept.ping()  # still open
        await kept.close()


def _cli(database: str, *arguments: str) -> str:
    done = subprocess.run(
        [sys.executable, "-m", "app", *arguments],
        cwd=ROOT,
        env={"PATH": "/usr/bin:/bin", "CDP_DATABASE_URL": database, "PYTHONPATH": str(ROOT)},
        capture_output=True,
        text=True,
        check=True,
    )
    return done.stdout.strip()


async def test_a_merge_s_reason_tells_the_personal_data_in_it_only_to_read_pii(services: Services) -> None:
    """A steward's reason is free text ("same person: jane@… called from +33…"); it was shown as
    written to any key that reads profiles."""
    admin = await _key(services, *Scope)
    upsert = 'mutation($v: String!) { upsertProfile(input: {identifiers: [{type: "customerId", value: $v}]}) { id } }'
    a = (await _call(services, admin, upsert, {"v": "C-1"}))["data"]["upsertProfile"]["id"]
    b = (await _call(services, admin, upsert, {"v": "C-2"}))["data"]["upsertProfile"]["id"]
    reason = "same person: jane.s4@example.org called from +33 6 11 22 33 44"
    merge = """mutation($a: ID!, $b: ID!, $r: String!) {
      mergeProfiles(survivorId: $a, mergedIds: [$b], reason: $r) { merge { id } } }"""
    merged = await _call(services, admin, merge, {"a": a, "b": b, "r": reason})
    assert "errors" not in merged, merged
    history = "query($a: ID!) { profile(id: $a) { mergeHistory { reason } } }"
    masked = await _call(services, await _key(services, Scope.READ_PROFILES), history, {"a": a})
    assert masked["data"]["profile"]["mergeHistory"] == [
        {"reason": "same person: j***@example.org called from +33************44"}
    ], masked
    clear = await _call(services, admin, history, {"a": a})
    assert clear["data"]["profile"]["mergeHistory"] == [{"reason": reason}]
