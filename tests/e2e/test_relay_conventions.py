"""Relay's conventions over HTTP (issue 16 item 4): every connection pages backwards (`last`/`before`)
to the same list it pages forwards, has `totalCount`, and `node(id)` finds profiles and segments by
id, following merges as `profile(id)` does, with the same scopes."""

from __future__ import annotations

import base64
from typing import Any

import httpx
import pytest

from app.bootstrap import Services
from app.domain.access import Scope
from app.main import create_app
from app.services import api_keys
from tests.e2e.conftest import GraphQL

INGEST = "mutation($events: [EventInput!]!) { ingestEvents(events: $events) { accepted results { profileId } } }"
UPSERT = "mutation($input: ProfileInput!) { upsertProfile(input: $input) { id } }"
PAGE = "totalCount pageInfo { hasNextPage hasPreviousPage startCursor endCursor } edges { cursor node { %s } }"
ARGUMENTS = "first: $first, after: $after, last: $last, before: $before"
VARIABLES = "$first: Int, $after: String, $last: Int, $before: String"
EMMA = "emma@example.com"

# Every connection of the schema: (document, the path to the connection in `data`, what identifies a node,
# a page size that makes a few pages).
CONNECTIONS = [
    pytest.param(
        f"query({VARIABLES}) {{ c: profiles({ARGUMENTS}) {{ {PAGE % 'id'} }} }}", ["c"], "id", 5, id="profiles"
    ),
    pytest.param(
        f'query({VARIABLES}) {{ c: profiles(filter: {{city: "Lyon"}}, {ARGUMENTS}) {{ {PAGE % "id"} }} }}',
        ["c"],
        "id",
        2,
        id="profiles filtered",
    ),
    pytest.param(
        f"query($segment: ID!, {VARIABLES}) {{ segment(id: $segment) "
        f"{{ c: members({ARGUMENTS}) {{ {PAGE % 'id'} }} }} }}",
        ["segment", "c"],
        "id",
        3,
        id="segment members",
    ),
    pytest.param(
        f'query({VARIABLES}) {{ p: profileByIdentifier(type: "email", value: "{EMMA}") '
        f"{{ c: interactions({ARGUMENTS}) {{ {PAGE % 'messageId'} }} }} }}",
        ["p", "c"],
        "messageId",
        15,
        id="interactions",
    ),
    pytest.param(
        f'query({VARIABLES}) {{ p: profileByIdentifier(type: "email", value: "{EMMA}") '
        f'{{ c: interactions(types: ["order_completed", "email_open"], {ARGUMENTS}) {{ {PAGE % "messageId"} }} }} }}',
        ["p", "c"],
        "messageId",
        10,
        id="interactions filtered",
    ),
    pytest.param(
        f"query({VARIABLES}) {{ c: mergeCandidatePairs(minScore: 0.0, {ARGUMENTS}) {{ {PAGE % 'aId bId'} }} }}",
        ["c"],
        "aId bId",
        7,
        id="merge candidate pairs",
    ),
]


def _event(n: int, email: str = EMMA, **overrides: Any) -> dict[str, Any]:
    kind = ("page_view", "order_completed", "email_open")[n % 3]
    properties = {
        "page_view": {"url": f"/p/{n}"},
        "order_completed": {"orderId": f"o{n}", "total": 10},
        "email_open": {"campaignId": "c1"},
    }
    return {
        "messageId": f"{email}-{n}",
        "type": kind,
        "channel": "web",
        "timestamp": f"2026-05-01T{10 + n // 3600:02d}:{n // 60 % 60:02d}:{n % 60:02d}Z",
        "identifiers": [{"type": "email", "value": email}],
        "properties": properties[kind],
        **overrides,
    }


async def _customers(gql: GraphQL) -> str:
    """Emma with 80 events (past the 50 embedded on her profile), eleven others, some in Lyon, some
    look-alikes; a segment of everyone who viewed a page. Returns the segment's id."""
    assert (await gql(INGEST, {"events": [_event(n) for n in range(80)]}))["data"]["ingestEvents"]["accepted"] == 80
    for n in range(11):
        city = "Lyon" if n % 2 else "Paris"
        names = {"firstName": "Jean" if n < 4 else f"Person{n}", "lastName": "Dupont" if n < 4 else "Martin"}
        known = {"identifiers": [{"type": "email", "value": f"c{n}@example.com"}], "addresses": [{"city": city}]}
        born = {"birthDate": "1980-03-12"} if n < 4 else {}
        body = await gql(UPSERT, {"input": known | names | born})
        assert "errors" not in body, body
    await gql(INGEST, {"events": [_event(0, f"c{n}@example.com") for n in range(0, 11, 2)]})
    created = await gql(
        'mutation { createSegment(input: {name: "visitors", condition: {event: {type: "page_view", atLeast: 1, '
        "withinDays: 730}}}) { segment { id } } }"
    )
    assert "errors" not in created, created
    return str(created["data"]["createSegment"]["segment"]["id"])


