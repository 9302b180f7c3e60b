"""The steward's review list over HTTP: `mergeCandidatePairs`, every merge candidate pair of the
store as a Relay connection, best first, in a score range."""

from __future__ import annotations

import asyncio
from typing import Any

import httpx
import pytest

from app.bootstrap import Services
from app.domain.access import Scope
from app.main import create_app
from app.services import api_keys, review_list
from app.services.ingestion import IngestionPolicy
from app.services.ports import ProfileStore
from app.settings import Settings
from graphql_schema.pagination import encode_cursor
from tests.e2e.conftest import GraphQL

UPSERT = "mutation($input: ProfileInput!) { upsertProfile(input: $input) { id } }"
PAIRS = """
query($first: Int, $after: String, $min: Float, $max: Float) {
  mergeCandidatePairs(first: $first, after: $after, minScore: $min, maxScore: $max) {
    totalCount computedAt
    pageInfo { hasNextPage hasPreviousPage startCursor endCursor }
    edges { cursor node { aId bId score viaId reasons { field method similarity } } }
  }
}
"""
MERGE = """mutation($s: ID!, $m: [ID!]!) {
  mergeProfiles(survivorId: $s, mergedIds: $m, reason: "same") { merge { id } } }"""
SHORT_LIST = "query($min: Float) { mergeCandidates(minScore: $min, first: 1000) { aId bId score viaId } }"

# Each person three times (a typo, a missing birth date, another mailbox), and two sisters sharing a
# surname and a home: pairs at every score, low ones among them.
PEOPLE = [
    ("Jean", "Dupont", "Dupond", "1980-03-12", "12 rue Victor Hugo", "69002"),
    ("Lucia", "Romano", "Romani", "1992-07-30", "4 via Roma", "20121"),
    ("Aoife", "Byrne", "Byrn", "1975-01-09", "7 Main Street", "D02"),
    ("Marta", "Kowalska", "Kowalsk", "1988-11-23", "3 ulica Dluga", "00-238"),
    ("Claire", "Martin", "Martins", "1969-06-17", "1 place Bellecour", "69002"),
    ("Sophie", "Martin", "Martyn", "1972-02-05", "1 place Bellecour", "69002"),
]


async def _upsert(gql: GraphQL, email: str, **fields: object) -> str:
    body = await gql(UPSERT, {"input": {"identifiers": [{"type": "email", "value": email}], **fields}})
    return str(body["data"]["upsertProfile"]["id"])


async def _people(gql: GraphQL) -> None:
    for first, last, typo, born, street, postcode in PEOPLE:
        home = [{"street": street, "postcode": postcode}]
        await _upsert(
            gql, f"{first}.{last}@example.com", firstName=first, lastName=last, birthDate=born, addresses=home
        )
        await _upsert(gql, f"{first[0]}{last}@mail.example", firstName=first, lastName=typo, birthDate=born)
        await _upsert(gql, f"{first}{born[:4]}@shop.example", firstName=first, lastName=last, addresses=home)


async def _pages(gql: GraphQL, first: int, **variables: object) -> list[dict[str, Any]]:
    """Every page of the list, following endCursor."""
    pages: list[dict[str, Any]] = []
    after = None
    while True:
        body = await gql(PAIRS, {"first": first, "after": after, **variables})
        assert "errors" not in body, body
        page = body["data"]["mergeCandidatePairs"]
        pages.append(page)
        if not page["pageInfo"]["hasNextPage"]:
            return pages
        after = page["pageInfo"]["endCursor"]


def _pairs(pages: list[dict[str, Any]]) -> list[tuple[str, str, float, str | None]]:
    return [
        (e["node"]["aId"], e["node"]["bId"], e["node"]["score"], e["node"]["viaId"]) for p in pages for e in p["edges"]
    ]


