"""Merges over GraphQL: merge, follow, audit, undo."""

from __future__ import annotations

from tests.e2e.conftest import GraphQL

UPSERT = """mutation($input: ProfileInput!) { upsertProfile(input: $input) { id } }"""
MERGE = """
mutation($survivor: ID!, $merged: [ID!]!, $reason: String!) {
  mergeProfiles(survivorId: $survivor, mergedIds: $merged, reason: $reason) {
    merge { id survivor merged at reason actor automatic status }
    profile { id firstName lastName identifiers { type value } }
  }
}
"""
UNMERGE = """
mutation($id: ID!) {
  unmergeProfile(mergeId: $id) { merge { id status unmergedBy } profiles { id firstName identifiers { value } } }
}
"""
INGEST = "mutation($events: [EventInput!]!) { ingestEvents(events: $events) { results { status reason } } }"
AUDIT = "query($id: ID!) { profile(id: $id) { mergeHistory { survivor merged actor automatic } } }"
HISTORY = """
query($id: ID!) { profile(id: $id) { id mergeHistory { id status survivor merged } mergeRefusals { reason } } }
"""


async def _profile(gql: GraphQL, value: str, **fields: object) -> str:
    body = await gql(UPSERT, {"input": {"identifiers": [{"type": "email", "value": value}], **fields}})
    return str(body["data"]["upsertProfile"]["id"])


async def test_merge_follow_audit_and_undo(gql: GraphQL) -> None:
    a = await _profile(gql, "emma@example.com", firstName="Emma")
    b = await _profile(gql, "e.martin@example.com", lastName="Martin")
    merged = await gql(MERGE, {"survivor": a, "merged": [b], "reason": "same person, checked by phone"})
    result = merged["data"]["mergeProfiles"]
    assert result["merge"]["survivor"] == a and result["merge"]["merged"] == [b]
    assert (result["merge"]["actor"], result["merge"]["automatic"], result["merge"]["status"]) == (
        "key:tests",
        False,
        "MERGED",
    )
    assert (result["profile"]["firstName"], result["profile"]["lastName"]) == ("Emma", "Martin")

    followed = await gql(HISTORY, {"id": b})
    assert followed["data"]["profile"]["id"] == a
    assert [m["id"] for m in followed["data"]["profile"]["mergeHistory"]] == [result["merge"]["id"]]

    undone = await gql(UNMERGE, {"id": result["merge"]["id"]})
    back = undone["data"]["unmergeProfile"]
    assert back["merge"] == {"id": result["merge"]["id"], "status": "UNMERGED", "unmergedBy": "key:tests"}
    assert [(p["id"], p["firstName"]) for p in back["profiles"]] == [(a, "Emma"), (b, None)]
    assert (await gql(HISTORY, {"id": b}))["data"]["profile"]["id"] == b


async def test_merge_errors_carry_codes_and_fields(gql: GraphQL) -> None:
    a = await _profile(gql, "emma@example.com")
    itself = await gql(MERGE, {"survivor": a, "merged": [a], "reason": "x"})
    assert itself["errors"][0]["extensions"] == {"code": "BAD_USER_INPUT", "field": "mergedIds[0]"}
    unknown = await gql(MERGE, {"survivor": a, "merged": ["nope"], "reason": "x"})
    assert unknown["errors"][0]["extensions"] == {"code": "NOT_FOUND", "field": "mergedIds[0]"}
    no_reason = await gql(MERGE, {"survivor": a, "merged": ["nope"], "reason": "  "})
    assert no_reason["errors"][0]["extensions"] == {"code": "BAD_USER_INPUT", "field": "reason"}
    missing = await gql(UNMERGE, {"id": "mrg_missing"})
    assert missing["errors"][0]["extensions"] == {"code": "NOT_FOUND", "field": "mergeId"}


CANDIDATES = """
query($id: ID, $min: Float, $first: Int) {
  mergeCandidates(profileId: $id, minScore: $min, first: $first) {
    score a { id firstName lastName } b { id firstName lastName } reasons { field method similarity }
  }
}
"""


LINKED = """
query($first: Int) { mergeCandidates(first: $first) { score viaId via { id } reasons { field method } } }
"""