def _connection(body: dict[str, Any], path: list[str]) -> dict[str, Any]:
    assert "errors" not in body, body["errors"]
    found: Any = body["data"]
    for key in path:
        found = found[key]
    return dict(found)


def _keys(connection: dict[str, Any], key: str) -> list[str]:
    return [" ".join(str(edge["node"][k]) for k in key.split()) for edge in connection["edges"]]


async def _walk(gql: GraphQL, document: str, path: list[str], key: str, size: int, **fixed: Any) -> dict[str, Any]:
    """Every page forwards (`first`, after each endCursor) and backwards (`last`, before each startCursor)."""
    forward: list[list[str]] = []
    backward: list[list[str]] = []
    pages: list[dict[str, Any]] = []
    after = None
    while True:
        page = _connection(await gql(document, {"first": size, "after": after, **fixed}), path)
        pages.append(page)
        forward.append(_keys(page, key))
        assert page["pageInfo"]["hasPreviousPage"] is (after is not None)
        if not page["pageInfo"]["hasNextPage"]:
            break
        after = page["pageInfo"]["endCursor"]
    before = None
    while True:
        page = _connection(await gql(document, {"last": size, "before": before, **fixed}), path)
        pages.append(page)
        backward.append(_keys(page, key))
        assert page["pageInfo"]["hasNextPage"] is (before is not None)
        if not page["pageInfo"]["hasPreviousPage"]:
            break
        before = page["pageInfo"]["startCursor"]
    for page in pages:
        cursors = [edge["cursor"] for edge in page["edges"]]
        assert (page["pageInfo"]["startCursor"], page["pageInfo"]["endCursor"]) == (cursors[0], cursors[-1])
    return {"forward": forward, "backward": backward, "counts": {p["totalCount"] for p in pages}}


@pytest.mark.parametrize(("document", "path", "key", "size"), CONNECTIONS)
async def test_every_connection_pages_backwards_to_the_list_it_pages_forwards(
    gql: GraphQL, document: str, path: list[str], key: str, size: int
) -> None:
    segment = await _customers(gql)
    walked = await _walk(gql, document, path, key, size, segment=segment)
    listed = [item for page in walked["forward"] for item in page]
    assert len(listed) > size and len(set(listed)) == len(listed)
    assert [item for page in reversed(walked["backward"]) for item in page] == listed
    assert walked["backward"][0] == listed[-size:]  # `last` alone: the end of the list
    assert walked["counts"] == {len(listed)}  # totalCount: the whole list, on every page


@pytest.mark.parametrize(("document", "path", "key", "size"), CONNECTIONS)
async def test_a_page_between_two_cursors_holds_what_lies_between_them(
    gql: GraphQL, document: str, path: list[str], key: str, size: int
) -> None:
    segment = await _customers(gql)
    whole = _connection(await gql(document, {"first": 100, "segment": segment}), path)
    listed, cursors = _keys(whole, key), [edge["cursor"] for edge in whole["edges"]]
    between = {"after": cursors[0], "before": cursors[4], "segment": segment}
    first = _connection(await gql(document, {"first": 2, **between}), path)
    last = _connection(await gql(document, {"last": 2, **between}), path)
    everything = _connection(await gql(document, {"first": 100, **between}), path)
    assert _keys(first, key) == listed[1:3] and first["pageInfo"]["hasNextPage"] is True
    assert _keys(last, key) == listed[2:4] and last["pageInfo"]["hasPreviousPage"] is True
    assert _keys(everything, key) == listed[1:4]
    assert {first["totalCount"], last["totalCount"], everything["totalCount"]} == {whole["totalCount"]}