async def test_paging_gives_every_pair_once_best_first(gql: GraphQL) -> None:
    await _people(gql)
    pages = await _pages(gql, 4)
    listed = _pairs(pages)
    short = (await gql(SHORT_LIST, {}))["data"]["mergeCandidates"]
    assert listed == [(c["aId"], c["bId"], c["score"], c["viaId"]) for c in short]
    assert len(pages) > 3 and len({(a, b) for a, b, _, _ in listed}) == len(listed)
    assert all(a < b for a, b, _, _ in listed)
    assert [s for _, _, s, _ in listed] == sorted((s for _, _, s, _ in listed), reverse=True)
    assert {p["totalCount"] for p in pages} == {len(listed)}
    assert len({p["computedAt"] for p in pages}) == 1  # one list, scored once
    assert [p["pageInfo"]["hasPreviousPage"] for p in pages] == [False] + [True] * (len(pages) - 1)
    for page in pages:
        cursors = [e["cursor"] for e in page["edges"]]
        assert (page["pageInfo"]["startCursor"], page["pageInfo"]["endCursor"]) == (cursors[0], cursors[-1])
    assert all(e["node"]["reasons"] for p in pages for e in p["edges"])


async def test_min_score_zero_lists_the_weak_pairs_too(gql: GraphQL) -> None:
    await _people(gql)
    default = _pairs(await _pages(gql, 100))
    everything = await _pages(gql, 100, min=0.0)
    weak = _pairs(everything)
    assert everything[0]["totalCount"] == len(weak) > len(default)
    assert {(a, b) for a, b, _, _ in default} < {(a, b) for a, b, _, _ in weak}
    assert min(s for _, _, s, _ in weak) < 0.01  # the sisters: one surname, one home


async def test_a_score_range_lists_the_pairs_within_it(gql: GraphQL) -> None:
    await _people(gql)
    weak = _pairs(await _pages(gql, 100, min=0.0))
    scores = sorted({s for _, _, s, _ in weak})
    assert len(scores) >= 4
    # Bounds halfway between listed scores: no pair sits on them.
    low, high = (scores[1] + scores[2]) / 2, (scores[-3] + scores[-2]) / 2
    pages = await _pages(gql, 3, min=low, max=high)
    inside = _pairs(pages)
    assert inside == [pair for pair in weak if low <= pair[2] <= high]
    assert pages[0]["totalCount"] == len(inside) > 0
    top = await gql(PAIRS, {"first": 100, "min": 0.0, "max": 1.0})
    assert top["data"]["mergeCandidatePairs"]["totalCount"] == len(weak)


async def test_later_pages_read_the_list_of_the_first_and_a_first_page_scores_again(gql: GraphQL) -> None:
    await _people(gql)
    first = (await gql(PAIRS, {"first": 2}))["data"]["mergeCandidatePairs"]
    await _upsert(gql, "jean.dupont@work.example", firstName="Jean", lastName="Dupont", birthDate="1980-03-12")
    second = (await gql(PAIRS, {"first": 2, "after": first["pageInfo"]["endCursor"]}))["data"]["mergeCandidatePairs"]
    assert second["totalCount"] == first["totalCount"] and second["computedAt"] == first["computedAt"]
    again = (await gql(PAIRS, {"first": 2}))["data"]["mergeCandidatePairs"]
    assert again["totalCount"] > first["totalCount"]


async def test_a_page_of_a_list_computed_before_an_erasure_links_no_one_to_the_erased_person(
    gql: GraphQL,
) -> None:
    await _people(gql)
    first = (await gql(PAIRS, {"first": 1}))["data"]["mergeCandidatePairs"]
    everyone = _pairs(await _pages(gql, 100))
    erased = everyone[1][0]  # a profile of a later pair
    erasing = await gql("mutation($id: ID!) { deleteProfile(id: $id) { profiles } }", {"id": erased})
    assert "errors" not in erasing, erasing

    rest = (await gql(PAIRS, {"first": 100, "after": first["pageInfo"]["endCursor"]}))["data"]["mergeCandidatePairs"]
    assert rest["computedAt"] == first["computedAt"]  # the list computed before the erasure
    listed = [(e["node"]["aId"], e["node"]["bId"], e["node"]["viaId"]) for e in rest["edges"]]
    assert listed and not [pair for pair in listed if erased in pair]
    assert [pair for pair in ((a, b, via) for a, b, _, via in everyone[1:]) if erased not in pair] == listed


