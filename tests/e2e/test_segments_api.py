"""Segments over GraphQL: define, list members, read history, refuse a bad tree with the place named."""

from __future__ import annotations

from app.bootstrap import Services
from app.domain import clock
from tests.e2e.conftest import GraphQL

UPSERT = """mutation($email: String!, $tier: String!) {
  upsertProfile(input: {identifiers: [{type: "email", value: $email}], traits: {tier: $tier}}) { id } }"""
CREATE = """mutation($condition: JSON!) {
  createSegment(input: {name: "Gold", traits: {tier: "string"}, condition: $condition}) {
    segment { id name count members(first: 1) { edges { node { id } } pageInfo { hasNextPage endCursor } } }
    entered members } }"""
NEXT = """query($id: ID!, $after: String) { segment(id: $id) { members(first: 1, after: $after) {
  edges { node { id } } pageInfo { hasNextPage } } } }"""
HISTORY = "query($id: ID!) { segmentHistory(segmentId: $id) { change cause profileId } }"
GOLD = {"compare": {"path": "traits.tier", "op": "eq", "value": "gold"}}


async def test_define_page_members_and_read_history(gql: GraphQL) -> None:
    ids = [
        (await gql(UPSERT, {"email": f"{name}@example.com", "tier": tier}))["data"]["upsertProfile"]["id"]
        for name, tier in (("ann", "gold"), ("bob", "gold"), ("cy", "silver"))
    ]
    created = (await gql(CREATE, {"condition": GOLD}))["data"]["createSegment"]
    assert (created["entered"], created["members"], created["segment"]["count"]) == (2, 2, 2)
    first_page = created["segment"]["members"]
    assert first_page["pageInfo"]["hasNextPage"] is True
    second = await gql(NEXT, {"id": created["segment"]["id"], "after": first_page["pageInfo"]["endCursor"]})
    page_two = second["data"]["segment"]["members"]
    members = {first_page["edges"][0]["node"]["id"], page_two["edges"][0]["node"]["id"]}
    assert members == set(ids[:2]) and page_two["pageInfo"]["hasNextPage"] is False

    await gql(UPSERT, {"email": "cy@example.com", "tier": "gold"})  # a change that makes a member
    history = (await gql(HISTORY, {"id": created["segment"]["id"]}))["data"]["segmentHistory"]
    assert history[0] == {"change": "ENTERED", "cause": "profile updated", "profileId": ids[2]}
    assert len(history) == 3


async def test_a_bad_tree_names_the_place(gql: GraphQL) -> None:
    bad = {"and": [GOLD, {"compare": {"path": "stats.ordres", "op": "gt", "value": 1}}]}
    body = await gql(CREATE, {"condition": bad})
    assert body["errors"][0]["extensions"] == {"code": "BAD_USER_INPUT", "field": "condition.and[1].compare.path"}
    assert "did you mean stats.orders" in body["errors"][0]["message"]
    assert (await gql("{ segments { id } }"))["data"]["segments"] == []


MAILABLE = """mutation {
  createSegment(input: {name: "Gold, mailable", traits: {tier: "string"}, purpose: "email_marketing",
    description: "for the newsletter", condition: {compare: {path: "traits.tier", op: "eq", value: "gold"}}}) {
    segment { id } members } }"""
UPDATE = """mutation($id: ID!, $input: SegmentInput!) { updateSegment(id: $id, input: $input) {
  segment { name purpose description traits } members } }"""
CONSENT = """mutation($id: ID!) {
  setConsent(profileId: $id, purpose: "email_marketing", granted: true, source: "test") { id } }"""


async def test_an_update_keeps_the_purpose_description_and_traits_it_leaves_out(gql: GraphQL) -> None:
    """An update with a name and a condition, as the README shows, dropped the consent purpose: the
    segment then held everyone who matched, whether or not they had granted it."""
    ids = [
        (await gql(UPSERT, {"email": f"{name}@example.com", "tier": "gold"}))["data"]["upsertProfile"]["id"]
        for name in ("ann", "bob")
    ]
    assert "errors" not in await gql(CONSENT, {"id": ids[0]})
    created = (await gql(MAILABLE))["data"]["createSegment"]
    assert created["members"] == 1  # only ann granted email_marketing
    renamed = await gql(UPDATE, {"id": created["segment"]["id"], "input": {"name": "Gold (mail)", "condition": GOLD}})
    assert renamed["data"]["updateSegment"] == {
        "segment": {"name": "Gold (mail)", "purpose": "email_marketing", "description": "for the newsletter",
                    "traits": {"tier": "string"}},
        "members": 1,
    }, renamed  # fmt: skip
    cleared = await gql(
        UPDATE,
        {
            "id": created["segment"]["id"],
            "input": {"name": "Gold", "condition": GOLD, "purpose": None, "description": None},
        },
    )
    assert cleared["data"]["updateSegment"]["segment"]["purpose"] is None  # given as null: cleared
    assert cleared["data"]["updateSegment"]["members"] == 2


async def test_segment_history_pages_back_with_before(gql: GraphQL) -> None:
    """README: a subscriber cut off after many changes catches up with segmentHistory. `last` stops at
    500, and there was no way past it; `before` (the last id read) gives the changes before it."""
    for n in range(5):
        await gql(UPSERT, {"email": f"c{n}@example.com", "tier": "gold"})
    segment_id = (await gql(CREATE, {"condition": GOLD}))["data"]["createSegment"]["segment"]["id"]
    page = "query($id: ID!, $before: ID) { segmentHistory(segmentId: $id, last: 2, before: $before) { id profileId } }"
    whole = (await gql(HISTORY_IDS, {"id": segment_id}))["data"]["segmentHistory"]
    read: list[dict[str, str]] = []
    before = None
    while batch := (await gql(page, {"id": segment_id, "before": before}))["data"]["segmentHistory"]:
        read += batch
        before = batch[-1]["id"]
    assert read == whole and len(whole) == 5
    unknown = await gql(page, {"id": segment_id, "before": "evt_nope"})
    assert unknown["errors"][0]["extensions"] == {"code": "BAD_USER_INPUT", "field": "before"}


