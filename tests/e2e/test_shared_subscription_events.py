"""One execution of a membership change for the subscribers who asked the same thing
(graphql_schema/shared_events.py), over real WebSockets: many subscribers with one document and key
cost one profile read, yet each gets the answer its own key and document entitle it to; and one
encoding of that answer (graphql_schema/broadcast.py): the same text to each, bar its id."""

from __future__ import annotations

import asyncio
import json
from collections import Counter
from collections.abc import AsyncIterator
from typing import Any

import httpx
import orjson
import pytest
from websockets.asyncio.client import ClientConnection, connect
from websockets.typing import Subprotocol

from app.bootstrap import Services
from app.services import api_keys
from app.services.ingestion import IngestionPolicy
from app.settings import Settings
from app.store.sqlite.store import SQLiteStore
from tests.server_process import serving

WATCH = """subscription($segment: ID) {
  segmentMembershipChanged(segmentId: $segment) { change profile { id piiMasked identifiers { value } } } }"""
WATCH_NAMES = """subscription($segment: ID) {
  segmentMembershipChanged(segmentId: $segment) { change profile { firstName } } }"""
CREATE = """mutation { createSegment(input: {name: "Buyers",
  condition: {compare: {path: "stats.orders", op: "gte", value: 1}}}) { segment { id } } }"""
ORDER = """mutation($id: String!, $email: String!) { ingestEvents(events: [{messageId: $id, type: "order_completed",
  channel: "web", timestamp: "2026-11-01T10:00:00Z", identifiers: [{type: "email", value: $email}],
  properties: {orderId: $id, total: 10}}]) { accepted } }"""
SUBSCRIBERS = 20


WATCH_SEGMENT = """subscription($segment: ID) {
  segmentMembershipChanged(segmentId: $segment) { change segment { name } } }"""


class CountedReads:
    """The real store, counting profile reads by id (what a `profile` selection costs); segment reads
    (only a subscription's `segment` field asks for them) fail while `segments_fail` is set."""

    def __init__(self, inner: SQLiteStore) -> None:
        self._inner = inner
        self.reads: Counter[str] = Counter()
        self.segments_fail = False

    async def get_profile(self, profile_id: str) -> Any:
        self.reads[profile_id] += 1
        return await self._inner.get_profile(profile_id)

    async def get_profiles(self, profile_ids: Any) -> Any:  # what a request's loader asks (graphql_schema/loaders.py)
        self.reads.update(set(profile_ids))
        return await self._inner.get_profiles(profile_ids)

    async def get_segments(self, segment_ids: Any) -> Any:
        if self.segments_fail:
            raise RuntimeError("disk on fire")
        return await self._inner.get_segments(segment_ids)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._inner, name)


@pytest.fixture
async def served(sqlite_store: SQLiteStore) -> AsyncIterator[tuple[str, CountedReads, dict[str, str]]]:
    store = CountedReads(sqlite_store)
    keys = {}
    for name, scopes in (("full", ["read:profiles", "read:pii", "subscribe", "admin:segments", "write:events"]),
                         ("masked", ["read:profiles", "subscribe"])):  # fmt: skip
        keys[name] = (await api_keys.create_key(sqlite_store, name, scopes))[1]
    services = Services(settings=Settings(seed_fixtures=False), store=store, ingestion=IngestionPolicy())  # type: ignore[arg-type]
    async with serving(services) as address:
        yield address, store, keys


async def _subscribe(
    address: str, token: str, query: str, segment_id: str, operation_id: str = "1"
) -> ClientConnection:
    ws = await connect(f"ws://{address}/graphql", subprotocols=[Subprotocol("graphql-transport-ws")])
    await ws.send(json.dumps({"type": "connection_init", "payload": {"Authorization": f"Bearer {token}"}}))
    assert json.loads(await ws.recv())["type"] == "connection_ack"
    payload = {"query": query, "variables": {"segment": segment_id}}
    await ws.send(json.dumps({"id": operation_id, "type": "subscribe", "payload": payload}))
    return ws