async def test_a_page_whose_pairs_were_merged_away_reads_on_to_a_full_page(gql: GraphQL) -> None:
    """Found by an audit: a steward merging the pairs of one page as they go left the next pages empty
    (every pair of a person with several duplicates merged), their cursors null, `hasNextPage` true."""
    await _people(gql)
    everyone = _pairs(await _pages(gql, 100))
    first = (await gql(PAIRS, {"first": 2}))["data"]["mergeCandidatePairs"]
    survivor = everyone[0][0]
    # Everything paired with the first pair's profile merged into it: the pairs right after, gone.
    linked = sorted({b if a == survivor else a for a, b, _, _ in everyone if survivor in (a, b)} - {survivor})
    merging = await gql(MERGE, {"s": survivor, "m": linked})
    assert "errors" not in merging, merging
    gone = set(linked)

    after = first["pageInfo"]["endCursor"]
    shown: list[tuple[str, str, float, str | None]] = []
    while True:
        page = (await gql(PAIRS, {"first": 2, "after": after}))["data"]["mergeCandidatePairs"]
        edges = page["edges"]
        assert len(edges) == 2 or not page["pageInfo"]["hasNextPage"], page  # a full page, or the last
        assert page["pageInfo"]["endCursor"] is not None or not edges, page
        shown += _pairs([page])
        if not page["pageInfo"]["hasNextPage"]:
            break
        after = page["pageInfo"]["endCursor"]
    alive = [pair for pair in everyone[2:] if not {pair[0], pair[1], pair[3]} & gone]
    assert [(a, b) for a, b, _, _ in shown] == [(a, b) for a, b, _, _ in alive]


async def test_a_page_after_a_list_this_server_no_longer_holds_resumes_at_its_cursor(
    gql: GraphQL, store: ProfileStore, admin_key: str
) -> None:
    await _people(gql)
    whole = _pairs(await _pages(gql, 100))
    first = (await gql(PAIRS, {"first": 5}))["data"]["mergeCandidatePairs"]
    # Another server process on the same store (a worker, a replica) holds no list: it scores again.
    other = Services(settings=Settings(seed_fixtures=False), store=store, ingestion=IngestionPolicy())
    transport = httpx.ASGITransport(app=create_app(services=other))
    headers = {"authorization": f"Bearer {admin_key}"}
    async with httpx.AsyncClient(transport=transport, base_url="http://other", headers=headers) as client:
        response = await client.post(
            "/graphql", json={"query": PAIRS, "variables": {"first": 100, "after": first["pageInfo"]["endCursor"]}}
        )
    rest = response.json()["data"]["mergeCandidatePairs"]
    assert _pairs([first, rest]) == whole and rest["totalCount"] == len(whole)


def _pair_cursor(payload: str) -> str:
    return encode_cursor("mergeCandidatePair", payload)


@pytest.mark.parametrize(
    "cursor",
    [
        pytest.param("not a cursor", id="garbage"),
        pytest.param(encode_cursor("profile", "prf_1"), id="a profiles cursor"),
        pytest.param(_pair_cursor("[1, 2]"), id="another shape"),
        pytest.param(_pair_cursor('["list", "high", "a", "b"]'), id="a score that is no number"),
        pytest.param(_pair_cursor('["list", NaN, "a", "b"]'), id="NaN"),
        pytest.param(_pair_cursor("{"), id="not JSON"),
    ],
)
async def test_a_cursor_not_from_this_list_is_refused_with_nothing_else(gql: GraphQL, cursor: str) -> None:
    await _people(gql)
    body = await gql(PAIRS, {"first": 2, "after": cursor})
    assert body["data"] is None and len(body["errors"]) == 1
    assert body["errors"][0]["message"] == "not a cursor from this list: pass an endCursor you received"
    assert body["errors"][0]["extensions"] == {"code": "BAD_USER_INPUT", "field": "after"}


