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
HISTORY = """
query($id: ID!) { profile(id: $id) { id mergeHistory { id status survivor merged } mergeRefusals { reason } } }
"""


async def _profile(gql: GraphQL, value: str, **fields: str) -> str:
    body = await gql(UPSERT, {"input": {"identifiers": [{"type": "email", "value": value}], **fields}})
    return str(body["data"]["upsertProfile"]["id"])


async def test_merge_follow_audit_and_undo(gql: GraphQL) -> None:
    a = await _profile(gql, "emma@example.com", firstName="Emma")
    b = await _profile(gql, "e.martin@example.com", lastName="Martin")
    merged = await gql(MERGE, {"survivor": a, "merged": [b], "reason": "same person, checked by phone"})
    result = merged["data"]["mergeProfiles"]
    assert result["merge"]["survivor"] == a and result["merge"]["merged"] == [b]
    assert (result["merge"]["actor"], result["merge"]["automatic"], result["merge"]["status"]) == (
        "api",
        False,
        "MERGED",
    )
    assert (result["profile"]["firstName"], result["profile"]["lastName"]) == ("Emma", "Martin")

    followed = await gql(HISTORY, {"id": b})
    assert followed["data"]["profile"]["id"] == a
    assert [m["id"] for m in followed["data"]["profile"]["mergeHistory"]] == [result["merge"]["id"]]

    undone = await gql(UNMERGE, {"id": result["merge"]["id"]})
    back = undone["data"]["unmergeProfile"]
    assert back["merge"] == {"id": result["merge"]["id"], "status": "UNMERGED", "unmergedBy": "api"}
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