def _client(address: str, token: str) -> httpx.AsyncClient:
    return httpx.AsyncClient(base_url=f"http://{address}", headers={"authorization": f"Bearer {token}"})


async def _create_segment(http: httpx.AsyncClient) -> str:
    segment_id: str = (await http.post("/graphql", json={"query": CREATE})).json()["data"]["createSegment"]["segment"][
        "id"
    ]
    return segment_id


async def _order(http: httpx.AsyncClient, message_id: str, email: str) -> int:
    body = (await http.post("/graphql", json={"query": ORDER, "variables": {"id": message_id, "email": email}})).json()
    accepted: int = body["data"]["ingestEvents"]["accepted"]
    return accepted


async def _frame(ws: ClientConnection) -> str:
    """A `next` message as the server wrote it."""
    frame = await asyncio.wait_for(ws.recv(), 5)
    assert isinstance(frame, str) and json.loads(frame)["type"] == "next", frame
    return frame


async def _messages_sent(http: httpx.AsyncClient) -> Counter[str]:
    """cdp_subscription_messages_total by how each payload's JSON was had (encoded, reused, broadcast)."""
    found: Counter[str] = Counter()
    for line in (await http.get("/metrics")).text.splitlines():
        if line.startswith("cdp_subscription_messages_total{"):
            how = line.split('how="', 1)[1].split('"', 1)[0]
            found[how] = int(float(line.rsplit(" ", 1)[1]))
    return found


async def _next(ws: ClientConnection) -> dict[str, Any]:
    message = json.loads(await asyncio.wait_for(ws.recv(), 5))
    assert message["type"] == "next", message
    data: dict[str, Any] = message["payload"]["data"]["segmentMembershipChanged"]
    return data


async def test_subscribers_asking_the_same_share_one_execution_and_each_key_sees_what_it_may(
    served: tuple[str, CountedReads, dict[str, str]],
) -> None:
    address, store, keys = served
    async with _client(address, keys["full"]) as http:
        segment_id = await _create_segment(http)
        # What the server itself reads of a profile entering the segment, with nobody subscribed.
        assert await _order(http, "o-0", "zoe@example.com") == 1
        await asyncio.sleep(0.2)
        own_reads = sum(store.reads.values())
        assert own_reads <= 2
        same = [await _subscribe(address, keys["full"], WATCH, segment_id) for _ in range(SUBSCRIBERS)]
        masked = await _subscribe(address, keys["masked"], WATCH, segment_id)
        names = await _subscribe(address, keys["full"], WATCH_NAMES, segment_id)
        try:
            await asyncio.sleep(0.3)  # every subscription is registered before the change is made
            assert await _order(http, "o-1", "nora@example.com") == 1
            answers = [await _next(ws) for ws in same]
            seen_masked, seen_names = await _next(masked), await _next(names)
        finally:
            await asyncio.gather(*(ws.close() for ws in [*same, masked, names]))

    [profile_id] = {answer["profile"]["id"] for answer in answers}
    expected = {"id": profile_id, "piiMasked": False, "identifiers": [{"value": "nora@example.com"}]}
    assert all(answer == {"change": "ENTERED", "profile": expected} for answer in answers)
    # Another key: its own execution, with personal data masked as that key requires.
    assert seen_masked["profile"]["id"] == profile_id and seen_masked["profile"]["piiMasked"] is True
    assert "nora@" not in json.dumps(seen_masked)
    # Another document: its own selection.
    assert seen_names == {"change": "ENTERED", "profile": {"firstName": None}}
    # Twenty-two subscribers, three distinct (document, key) pairs, three executions: one read of the
    # profile, not 22 nor 3 (each key's masking applies to what was read).
    assert store.reads[profile_id] == own_reads + 1