@pytest.mark.parametrize(
    ("variables", "field"),
    [
        pytest.param({"min": -0.1}, "minScore", id="minScore below 0"),
        pytest.param({"min": 1.5}, "minScore", id="minScore above 1"),
        pytest.param({"min": 0.6, "max": 0.5}, "maxScore", id="maxScore below minScore"),
        pytest.param({"max": 1.2}, "maxScore", id="maxScore above 1"),
        pytest.param({"first": 0}, "first", id="first 0"),
        pytest.param({"first": 101}, "first", id="first past the page limit"),
    ],
)
async def test_bad_arguments_are_refused_naming_them(gql: GraphQL, variables: dict[str, object], field: str) -> None:
    body = await gql(PAIRS, {"first": 2, **variables})
    assert body["data"] is None
    assert body["errors"][0]["extensions"] == {"code": "BAD_USER_INPUT", "field": field}


async def test_more_pairs_than_a_list_holds_is_refused(gql: GraphQL, store: ProfileStore, admin_key: str) -> None:
    await _people(gql)
    whole = (await gql(PAIRS, {"first": 1, "min": 0.0}))["data"]["mergeCandidatePairs"]["totalCount"]
    small = Services(
        settings=Settings(seed_fixtures=False, max_review_pairs=whole - 1), store=store, ingestion=IngestionPolicy()
    )
    transport = httpx.ASGITransport(app=create_app(services=small))
    headers = {"authorization": f"Bearer {admin_key}"}
    async with httpx.AsyncClient(transport=transport, base_url="http://small", headers=headers) as client:
        refused = (await client.post("/graphql", json={"query": PAIRS, "variables": {"min": 0.0}})).json()
        held = (await client.post("/graphql", json={"query": PAIRS, "variables": {"min": 0.5}})).json()
    assert refused["data"] is None
    assert refused["errors"][0]["extensions"] == {"code": "LIMIT_EXCEEDED", "field": "minScore"}
    assert f"more than {whole - 1:,} pairs score at or above minScore 0.0" in refused["errors"][0]["message"]
    assert held["data"]["mergeCandidatePairs"]["totalCount"] < whole


async def test_a_link_names_the_profile_its_score_goes_through(gql: GraphQL) -> None:
    # Lucia three times: two records alike only by name, and a card holding both their mailboxes.
    await _upsert(gql, "lucia.romano@gmail.com", firstName="Lucia", lastName="Romano")
    await _upsert(gql, "lromano+shop@libero.it", firstName="Lucia", lastName="Romano")
    card = await gql(
        UPSERT,
        {
            "input": {
                "firstName": "Lucia",
                "lastName": "Romano",
                "identifiers": [
                    {"type": "email", "value": "luciaromano@gmail.com"},
                    {"type": "email", "value": "lromano@libero.it"},
                ],
            }
        },
    )
    card_id = card["data"]["upsertProfile"]["id"]
    edges = (await gql(PAIRS, {"first": 10}))["data"]["mergeCandidatePairs"]["edges"]
    linked = [e["node"] for e in edges if e["node"]["viaId"]]
    assert [n["viaId"] for n in linked] == [card_id] and card_id not in {linked[0]["aId"], linked[0]["bId"]}
    link_reason = {"field": "profile", "method": "linkedThrough", "similarity": linked[0]["score"]}
    assert link_reason in linked[0]["reasons"]


