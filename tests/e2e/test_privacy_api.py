"""Consent, export and erasure over GraphQL."""

from __future__ import annotations

from tests.e2e.conftest import GraphQL

UPSERT = """mutation { upsertProfile(input: {identifiers: [{type: "email", value: "jo@example.com"}], firstName: "Jo"})
  { id } }"""
CONSENT = """mutation($id: ID!, $purpose: String!) {
  setConsent(profileId: $id, purpose: $purpose, granted: false, source: "preference centre") {
    consents { purpose granted source } consentHistory { purpose granted source at } } }"""
EXPORT = "query($id: ID!) { exportProfile(id: $id) }"
DELETE = "mutation($id: ID!) { deleteProfile(id: $id) { id actor profiles identifiers interactions } }"


async def test_consent_export_and_erasure(gql: GraphQL) -> None:
    profile_id = (await gql(UPSERT))["data"]["upsertProfile"]["id"]
    consented = (await gql(CONSENT, {"id": profile_id, "purpose": "email_marketing"}))["data"]["setConsent"]
    assert consented["consents"] == [{"purpose": "email_marketing", "granted": False, "source": "preference centre"}]
    assert [d["purpose"] for d in consented["consentHistory"]] == ["email_marketing"]
    unknown = await gql(CONSENT, {"id": profile_id, "purpose": "ads"})
    assert unknown["errors"][0]["extensions"] == {"code": "BAD_USER_INPUT", "field": "purpose"}

    exported = (await gql(EXPORT, {"id": profile_id}))["data"]["exportProfile"]
    assert exported["profile"]["firstName"] == "Jo" and exported["consentHistory"][0]["granted"] is False

    erased = (await gql(DELETE, {"id": profile_id}))["data"]["deleteProfile"]
    assert (erased["profiles"], erased["identifiers"], erased["actor"]) == (1, 1, "key:tests")
    assert (await gql(EXPORT, {"id": profile_id}))["errors"][0]["extensions"]["code"] == "NOT_FOUND"
    again = await gql(UPSERT)
    assert again["errors"][0]["extensions"] == {"code": "BAD_USER_INPUT", "field": "identifiers"}
