"""Input no store can write (a lone surrogate, an integer past 64 bits), or more than one request may
grow a profile by, is BAD_USER_INPUT naming its field, and nothing is written. Before, a lone
surrogate or a huge integer reached the encoder (an internal error), a 900 KB trait was stored and
slowed every later event of the person, and a thousand ranges on one stats field made an SQL
expression too deep to run, answered as the store being unavailable (and retried as an outage)."""

from __future__ import annotations

import json
from typing import Any

import httpx
import pytest

from app.services.ports import ProfileStore

ADA = '{type: "email", value: "ada@example.com"}'
UPSERT = f"mutation($traits: JSON) {{ upsertProfile(input: {{identifiers: [{ADA}], traits: $traits}}) {{ id }} }}"
BUYERS = {"compare": {"path": "stats.orders", "op": "gte", "value": 1}}


SEGMENT = """mutation($name: String!, $condition: JSON!) {
  createSegment(input: {name: $name, condition: $condition}) { members } }"""
CITY = "query($city: String) { profiles(filter: {city: $city}) { edges { cursor } } }"


# A lone surrogate arrives as a variable ("\\ud800" in the JSON body): GraphQL documents refuse it.
@pytest.mark.parametrize(
    ("document", "variables", "field"),
    [
        pytest.param(UPSERT, {"traits": {"note": "\ud800"}}, "traits.note", id="trait-lone-surrogate"),
        pytest.param(UPSERT, {"traits": {"n": 10**4000}}, "traits.n", id="trait-huge-integer"),
        # Found by an audit: orjson read 2**64 and more as a float, silently (1.1805916207174113e+21 stored).
        pytest.param(UPSERT, {"traits": {"n": 2**70}}, "traits.n", id="trait-integer-past-64-bits"),
        pytest.param(UPSERT, {"traits": {"n": -(2**64)}}, "traits.n", id="trait-negative-integer-past-64-bits"),
        pytest.param(UPSERT, {"traits": {"n": -9999999999999999999}}, "traits.n", id="trait-19-digits-below-int64"),
        pytest.param(UPSERT, {"traits": {f"t{n}": "x" * 8000 for n in range(9)}}, "traits", id="traits-too-large"),
        pytest.param(SEGMENT, {"name": "\ud800", "condition": BUYERS}, "name", id="segment-name-lone-surrogate"),
        pytest.param(
            SEGMENT,
            {"name": "S", "condition": {"compare": {"path": "firstName", "op": "eq", "value": "A\ud800"}}},
            "condition.compare.value",
            id="segment-value-lone-surrogate",
        ),
        pytest.param(
            'mutation($description: String) { createSegment(input: {name: "S", description: $description, '
            'condition: {compare: {path: "stats.orders", op: "gte", value: 1}}}) { members } }',
            {"description": "d" * 1001},
            "description",
            id="segment-description-too-long",
        ),
        pytest.param(CITY, {"city": "\ud800"}, "filter.city", id="filter-lone-surrogate"),
        # Found by an audit: MongoDB refuses a NUL in the pattern a name or a city is looked up with.
        pytest.param(CITY, {"city": "Ly\u0000on"}, "filter.city", id="filter-nul"),
        pytest.param(
            "{ profiles(filter: {stats: [{field: ORDERS, min: 1}, {field: ORDERS, max: 5}]}) { edges { cursor } } }",
            None,
            "filter.stats[1]",
            id="filter-one-field-twice",
        ),
    ],
)
async def test_unwritable_input_is_bad_user_input_naming_its_field_and_writes_nothing(
    client: httpx.AsyncClient, store: ProfileStore, document: str, variables: dict[str, Any] | None, field: str
) -> None:
    # json.dumps as Python writes it: a lone surrogate escaped as "\\ud800" (httpx's json= cannot).
    body = json.dumps({"query": document, "variables": variables or {}})
    response = await client.post("/graphql", content=body, headers={"content-type": "application/json"})
    answer = response.json()
    [error] = answer["errors"]
    assert error["extensions"]["code"] == "BAD_USER_INPUT", error
    assert error["extensions"]["field"] == field, error
    assert await store.find_profile_by_identity("email:ada@example.com") is None
    assert await store.list_segments() == []


MERGE_IDS = 'mutation($ids: [ID!]!) { mergeProfiles(survivorId: "a", mergedIds: $ids, reason: "dup") { merge { id } } }'


# An ID nobody can store is refused as any invalid variable is, naming it: before, the store's driver
# raised while encoding it (INTERNAL_SERVER_ERROR), over GET and POST alike.
@pytest.mark.parametrize(
    ("document", "variables", "named"),
    [
        pytest.param("query($id: ID!) { profile(id: $id) { id } }", {"id": "\ud800"}, "$id", id="profile"),
        pytest.param("mutation($id: ID!) { deleteProfile(id: $id) { id } }", {"id": "p\udc00"}, "$id", id="erasure"),
        pytest.param(MERGE_IDS, {"ids": ["b", "\ud800"]}, "$ids' has invalid value at [1]", id="merge-ids"),
    ],
)
async def test_an_id_that_is_not_unicode_is_refused_naming_its_variable(
    client: httpx.AsyncClient, store: ProfileStore, document: str, variables: dict[str, Any], named: str
) -> None:
    body = json.dumps({"query": document, "variables": variables})
    for response in (
        await client.post("/graphql", content=body, headers={"content-type": "application/json"}),
        await client.get("/graphql", params={"query": document, "variables": json.dumps(variables)}),
    ):
        if document.startswith("mutation") and response.request.method == "GET":
            continue  # mutations are refused over GET before their variables are read
        [error] = response.json()["errors"]
        assert error["extensions"]["code"] == "GRAPHQL_VALIDATION_FAILED", error
        assert named in error["message"] and "not valid Unicode" in error["message"], error