async def test_each_group_is_encoded_once_and_its_subscribers_get_the_same_text_but_their_ids(
    served: tuple[str, CountedReads, dict[str, str]],
) -> None:
    address, _, keys = served
    async with _client(address, keys["full"]) as http:
        segment_id = await _create_segment(http)
        same = [await _subscribe(address, keys["full"], WATCH, segment_id, f"op-{n}") for n in range(SUBSCRIBERS)]
        masked = [await _subscribe(address, keys["masked"], WATCH, segment_id, f"masked-{n}") for n in range(2)]
        names = await _subscribe(address, keys["full"], WATCH_NAMES, segment_id, "names")
        try:
            await asyncio.sleep(0.3)  # every subscription is registered before the change is made
            before = await _messages_sent(http)
            assert await _order(http, "o-1", "nora@example.com") == 1
            frames = [await _frame(ws) for ws in same]
            masked_frames = [await _frame(ws) for ws in masked]
            names_frame = await _frame(names)
            after = await _messages_sent(http)
        finally:
            await asyncio.gather(*(ws.close() for ws in [*same, *masked, names]))

    # The JSON Strawberry's handler writes (keys id, type, payload; orjson's spelling), each with its own id…
    for n, frame in enumerate(frames):
        message = json.loads(frame)
        assert message["id"] == f"op-{n}"
        assert frame == orjson.dumps({"id": message["id"], "type": "next", "payload": message["payload"]}).decode()
    # …and otherwise the same text for the whole group.
    assert len({frame.replace(f'"op-{n}"', '"?"', 1) for n, frame in enumerate(frames)}) == 1
    assert len({frame.replace(f'"masked-{n}"', '"?"', 1) for n, frame in enumerate(masked_frames)}) == 1
    # Another key, another document: answers of their own.
    full_payload = json.loads(frames[0])["payload"]
    masked_payload = json.loads(masked_frames[0])["payload"]
    assert full_payload["data"]["segmentMembershipChanged"]["profile"]["identifiers"] == [{"value": "nora@example.com"}]
    assert masked_payload["data"]["segmentMembershipChanged"]["profile"]["piiMasked"] is True
    assert "nora@" not in masked_frames[0]
    assert json.loads(names_frame)["payload"] == {"data": {"segmentMembershipChanged": {
        "change": "ENTERED", "profile": {"firstName": None}}}}  # fmt: skip
    # Three groups, three encodings; every other subscriber was written one of them, straight from its
    # group's answer (its first subscriber's message was written before the others looked).
    assert after["encoded"] - before["encoded"] == 3
    assert after["broadcast"] - before["broadcast"] == SUBSCRIBERS + 2 + 1 - 3
    assert after["reused"] == before["reused"]


async def test_an_answer_with_errors_is_masked_for_each_subscriber_with_an_error_id_of_its_own(
    served: tuple[str, CountedReads, dict[str, str]],
) -> None:
    address, store, keys = served
    async with _client(address, keys["full"]) as http:
        segment_id = await _create_segment(http)
        sockets = [await _subscribe(address, keys["full"], WATCH_SEGMENT, segment_id, f"op-{n}") for n in range(3)]
        try:
            await asyncio.sleep(0.3)
            before = await _messages_sent(http)
            store.segments_fail = True
            assert await _order(http, "o-1", "nora@example.com") == 1
            answers = [json.loads(await _frame(ws))["payload"] for ws in sockets]
            after = await _messages_sent(http)
        finally:
            await asyncio.gather(*(ws.close() for ws in sockets))

    for answer in answers:
        assert answer["data"] == {"segmentMembershipChanged": {"change": "ENTERED", "segment": None}}
        [error] = answer["errors"]
        assert error["message"] == "Internal server error" and "disk on fire" not in json.dumps(answer)
    # One failed execution, yet each subscriber's error has an id of its own (each finds its own log line).
    assert len({answer["errors"][0]["extensions"]["errorId"] for answer in answers}) == 3
    assert after["encoded"] - before["encoded"] == 3
    assert (after["reused"], after["broadcast"]) == (before["reused"], before["broadcast"])