HISTORY_IDS = "query($id: ID!) { segmentHistory(segmentId: $id) { id profileId } }"


async def test_a_profile_an_event_makes_enters_a_segment_of_what_it_lacks(gql: GraphQL) -> None:
    """Found by an audit of consent: a profile made by an event was evaluated only against the segments
    of the paths its event touched (stats, identifiers, history), so one of people without an SMS
    consent, or without a first name, never took it in until the segment was redefined."""
    create = 'mutation($c: JSON!) { createSegment(input: {name: "To ask", condition: $c}) { segment { id } } }'
    lacking = [
        {"not": {"consentGranted": {"purpose": "sms_marketing"}}},
        {"compare": {"path": "firstName", "op": "exists", "value": False}},
    ]
    ids = [(await gql(create, {"c": condition}))["data"]["createSegment"]["segment"]["id"] for condition in lacking]
    event = {"messageId": "m1", "type": "page_view", "channel": "web", "timestamp": "2026-12-01T10:00:00Z"}
    event |= {"identifiers": [{"type": "email", "value": "new@example.com"}], "properties": {"url": "/"}}
    ingest = "mutation($e: [EventInput!]!) { ingestEvents(events: $e) { results { profileId } } }"
    profile_id = (await gql(ingest, {"e": [event]}))["data"]["ingestEvents"]["results"][0]["profileId"]
    found = await gql("query($id: ID!) { profile(id: $id) { segments } }", {"id": profile_id})
    assert sorted(found["data"]["profile"]["segments"]) == sorted(ids), found


async def test_a_write_answers_with_the_segments_its_change_led_to(gql: GraphQL) -> None:
    """Each mutation answers after segment upkeep: the profile it returns lists the segments the
    change made it enter and leave, as a read right after it does."""
    gold = (await gql(CREATE, {"condition": GOLD}))["data"]["createSegment"]["segment"]["id"]
    mailed = await gql(
        """mutation($condition: JSON!) { createSegment(input: {name: "Gold mailing", purpose: "email_marketing",
        traits: {tier: "string"}, condition: $condition}) { segment { id } } }""",
        {"condition": GOLD},
    )
    mailing = mailed["data"]["createSegment"]["segment"]["id"]

    upserted = await gql(UPSERT.replace("{ id }", "{ id segments }"), {"email": "ann@example.com", "tier": "gold"})
    ann = upserted["data"]["upsertProfile"]
    assert ann["segments"] == [gold]

    consent = """mutation($id: ID!, $granted: Boolean!) { setConsent(profileId: $id, purpose: "email_marketing",
      granted: $granted, source: "preference centre") { segments } }"""
    granted = (await gql(consent, {"id": ann["id"], "granted": True}))["data"]["setConsent"]
    assert sorted(granted["segments"]) == sorted([gold, mailing])
    refused = (await gql(consent, {"id": ann["id"], "granted": False}))["data"]["setConsent"]
    assert refused["segments"] == [gold]

    bob = await gql(UPSERT.replace("{ id }", "{ id segments }"), {"email": "bob@example.com", "tier": "silver"})
    bob_id = bob["data"]["upsertProfile"]["id"]
    merged = await gql(
        """mutation($survivor: ID!, $merged: ID!) { mergeProfiles(survivorId: $survivor, mergedIds: [$merged],
        reason: "same person") { merge { id } profile { id segments traits } } }""",
        {"survivor": ann["id"], "merged": bob_id},
    )
    survivor = merged["data"]["mergeProfiles"]["profile"]
    read = (await gql("query($id: ID!) { profile(id: $id) { segments } }", {"id": ann["id"]}))["data"]["profile"]
    assert survivor["segments"] == read["segments"]

    undone = await gql(
        "mutation($id: ID!) { unmergeProfile(mergeId: $id) { profiles { id segments } } }",
        {"id": merged["data"]["mergeProfiles"]["merge"]["id"]},
    )
    answered = {p["id"]: p["segments"] for p in undone["data"]["unmergeProfile"]["profiles"]}
    assert answered == {ann["id"]: [gold], bob_id: []}


async def test_the_changes_of_a_segment_being_deleted_answer_no_segment(gql: GraphQL, services: Services) -> None:
    """A deletion's exits answered the segment for some and null for others, as the timing fell
    (the segment was still stored while its exits were written); each answers null now, and the
    segment is named by segmentId."""
    await gql(UPSERT, {"email": "ann@example.com", "tier": "gold"})
    gold = (await gql(CREATE, {"condition": GOLD}))["data"]["createSegment"]["segment"]["id"]
    history = "query($id: ID!) { segmentHistory(segmentId: $id) { segmentId segment { name } } }"
    assert (await gql(history, {"id": gold}))["data"]["segmentHistory"] == [
        {"segmentId": gold, "segment": {"name": "Gold"}}
    ]

    segment = await services.store.get_segment(gold)
    assert segment is not None
    await services.store.save_segment(segment.model_copy(update={"deleting_since": clock.now()}))  # as _delete does
    assert (await gql(history, {"id": gold}))["data"]["segmentHistory"] == [{"segmentId": gold, "segment": None}]