async def test_a_merge_reason_that_is_not_unicode_is_refused_and_nothing_is_merged(
    client: httpx.AsyncClient, store: ProfileStore
) -> None:
    ids = []
    for email in ("ada@example.com", "ada.l@example.com"):
        upsert = f'mutation {{ upsertProfile(input: {{identifiers: [{{type: "email", value: "{email}"}}]}}) {{ id }} }}'
        ids.append((await client.post("/graphql", json={"query": upsert})).json()["data"]["upsertProfile"]["id"])
    document = (
        "mutation($a: ID!, $b: ID!, $r: String!) "
        "{ mergeProfiles(survivorId: $a, mergedIds: [$b], reason: $r) { merge { id } } }"
    )
    body = json.dumps({"query": document, "variables": {"a": ids[0], "b": ids[1], "r": "same \ud800 person"}})
    response = await client.post("/graphql", content=body, headers={"content-type": "application/json"})
    [error] = response.json()["errors"]
    assert (error["extensions"]["code"], error["extensions"]["field"]) == ("BAD_USER_INPUT", "reason"), error
    for profile_id in ids:  # both still live, nothing merged
        profile = await store.get_profile(profile_id)
        assert profile is not None and profile.merged_into is None


async def test_a_filter_on_an_identifier_type_nobody_can_hold_is_refused(client: httpx.AsyncClient) -> None:
    """As profileByIdentifier refuses it: before, the list answered nobody, as if the type were real."""
    document = 'query { profiles(filter: {identifierType: "Bad Type"}) { edges { cursor } } }'
    [error] = (await client.post("/graphql", json={"query": document})).json()["errors"]
    assert (error["extensions"]["code"], error["extensions"]["field"]) == ("BAD_USER_INPUT", "filter.identifierType")
    assert "unknown identifier type 'Bad Type'" in error["message"], error
    known = 'query { profiles(filter: {identifierType: "loyaltyCard"}) { edges { cursor } } }'  # a custom type
    assert "errors" not in (await client.post("/graphql", json={"query": known})).json()


async def test_a_filter_on_an_identifier_type_is_trimmed_as_it_is_checked(client: httpx.AsyncClient) -> None:
    """Found by an audit: the type was checked trimmed but compared as sent, so " email" listed nobody."""
    upsert = 'mutation { upsertProfile(input: {identifiers: [{type: "email", value: "t@example.com"}]}) { id } }'
    [created] = (await client.post("/graphql", json={"query": upsert})).json()["data"].values()
    for sent in ("email", " email", "email\t"):
        listed = f'query {{ profiles(filter: {{identifierType: "{sent}"}}) {{ edges {{ node {{ id }} }} }} }}'
        edges = (await client.post("/graphql", json={"query": listed})).json()["data"]["profiles"]["edges"]
        assert [edge["node"]["id"] for edge in edges] == [created["id"]], sent


@pytest.mark.parametrize(
    ("segment", "field"),
    [
        pytest.param({"purpose": "telepathy", "condition": BUYERS}, "purpose", id="its-purpose"),
        pytest.param({"condition": {"consentGranted": {"purpose": "telepathy"}}}, "condition", id="a-consent-leaf"),
        pytest.param(
            {"condition": {"compare": {"path": "consents.telepathy.granted", "op": "eq", "value": True}}},
            "condition",
            id="a-consent-path",
        ),
    ],
)
async def test_a_segment_naming_a_purpose_nobody_can_grant_is_refused(
    client: httpx.AsyncClient, store: ProfileStore, segment: dict[str, Any], field: str
) -> None:
    """setConsent and consent_update events take the purposes of CDP_CONSENT_PURPOSES only: a segment on
    another one held nobody, for ever, and said nothing."""
    document = "mutation($input: SegmentInput!) { createSegment(input: $input) { members } }"
    body = {"query": document, "variables": {"input": {"name": "Telepaths", **segment}}}
    [error] = (await client.post("/graphql", json=body)).json()["errors"]
    assert (error["extensions"]["code"], error["extensions"]["field"]) == ("BAD_USER_INPUT", field), error
    assert "unknown purpose 'telepathy'; expected one of" in error["message"], error
    assert await store.list_segments() == []


UPSERT_WITH = "mutation($p: ProfileInput!) { upsertProfile(input: $p) { id } }"
KEY_NAMED = 'mutation($n: String!) { createApiKey(name: $n, scopes: ["read:profiles"]) { token } }'


@pytest.mark.parametrize(
    ("document", "variables", "field"),
    [
        pytest.param(KEY_NAMED, {"n": "ops\n"}, "name", id="key-name"),
        pytest.param(
            UPSERT_WITH,
            {"p": {"identifiers": [{"type": "email", "value": "a@example.com"}], "firstName": "Al", "source": "crm\n"}},
            "source",
            id="upsert-source",
        ),
    ],
)
async def test_a_trailing_newline_is_no_valid_name(
    client: httpx.AsyncClient, document: str, variables: dict[str, Any], field: str
) -> None:
    """Python's `$` matches before a final newline: "crm\\n" passed as a source (then ranked last by the
    source-priority rule) and "ops\\n" as a key's name. Refused now, naming the field. (Text fields and
    keys of the inputs are stripped of surrounding spaces before they are checked.)"""
    body = (await client.post("/graphql", json={"query": document, "variables": variables})).json()
    assert body["errors"][0]["extensions"]["code"] == "BAD_USER_INPUT", body
    assert body["errors"][0]["extensions"]["field"].endswith(field), body
