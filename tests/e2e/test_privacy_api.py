"""Consent, export and erasure over GraphQL."""

from __future__ import annotations

import json

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


PERSON = """mutation($email: String!, $phone: String!, $name: String!) {
  upsertProfile(input: {
    identifiers: [{type: "email", value: $email}, {type: "phone", value: $phone}], firstName: $name
  }) { id } }"""
MERGE = (
    """mutation($a: ID!, $b: ID!) { mergeProfiles(survivorId: $a, mergedIds: [$b], reason: "same") { merge { id } } }"""
)
UNMERGE = "mutation($id: ID!) { unmergeProfile(mergeId: $id) { merge { status } } }"
HISTORY = "query($id: ID!) { profile(id: $id) { mergeHistory { id status survivor merged } } }"


async def test_an_undone_merge_shows_each_person_only_their_own_data(gql: GraphQL) -> None:
    async def person(email: str, phone: str, name: str) -> str:
        return str((await gql(PERSON, {"email": email, "phone": phone, "name": name}))["data"]["upsertProfile"]["id"])

    pia = await person("pia.p@example.com", "+33611111111", "Pialotta")
    quentin = await person("quentin.q@example.com", "+33622222222", "Quentinus")
    merge_id = (await gql(MERGE, {"a": pia, "b": quentin}))["data"]["mergeProfiles"]["merge"]["id"]
    assert (await gql(UNMERGE, {"id": merge_id}))["data"]["unmergeProfile"]["merge"]["status"] == "UNMERGED"

    for own, other in ((pia, ("Quentinus", "quentin.q@", "2222222")), (quentin, ("Pialotta", "pia.p@", "1111111"))):
        exported = (await gql(EXPORT, {"id": own}))["data"]["exportProfile"]
        assert [m["_id"] for m in exported["merges"]] == [merge_id]
        assert not [value for value in other if value in json.dumps(exported)]

    await gql(DELETE, {"id": pia})
    (trail,) = (await gql(HISTORY, {"id": quentin}))["data"]["profile"]["mergeHistory"]
    assert trail["id"] == merge_id and trail["merged"] == [quentin] and trail["survivor"] not in (pia, quentin)
    exported = (await gql(EXPORT, {"id": quentin}))["data"]["exportProfile"]
    assert (
        "Quentinus" in json.dumps(exported)
        and "Pialotta" not in json.dumps(exported)
        and pia not in json.dumps(exported)
    )


async def test_consent_history_gives_the_newest_decisions_a_page_at_a_time(gql: GraphQL) -> None:
    """A consent banner sends a decision with every visit: 20,000 of them were a 2.3 MB list in every
    answer that named consentHistory, counted as 20 items by the cost limit. The newest 20 now, or `last`."""
    events = [
        {"messageId": f"c{n}", "type": "consent_update", "channel": "web", "timestamp": f"2026-05-01T10:{n:02d}:00Z",
         "identifiers": [{"type": "email", "value": "jo@example.com"}],
         "properties": {"purpose": "email_marketing", "granted": n % 2 == 0}}
        for n in range(30)
    ]  # fmt: skip
    ingest = "mutation($e: [EventInput!]!) { ingestEvents(events: $e) { accepted } }"
    assert (await gql(ingest, {"e": events}))["data"]["ingestEvents"]["accepted"] == 30
    history = """query($last: Int) { profileByIdentifier(type: "email", value: "jo@example.com") {
      consentHistory(last: $last) { messageId } } }"""

    async def ids(last: int | None) -> list[str]:
        body = await gql(history, {"last": last})
        return [d["messageId"] for d in body["data"]["profileByIdentifier"]["consentHistory"]]

    assert await ids(None) == [f"c{n}" for n in range(29, 9, -1)]
    assert await ids(3) == ["c29", "c28", "c27"]
    refused = await gql(history, {"last": 1000})
    assert refused["errors"][0]["extensions"] == {"code": "BAD_USER_INPUT", "field": "last"}
    profile_id = (await gql('{ profileByIdentifier(type: "email", value: "jo@example.com") { id } }'))["data"]
    exported = await gql(EXPORT, {"id": profile_id["profileByIdentifier"]["id"]})
    assert len(exported["data"]["exportProfile"]["consentHistory"]) == 30  # every one