async def test_merge_candidates_for_one_profile_and_for_the_store(gql: GraphQL) -> None:
    person = {"birthDate": "1980-03-12", "addresses": [{"street": "12 rue Victor Hugo", "postcode": "69002"}]}
    jean = await _profile(gql, "jean.dupont@gmail.com", firstName="Jean", lastName="Dupont", **person)
    typo = await _profile(gql, "jd@orange.fr", firstName="Jean", lastName="Dupond", **person)
    await _profile(gql, "lucia@libero.it", firstName="Lucia", lastName="Romano", birthDate="1992-07-30")

    one = (await gql(CANDIDATES, {"id": jean}))["data"]["mergeCandidates"]
    assert [(c["a"]["id"], c["b"]["id"]) for c in one] == [(jean, typo)]
    assert one[0]["b"]["lastName"] == "Dupond" and 0.9 <= one[0]["score"] <= 1
    assert {"lastName", "birthDate"} <= {r["field"] for r in one[0]["reasons"]}

    store_wide = (await gql(CANDIDATES, {}))["data"]["mergeCandidates"]
    assert [{c["a"]["id"], c["b"]["id"]} for c in store_wide] == [{jean, typo}]

    # A third record holding both mailboxes (typed otherwise) links two alike only by name: `via` names it.
    await _profile(gql, "lucia.romano@gmail.com", firstName="Lucia", lastName="Romano")
    await _profile(gql, "lromano+shop@libero.it", firstName="Lucia", lastName="Romano")
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
    linked = (await gql(LINKED, {"first": 10}))["data"]["mergeCandidates"]
    card_id = card["data"]["upsertProfile"]["id"]
    assert [c["viaId"] for c in linked].count(card_id) == 1
    assert [c["via"]["id"] for c in linked if c["via"]] == [card_id]

    bad = await gql(CANDIDATES, {"id": jean, "min": 2.0})
    assert bad["data"] is None
    assert bad["errors"][0]["extensions"] == {"code": "BAD_USER_INPUT", "field": "minScore"}
    missing = await gql(CANDIDATES, {"id": "nope"})
    assert missing["errors"][0]["extensions"] == {"code": "NOT_FOUND", "field": "profileId"}


LINE2 = """
query($id: ID!) {
  profile(id: $id) { addresses { street line2 city } }
  mergeCandidates(profileId: $id) { b { id } reasons { field method similarity } }
}
"""


async def test_a_second_street_line_is_kept_and_compared(gql: GraphQL) -> None:
    home = {"street": "4 Park Road", "line2": "Flat 2, Rose Court", "postcode": "SW11 4NP", "city": "London"}
    person = {"firstName": "Amelia", "lastName": "Hughes", "birthDate": "1984-06-02"}
    amelia = await _profile(gql, "amelia@example.com", **person, addresses=[home])
    again = await _profile(gql, "a.hughes@example.org", **person, addresses=[home | {"line2": "flt 2 rose court"}])

    found = (await gql(LINE2, {"id": amelia}))["data"]
    assert found["profile"]["addresses"] == [{"street": "4 Park Road", "line2": "Flat 2, Rose Court", "city": "London"}]
    [candidate] = found["mergeCandidates"]
    reasons = {r["field"]: r for r in candidate["reasons"]}
    assert candidate["b"]["id"] == again
    assert reasons["address.line2"]["similarity"] == 1.0 and reasons["address"]["method"] == "sameAddress"


async def test_a_merge_a_keys_write_makes_names_the_key(gql: GraphQL) -> None:
    """Found by an audit of what a write:events key can do: the merges its events (or upserts) made
    were recorded as made by `system`, so a steward could not find and undo what a rogue source merged."""
    a = await _profile(gql, "emma@example.com", firstName="Emma")
    b = await _profile(gql, "emma.work@example.com")
    c = await _profile(gql, "third@example.com")
    emails = [{"type": "email", "value": value} for value in ("emma@example.com", "emma.work@example.com")]
    linking = {"messageId": "link-1", "type": "page_view", "channel": "web", "identifiers": emails}
    linking |= {"timestamp": "2026-11-01T10:00:00Z", "properties": {"url": "/"}}
    ingested = await gql(INGEST, {"events": [linking]})
    assert ingested["data"]["ingestEvents"]["results"][0]["status"] == "ACCEPTED", ingested
    third = [{"type": "email", "value": value} for value in ("emma@example.com", "third@example.com")]
    assert "errors" not in await gql(UPSERT, {"input": {"identifiers": third}})

    merges = (await gql(AUDIT, {"id": a}))["data"]["profile"]["mergeHistory"]  # followed to the survivor
    assert {m["survivor"] for m in merges} | {m["merged"][0] for m in merges} == {a, b, c}
    assert [(m["actor"], m["automatic"]) for m in merges] == [("key:tests", True)] * 2