async def test_the_list_needs_read_profiles_and_read_pii(store: ProfileStore) -> None:
    services = Services(settings=Settings(seed_fixtures=False), store=store, ingestion=IngestionPolicy())
    _, writer = await api_keys.create_key(store, "writer", [s for s in Scope if s != Scope.READ_PROFILES])
    _, masked = await api_keys.create_key(store, "masked", [Scope.READ_PROFILES])
    _, reader = await api_keys.create_key(store, "reader", [Scope.READ_PROFILES, Scope.READ_PII])
    transport = httpx.ASGITransport(app=create_app(services=services))
    async with httpx.AsyncClient(transport=transport, base_url="http://t") as client:
        calls = {
            key: (
                await client.post(
                    "/graphql", json={"query": PAIRS}, headers={"authorization": f"Bearer {key}"} if key else {}
                )
            )
            for key in (writer, masked, reader, None)
        }
    for key, scope in ((writer, "read:profiles"), (masked, "read:pii")):  # scores compare personal data
        refused = calls[key].json()
        assert refused["data"] is None and len(refused["errors"]) == 1
        assert refused["errors"][0]["extensions"]["code"] == "FORBIDDEN"
        assert f"needs the scope {scope}" in refused["errors"][0]["message"]
    assert calls[None].status_code == 401
    assert calls[reader].json()["data"]["mergeCandidatePairs"]["totalCount"] == 0


async def test_a_cursor_of_the_list_at_another_min_score_is_refused(gql: GraphQL) -> None:
    """Found by an audit: an endCursor of the list at minScore 0 asked of minScore 0.5 answered a page,
    whose position was another list's: pairs skipped or repeated."""
    await _people(gql)
    low = (await gql(PAIRS, {"first": 1, "min": 0.0}))["data"]["mergeCandidatePairs"]
    body = await gql(PAIRS, {"first": 2, "min": 0.5, "after": low["pageInfo"]["endCursor"]})
    assert body["data"] is None and body["errors"][0]["extensions"] == {"code": "BAD_USER_INPUT", "field": "after"}
    assert "minScore 0" in body["errors"][0]["message"]
    more = await gql(PAIRS, {"first": 2, "min": 0.0, "after": low["pageInfo"]["endCursor"]})
    assert "errors" not in more, more


async def test_a_pair_is_ordered_and_filtered_by_the_score_it_shows(gql: GraphQL) -> None:
    """Found by an audit: scores were shown with 4 decimals but ordered and filtered on all of theirs:
    pairs shown equal came with their ids out of order, and a pair shown as 1.0 was left out by
    minScore 1.0 (by maxScore at its own shown score, likewise)."""
    await _people(gql)
    listed = _pairs(await _pages(gql, 100, min=0.0))
    assert listed == sorted(listed, key=lambda p: (-p[2], p[0], p[1]))
    for a, b, score, _ in listed[:: max(1, len(listed) // 8)]:
        exactly = _pairs(await _pages(gql, 100, min=score, max=score))
        assert (a, b) in {(x, y) for x, y, _, _ in exactly} and {s for _, _, s, _ in exactly} == {score}


async def test_whole_store_short_lists_asked_together_share_one_computation(
    gql: GraphQL, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Found by an audit of what a key can make the server do: mergeCandidates without profileId
    computed the whole store's list for each request (about a minute at 100,000 profiles), where
    mergeCandidatePairs' first pages share one, computed one at a time."""
    await _people(gql)
    computed = 0
    whole_store = review_list.review_list

    async def counted(*args: Any, **kwargs: Any) -> Any:
        nonlocal computed
        computed += 1
        return await whole_store(*args, **kwargs)

    monkeypatch.setattr(review_list, "review_list", counted)
    answers = await asyncio.gather(*(gql(SHORT_LIST, {"min": 0.01}) for _ in range(4)))
    assert computed == 1
    assert all(answer == answers[0] and answer["data"]["mergeCandidates"] for answer in answers)
