"""A frontend's typical query costs one database round trip for the profile (counted on SQLite,
whose every statement is visible through the connection's trace hook)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import datetime
from typing import Any

import httpx
import pytest

from app.bootstrap import Services
from app.domain.access import Scope
from app.domain.errors import StoreUnavailable
from app.domain.events import RawEvent
from app.domain.merge import MergeRefusal
from app.domain.pii_mask import mask_text
from app.domain.profile import RECENT_INTERACTIONS_CAP
from app.main import create_app
from app.services import api_keys, merging, privacy
from app.services.identity_policy import IdentityPolicy
from app.services.ingestion import IngestionPolicy, ingest_events
from app.settings import Settings
from app.store.sqlite.store import SQLiteStore
from tests.builders import BASE_TIME, event


@pytest.fixture
async def traced(sqlite_store: SQLiteStore) -> AsyncIterator[tuple[httpx.AsyncClient, list[str]]]:
    await ingest_events(sqlite_store, [event("page_view", minutes=n) for n in range(30)])
    statements: list[str] = []
    sqlite_store.trace(statements.append)
    # Authentication off: its key lookup is not the profile's cost, which is what is counted here.
    settings = Settings(seed_fixtures=False, auth=False)
    services = Services(settings=settings, store=sqlite_store, ingestion=IngestionPolicy())
    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app=create_app(services=services)), base_url="http://t"
    ) as c:
        yield c, statements


async def test_traits_stats_and_last_ten_interactions_are_one_round_trip(
    traced: tuple[httpx.AsyncClient, list[str]],
) -> None:
    client, statements = traced
    query = """{ profileByIdentifier(type: "email", value: "emma@example.com") {
        traits stats { orders lastSeenAt } interactions(first: 10) { edges { node { type timestamp } } } } }"""
    body = (await client.post("/graphql", json={"query": query})).json()
    assert len(body["data"]["profileByIdentifier"]["interactions"]["edges"]) == 10
    assert len(statements) == 1, statements


async def test_paging_past_the_embedded_list_costs_one_more(traced: tuple[httpx.AsyncClient, list[str]]) -> None:
    client, statements = traced
    query = """{ profileByIdentifier(type: "email", value: "emma@example.com") {
        interactions(first: 10, types: ["email_open"]) { edges { node { type } } } } }"""
    await client.post("/graphql", json={"query": query})
    assert len(statements) == 1  # all 30 interactions are embedded: nothing more to read


# -- nested lists: one store read per level of the tree, whatever the number of items (DataLoaders) ----
CUSTOMERS = 6
GOLD = {"compare": {"path": "traits.tier", "op": "eq", "value": "gold"}}
SILVER = {"compare": {"path": "traits.tier", "op": "eq", "value": "silver"}}
CREATE = """mutation($name: String!, $condition: JSON!) {
  createSegment(input: {name: $name, traits: {tier: "string"}, condition: $condition}) { segment { id } } }"""


def _customer(n: int) -> list[RawEvent]:
    email = f"c{n}@example.com"
    identify = {"firstName": f"C{n}", "traits": {"tier": "gold" if n % 2 == 0 else "silver"}}
    consents = [
        event("consent_update", email=email, minutes=1, properties={"purpose": "email_marketing", "granted": True}),
        event("consent_update", email=email, minutes=2, properties={"purpose": "email_marketing", "granted": n > 2}),
    ]
    # More interactions than the embedded list keeps: a filtered page continues from the full history.
    views = [event("page_view", email=email, minutes=10 + m) for m in range(RECENT_INTERACTIONS_CAP)]
    opens = [event("email_open", email=email, minutes=5 + m) for m in range(2)]
    return [event("identify", email=email, properties=identify), *consents, *opens, *views]


@pytest.fixture
async def crowd(sqlite_store: SQLiteStore) -> AsyncIterator[tuple[httpx.AsyncClient, list[str], dict[str, str]]]:
    """CUSTOMERS profiles (C0…C5, even ones gold), each with consent decisions and a long history; two
    segments (Gold, Silver) that took them in; C5 merged into C4; one refusal between C0 and C1."""
    await ingest_events(sqlite_store, [e for n in range(CUSTOMERS) for e in _customer(n)])
    ids = {}
    for n in range(CUSTOMERS):
        found = await sqlite_store.find_profile_by_identity(f"email:c{n}@example.com")
        assert found is not None
        ids[f"C{n}"] = found.id
    settings = Settings(seed_fixtures=False, auth=False)
    services = Services(settings=settings, store=sqlite_store, ingestion=IngestionPolicy())
    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app=create_app(services=services)), base_url="http://t"
    ) as c:
        for name, condition in (("Gold", GOLD), ("Silver", SILVER)):
            assert (
                "errors"
                not in (
                    await c.post(
                        "/graphql", json={"query": CREATE, "variables": {"name": name, "condition": condition}}
                    )
                ).json()
            )
        await merging.merge_profiles(
            sqlite_store, ids["C4"], [ids["C5"]], reason="same person", actor="t", policy=IdentityPolicy()
        )
        refusal = MergeRefusal(_id="r1", at=BASE_TIME, profile_ids=[ids["C0"], ids["C1"]], reason="protected")
        await sqlite_store.run_in_transaction(lambda tx: tx.record_refusal(refusal))
        statements: list[str] = []
        sqlite_store.trace(statements.append)
        yield c, statements, ids


async def _reads(client: httpx.AsyncClient, statements: list[str], query: str) -> tuple[dict[str, Any], int]:
    """The query's data, and how many statements it ran on the read connections to read data (not
    counting the check that nothing was committed since kept profiles were read: commit_watch.py)."""
    statements.clear()
    body = (await client.post("/graphql", json={"query": query})).json()
    assert "errors" not in body, body["errors"]
    return body["data"], sum(1 for s in statements if s != "PRAGMA data_version")


async def test_each_segment_event_s_segment_and_profile_cost_one_read_for_the_whole_list(
    crowd: tuple[httpx.AsyncClient, list[str], dict[str, str]], sqlite_store: SQLiteStore
) -> None:
    client, statements, ids = crowd
    query = "{ segmentHistory(%s last: 50) { profileId segment { name } profile { id firstName } } }"
    sqlite_store.decoded.forget(ids.values())  # counted with no profile kept (kept ones need no read)
    one, one_reads = await _reads(client, statements, query % f'profileId: "{ids["C5"]}"')
    sqlite_store.decoded.forget(ids.values())
    every, reads = await _reads(client, statements, query % "")
    # C5 is merged away: its own change and its survivor's (C4's), the person's now
    assert sorted(e["profileId"] for e in one["segmentHistory"]) == sorted([ids["C5"], ids["C4"]])
    assert len(every["segmentHistory"]) == CUSTOMERS
    # C5 followed to its survivor (two reads: a merge hop), then the events, their segments and their
    # profiles (C5's survivor kept: nothing committed since); in the whole list the survivor (C4) was
    # read with the others: as kept
    assert one_reads == 5 and reads == 3
    names = {ids[f"C{n}"]: f"C{n}" for n in range(CUSTOMERS)}
    for item in every["segmentHistory"]:
        name = names[item["profileId"]]
        assert item["segment"]["name"] == ("Gold" if int(name[1]) % 2 == 0 else "Silver")
        if name == "C5":  # merged away: its event's profile is the survivor, as profile(id) gives it
            assert item["profile"] == {"id": ids["C4"], "firstName": "C4"}
        else:
            assert item["profile"] == {"id": item["profileId"], "firstName": name}


async def test_segments_members_counts_and_members_histories_cost_one_read_per_level(
    crowd: tuple[httpx.AsyncClient, list[str], dict[str, str]],
) -> None:
    client, statements, _ = crowd
    query = """{ segments { name count members(first: %d) { edges { node { firstName
        interactions(first: 3, types: ["email_open"]) { edges { node { type } } pageInfo { hasNextPage } } } } } } }"""
    _, few_reads = await _reads(client, statements, query % 1)
    every, reads = await _reads(client, statements, query % 20)
    assert reads == few_reads == 4  # the segments, their counts, their members, the members' histories
    members = {s["name"]: [e["node"]["firstName"] for e in s["members"]["edges"]] for s in every["segments"]}
    assert {s["name"]: s["count"] for s in every["segments"]} == {"Gold": 3, "Silver": 2}  # C5 merged away
    assert {name: sorted(found) for name, found in members.items()} == {
        "Gold": ["C0", "C2", "C4"],
        "Silver": ["C1", "C3"],
    }
    for segment in every["segments"]:
        for edge in segment["members"]["edges"]:
            opens = edge["node"]["interactions"]
            expected = 4 if edge["node"]["firstName"] == "C4" else 2  # C5's history went to C4
            assert [e["node"]["type"] for e in opens["edges"]] == ["email_open"] * min(expected, 3)
            assert opens["pageInfo"]["hasNextPage"] is (expected > 3)


async def test_a_list_of_events_reads_its_segments_and_profiles_once_whatever_the_fragments(
    crowd: tuple[httpx.AsyncClient, list[str], dict[str, str]], sqlite_store: SQLiteStore
) -> None:
    client, statements, ids = crowd
    sqlite_store.decoded.forget(ids.values())  # counted with no profile kept (kept ones need no read)
    plain, plain_reads = await _reads(
        client, statements, "{ segmentHistory(last: 50) { id segment { name } profile { id firstName } } }"
    )
    sqlite_store.decoded.forget(ids.values())
    spread, spread_reads = await _reads(
        client,
        statements,
        """{ segmentHistory(last: 50) { id ...Who ... on SegmentMembershipEvent { segment { name } } } }
        fragment Who on SegmentMembershipEvent { profile { id firstName } }""",
    )
    _, flat_reads = await _reads(client, statements, "{ segmentHistory(last: 50) { id } }")
    assert spread == plain and len(plain["segmentHistory"]) == CUSTOMERS
    # the events, their segments, their profiles (C5's survivor among them, as kept); without the nested
    # fields, the events alone
    assert spread_reads == plain_reads == 3 and flat_reads == 1


async def test_a_failed_read_of_a_list_s_profiles_is_each_event_s_error_as_when_each_reads_its_own(
    crowd: tuple[httpx.AsyncClient, list[str], dict[str, str]],
    sqlite_store: SQLiteStore,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    client, _, _ = crowd

    async def unavailable(profile_ids: object) -> object:
        raise StoreUnavailable("the profiles' read failed")

    monkeypatch.setattr(sqlite_store, "get_profiles", unavailable)
    query = "{ segmentHistory(last: 50) { segment { name } profile { firstName } } }"
    body = (await client.post("/graphql", json={"query": query})).json()
    events = body["data"]["segmentHistory"]
    assert len(events) == CUSTOMERS and all(e["segment"] is not None and e["profile"] is None for e in events)
    assert sorted(e["path"][1] for e in body["errors"]) == list(range(CUSTOMERS))
    assert {tuple(e["path"][::2]) for e in body["errors"]} == {("segmentHistory", "profile")}


async def test_members_last_interactions_cost_no_read_past_the_members_when_embedded(
    crowd: tuple[httpx.AsyncClient, list[str], dict[str, str]],
) -> None:
    client, statements, _ = crowd
    query = """{ segments { name members(first: %d) { edges { node { firstName
        interactions(first: 10) { edges { node { type timestamp } } pageInfo { hasNextPage endCursor } } } } } } }"""
    _, few_reads = await _reads(client, statements, query % 1)
    every, reads = await _reads(client, statements, query % 20)
    flat, flat_reads = await _reads(
        client, statements, "{ segments { name members(first: 20) { edges { node { firstName } } } } }"
    )
    assert reads == few_reads == flat_reads == 2  # the segments, their members: the last 10 are embedded
    histories = [e["node"]["interactions"] for s in every["segments"] for e in s["members"]["edges"]]
    assert len(histories) == CUSTOMERS - 1
    for history in histories:
        assert [e["node"]["type"] for e in history["edges"]] == ["page_view"] * 10
        assert history["pageInfo"]["hasNextPage"] is True and history["pageInfo"]["endCursor"]
    assert [[e["node"]["firstName"] for e in s["members"]["edges"]] for s in every["segments"]] == [
        [e["node"]["firstName"] for e in s["members"]["edges"]] for s in flat["segments"]
    ]


async def test_segment_memberships_of_a_page_of_profiles_cost_one_read_of_entries_for_them_all(
    crowd: tuple[httpx.AsyncClient, list[str], dict[str, str]], sqlite_store: SQLiteStore
) -> None:
    client, statements, ids = crowd
    query = (
        "{ profiles(first: %d) { edges { node { id segments segmentMemberships { segment { id name } since } } } } }"
    )
    _, few_reads = await _reads(client, statements, query % 1)
    every, reads = await _reads(client, statements, query % 20)
    assert reads == few_reads == 3  # the page, every profile's entries into segments, the segments
    assert len([s for s in statements if "segment_events" in s]) == 1
    names = {ids[f"C{n}"]: f"C{n}" for n in range(CUSTOMERS)}
    nodes = [e["node"] for e in every["profiles"]["edges"]]
    assert len(nodes) == CUSTOMERS - 1  # C5 merged away
    for node in nodes:
        (membership,) = node["segmentMemberships"]
        assert [membership["segment"]["id"]] == node["segments"]
        assert membership["segment"]["name"] == ("Gold" if int(names[node["id"]][1]) % 2 == 0 else "Silver")
        events = await sqlite_store.segment_events(profile_id=node["id"], limit=10)
        entered = [e.at for e in events if e.change == "ENTERED" and e.segment_id == node["segments"][0]]
        assert datetime.fromisoformat(membership["since"]) == max(entered)


async def test_merge_history_refusals_and_consent_history_of_a_page_of_profiles_cost_one_read_each(
    crowd: tuple[httpx.AsyncClient, list[str], dict[str, str]], sqlite_store: SQLiteStore
) -> None:
    client, statements, ids = crowd
    query = """{ profiles(first: %d) { edges { node { id mergeHistory { id survivor merged }
        mergeRefusals { id } consentHistory { purpose granted messageId } } } } }"""
    _, few_reads = await _reads(client, statements, query % 1)
    every, reads = await _reads(client, statements, query % 20)
    # The page, its merges, its refusals, and for consents the merges walked one step for every profile
    # at once (a second step for C4, whose family holds C5) and one read of all their decisions.
    assert reads == 6 and few_reads <= reads
    nodes = {e["node"]["id"]: e["node"] for e in every["profiles"]["edges"]}
    assert len(nodes) == CUSTOMERS - 1
    for profile_id, node in nodes.items():  # as the services give them one profile at a time
        profile = await sqlite_store.get_profile(profile_id)
        assert profile is not None
        merges = await merging.merge_history(sqlite_store, profile_id)
        refusals = await merging.merge_refusals(sqlite_store, profile_id)
        decisions = await privacy.consent_history(sqlite_store, profile)
        assert node["mergeHistory"] == [{"id": m.id, "survivor": m.survivor_id, "merged": m.merged_ids} for m in merges]
        assert node["mergeRefusals"] == [{"id": r.id} for r in refusals]
        assert node["consentHistory"] == [
            {"purpose": d.purpose, "granted": d.granted, "messageId": d.message_id} for d in decisions
        ]
    assert len(nodes[ids["C4"]]["consentHistory"]) == 4  # C5's decisions too, newest first
    assert [len(nodes[ids[c]]["mergeRefusals"]) for c in ("C0", "C1", "C2")] == [1, 1, 0]
    assert [m["merged"] for m in nodes[ids["C4"]]["mergeHistory"]] == [[ids["C5"]]]


async def test_merge_candidates_profiles_cost_one_read_for_every_pair(
    traced: tuple[httpx.AsyncClient, list[str]],
) -> None:
    client, statements = traced
    upsert = """mutation($input: ProfileInput!) { upsertProfile(input: $input) { id } }"""
    people = [("Jean", "Dupont", "1980-03-12"), ("Lucia", "Romano", "1992-07-30"), ("Hugo", "Petit", "1975-11-02")]
    for first, last, born in people:
        for n, spelling in enumerate((last, last[:-1] + "d")):  # two records of one person, one misspelt
            fields = {"firstName": first, "lastName": spelling, "birthDate": born}
            email = {"type": "email", "value": f"{first}.{n}@example.com".lower()}
            variables = {"input": {"identifiers": [email], **fields}}
            assert (
                "errors" not in (await client.post("/graphql", json={"query": upsert, "variables": variables})).json()
            )
    await _reads(client, statements, "{ mergeCandidates(first: 20) { score } }")  # reads the match model, kept a minute
    bare, bare_reads = await _reads(client, statements, "{ mergeCandidates(first: 20) { score } }")
    paired, reads = await _reads(
        client, statements, "{ mergeCandidates(first: 20) { score a { firstName lastName } b { firstName lastName } } }"
    )
    assert len(paired["mergeCandidates"]) == len(people) and bare == {
        "mergeCandidates": [{"score": c["score"]} for c in paired["mergeCandidates"]]
    }
    assert reads == bare_reads + 1  # every a and b in one read
    for candidate in paired["mergeCandidates"]:
        assert candidate["a"]["firstName"] == candidate["b"]["firstName"]
        assert {candidate["a"]["lastName"][:-1], candidate["b"]["lastName"][:-1]} == {candidate["a"]["lastName"][:-1]}


async def test_batched_profiles_are_masked_for_each_caller_as_before(sqlite_store: SQLiteStore) -> None:
    """Loaders belong to one request: a caller without read:pii after one with it still gets masked names."""
    await ingest_events(sqlite_store, [e for n in range(3) for e in _customer(n)])
    services = Services(settings=Settings(seed_fixtures=False), store=sqlite_store, ingestion=IngestionPolicy())
    _, admin = await api_keys.create_key(sqlite_store, "admin", list(Scope))
    _, reader = await api_keys.create_key(sqlite_store, "reader", [Scope.READ_PROFILES])
    query = """{ segmentHistory(last: 10) { profile { firstName piiMasked } }
        segments { members(first: 10) { edges { node { firstName } } } } }"""
    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app=create_app(services=services)), base_url="http://t"
    ) as client:

        async def names(key: str) -> list[str]:
            headers = {"authorization": f"Bearer {key}"}
            body = (await client.post("/graphql", json={"query": query}, headers=headers)).json()
            assert "errors" not in body, body["errors"]
            history = [e["profile"]["firstName"] for e in body["data"]["segmentHistory"]]
            members = [e["node"]["firstName"] for s in body["data"]["segments"] for e in s["members"]["edges"]]
            return sorted(history) + sorted(members)

        variables = {"name": "Gold", "condition": GOLD}
        headers = {"authorization": f"Bearer {admin}"}
        await client.post("/graphql", json={"query": CREATE, "variables": variables}, headers=headers)
        assert await names(admin) == ["C0", "C2"] * 2
        assert await names(reader) == [mask_text("C0"), mask_text("C2")] * 2
        assert await names(admin) == ["C0", "C2"] * 2