async def test_total_counts_follow_what_is_written(gql: GraphQL) -> None:
    segment = await _customers(gql)
    counts = (
        f'query($segment: ID!) {{ all: profiles {{ totalCount }} lyon: profiles(filter: {{city: "Lyon"}}) '
        f"{{ totalCount }} segment(id: $segment) {{ count members {{ totalCount }} }} "
        f'emma: profileByIdentifier(type: "email", value: "{EMMA}") {{ stats {{ eventsTotal orders }} '
        'all: interactions { totalCount } orders: interactions(types: ["order_completed"]) { totalCount } '
        'web: interactions(channels: ["web"]) { totalCount } } }'
    )

    async def read() -> dict[str, Any]:
        body = await gql(counts, {"segment": segment})
        assert "errors" not in body, body
        data = body["data"]
        emma = data["emma"]
        assert emma["all"]["totalCount"] == emma["stats"]["eventsTotal"]
        assert emma["orders"]["totalCount"] == emma["stats"]["orders"]
        assert data["segment"]["members"]["totalCount"] == data["segment"]["count"]
        return {
            "profiles": data["all"]["totalCount"],
            "lyon": data["lyon"]["totalCount"],
            "members": data["segment"]["count"],
            "interactions": emma["all"]["totalCount"],
            "orders": emma["orders"]["totalCount"],
            "web": emma["web"]["totalCount"],
        }

    before = await read()
    assert before == {"profiles": 12, "lyon": 5, "members": 7, "interactions": 80, "orders": 27, "web": 80}
    await gql(UPSERT, {"input": {"identifiers": [{"type": "email", "value": "n@example.com"}],
                                 "addresses": [{"city": "Lyon"}]}})  # fmt: skip
    events = [_event(n) for n in range(80, 86)] + [_event(3, "c1@example.com", channel="mobile")]
    assert (await gql(INGEST, {"events": events}))["data"]["ingestEvents"]["accepted"] == 7
    after = await read()
    assert after == {"profiles": 13, "lyon": 6, "members": 8, "interactions": 86, "orders": 29, "web": 86}


async def test_first_and_last_together_are_refused(gql: GraphQL) -> None:
    body = await gql("{ profiles(first: 2, last: 2) { totalCount } }")
    assert body["data"] is None
    assert body["errors"][0]["extensions"] == {"code": "BAD_USER_INPUT", "field": "last"}
    assert "first or last, not both" in body["errors"][0]["message"]


@pytest.mark.parametrize(
    ("document", "variables", "field"),
    [
        pytest.param("{ profiles(last: 0) { totalCount } }", {}, "last", id="last 0"),
        pytest.param("{ profiles(last: 101) { totalCount } }", {}, "last", id="last past the page limit"),
        pytest.param("query($l: Int) { profiles(last: $l) { totalCount } }", {"l": 500}, "last", id="last variable"),
        pytest.param("query { segments { members(last: 1000) { totalCount } } }", {}, "last", id="a nested last"),
        pytest.param('{ profiles(last: 2, before: "nope") { totalCount } }', {}, "before", id="a foreign before"),
        pytest.param(
            '{ mergeCandidatePairs(last: 2, before: "cHJvZmlsZTp6eno=") { totalCount } }',
            {},
            "before",
            id="another list's before",
        ),
    ],
)
async def test_bad_pages_and_cursors_are_refused_naming_the_argument(
    gql: GraphQL, document: str, variables: dict[str, Any], field: str
) -> None:
    body = await gql(document, variables)
    assert body.get("data") is None, body
    assert body["errors"][0]["extensions"]["code"] == "BAD_USER_INPUT"
    assert body["errors"][0]["extensions"]["field"] == field
    if field == "before":
        assert body["errors"][0]["message"] == "not a cursor from this list: pass a startCursor you received"


@pytest.mark.parametrize(
    "stamp", ["2026-12-03T00:00:00", "0001-01-01T00:00:00+01:00"], ids=["without an offset", "before year 1 in UTC"]
)
@pytest.mark.parametrize("argument", ["after", "before"])
async def test_an_interaction_cursor_edited_by_hand_is_refused_naming_the_argument(
    gql: GraphQL, stamp: str, argument: str
) -> None:
    """Found by an audit: a time without an offset, compared with the history's, or one before the first
    instant, was an internal error of the page instead of a cursor refused."""
    await _customers(gql)  # Emma's 80 events: past her embedded 50, both paths of the history are read
    cursor = base64.urlsafe_b64encode(f"interaction:{stamp}|m1".encode()).decode().rstrip("=")
    size = "first" if argument == "after" else "last"
    for count in (2, 60):
        document = (
            f'query($c: String) {{ profileByIdentifier(type: "email", value: "{EMMA}") '
            f"{{ interactions({argument}: $c, {size}: {count}) {{ edges {{ cursor }} }} }} }}"
        )
        body = await gql(document, {"c": cursor})
        assert body["errors"][0]["extensions"]["code"] == "BAD_USER_INPUT", body
        assert body["errors"][0]["extensions"]["field"] == argument


