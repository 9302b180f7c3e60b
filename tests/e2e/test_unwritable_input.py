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