# -- node(id) ----------------------------------------------------------------------------------------
NODE = "query($id: ID!) { node(id: $id) { __typename id ... on Profile { firstName } ... on Segment { name } } }"


async def test_node_finds_a_profile_or_a_segment_by_its_id(gql: GraphQL) -> None:
    segment = await _customers(gql)
    emma = await gql(f'{{ profileByIdentifier(type: "email", value: "{EMMA}") {{ id }} }}')
    emma_id = emma["data"]["profileByIdentifier"]["id"]
    await gql(INGEST, {"events": [_event(999, properties={"firstName": "Emma"}, type="identify")]})
    assert (await gql(NODE, {"id": emma_id}))["data"]["node"] == {
        "__typename": "Profile",
        "id": emma_id,
        "firstName": "Emma",
    }
    assert (await gql(NODE, {"id": segment}))["data"]["node"] == {
        "__typename": "Segment",
        "id": segment,
        "name": "visitors",
    }
    assert (await gql(NODE, {"id": "nobody"}))["data"] == {"node": None}


async def test_node_of_a_merged_away_profile_is_the_survivor(gql: GraphQL) -> None:
    ids = []
    for email in ("a@example.com", "b@example.com"):
        body = await gql(UPSERT, {"input": {"identifiers": [{"type": "email", "value": email}], "firstName": "Ann"}})
        ids.append(body["data"]["upsertProfile"]["id"])
    merge = (
        'mutation($s: ID!, $m: ID!) { mergeProfiles(survivorId: $s, mergedIds: [$m], reason: "same") { merge { id } } }'
    )
    merged = await gql(merge, {"s": ids[0], "m": ids[1]})
    assert "errors" not in merged, merged
    by_node = (await gql(NODE, {"id": ids[1]}))["data"]["node"]
    by_profile = (await gql("query($id: ID!) { profile(id: $id) { id } }", {"id": ids[1]}))["data"]["profile"]
    assert by_node == {"__typename": "Profile", "id": ids[0], "firstName": "Ann"}
    assert by_profile == {"id": ids[0]}


async def _call(services: Services, scopes: list[Scope], document: str, variables: dict[str, Any]) -> dict[str, Any]:
    _, token = await api_keys.create_key(services.store, "k", scopes)
    transport = httpx.ASGITransport(app=create_app(services=services))
    async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
        response = await client.post(
            "/graphql",
            json={"query": document, "variables": variables},
            headers={"authorization": f"Bearer {token}"},
        )
    body: dict[str, Any] = response.json()
    return body


async def test_node_needs_what_profile_and_segment_need(gql: GraphQL, services: Services) -> None:
    segment = await _customers(gql)
    emma = (await gql(f'{{ profileByIdentifier(type: "email", value: "{EMMA}") {{ id }} }}'))["data"]
    emma_id = emma["profileByIdentifier"]["id"]
    for scopes in ([Scope.WRITE_EVENTS], [Scope.SUBSCRIBE, Scope.READ_PII]):
        for node_id, own in ((emma_id, "profile"), (segment, "segment")):
            document = "query($id: ID!) { %s(id: $id) { id } }"
            refused = await _call(services, scopes, document % "node", {"id": node_id})
            own_refusal = await _call(services, scopes, document % own, {"id": node_id})
            assert refused["data"] == {"node": None} and own_refusal["data"] == {own: None}
            assert [e["extensions"]["code"] for e in refused["errors"]] == ["FORBIDDEN"]
            assert [e["message"].replace("node", own) for e in refused["errors"]] == [
                e["message"] for e in own_refusal["errors"]
            ]
        # Selecting customer data needs read:profiles wherever it is reached: refused before anything runs.
        refused = await _call(services, scopes, NODE, {"id": emma_id})
        assert refused["data"] is None and refused["errors"][0]["extensions"]["code"] == "FORBIDDEN"
    # read:profiles without read:pii: the same masked customer as profile(id) gives.
    masked = "query($id: ID!) { node(id: $id) { ... on Profile { firstName piiMasked stats { orders } } } }"
    direct = "query($id: ID!) { profile(id: $id) { firstName piiMasked stats { orders } } }"
    await gql(INGEST, {"events": [_event(999, properties={"firstName": "Emma"}, type="identify")]})
    by_node = await _call(services, [Scope.READ_PROFILES], masked, {"id": emma_id})
    by_profile = await _call(services, [Scope.READ_PROFILES], direct, {"id": emma_id})
    assert (
        by_node["data"]["node"]
        == by_profile["data"]["profile"]
        == {
            "firstName": "E***",
            "piiMasked": True,
            "stats": {"orders": 27},
        }
    )
