"""segmentMembershipChanged over a real WebSocket (graphql-transport-ws, the `websockets` client)
against a real server process: a change made over HTTP reaches the subscriber; a key without the
`subscribe` scope is refused."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import httpx
from websockets.asyncio.client import ClientConnection, connect
from websockets.typing import Subprotocol

from tests.server_process import ROOT, running_server

SUBSCRIBE = """subscription($segment: ID) {
  segmentMembershipChanged(segmentId: $segment) { change cause segmentId profile { id firstName } segment { name } }
}"""
CREATE = """mutation { createSegment(input: {name: "Buyers",
  condition: {compare: {path: "stats.orders", op: "gte", value: 1}}}) { segment { id } members } }"""
ORDER = """mutation { ingestEvents(events: [{messageId: "o-1", type: "order_completed", channel: "web",
  timestamp: "2026-11-01T10:00:00Z", identifiers: [{type: "email", value: "nora@example.com"}],
  properties: {orderId: "A-1", total: 10}}]) { accepted } }"""


async def _open(url: str, token: str) -> ClientConnection:
    ws = await connect(url, subprotocols=[Subprotocol("graphql-transport-ws")])
    await ws.send(json.dumps({"type": "connection_init", "payload": {"Authorization": f"Bearer {token}"}}))
    assert json.loads(await ws.recv())["type"] == "connection_ack"
    return ws


def _post(url: str, token: str, query: str, variables: dict[str, Any] | None = None) -> dict[str, Any]:
    response = httpx.post(
        f"{url}/graphql",
        json={"query": query, "variables": variables or {}},
        headers={"authorization": f"Bearer {token}"},
        timeout=10,
    )
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


async def test_frames_are_compressed_when_the_server_is_told_to_and_the_client_offers_it(tmp_path: Path) -> None:
    env = {"CDP_DATABASE_URL": f"sqlite:///{tmp_path}/cdp.sqlite3", "CDP_SEED_FIXTURES": "false"}
    with running_server({**env, "CDP_WS_COMPRESSION": "true"}) as url:
        token = (tmp_path / "dev-api-key").read_text().strip()
        ws = await _open(url.replace("http", "ws") + "/graphql", token)  # the client offers permessage-deflate
        try:
            assert ws.response is not None
            assert ws.response.headers["sec-websocket-extensions"].startswith("permessage-deflate")
        finally:
            await ws.close()


async def test_a_membership_change_reaches_the_subscriber(tmp_path: Path) -> None:
    env = {"CDP_DATABASE_URL": f"sqlite:///{tmp_path}/cdp.sqlite3", "CDP_SEED_FIXTURES": "false"}
    with running_server(env) as url:
        token = (tmp_path / "dev-api-key").read_text().strip()
        segment_id = _post(url, token, CREATE)["data"]["createSegment"]["segment"]["id"]
        ws = await _open(url.replace("http", "ws") + "/graphql", token)
        try:
            # Frames uncompressed by default (CDP_WS_COMPRESSION): the same bytes to every subscriber.
            assert ws.response is not None and "sec-websocket-extensions" not in ws.response.headers
            payload = {"query": SUBSCRIBE, "variables": {"segment": segment_id}}
            await ws.send(json.dumps({"id": "1", "type": "subscribe", "payload": payload}))
            await asyncio.sleep(0.2)  # the subscription is registered before the change is made
            assert _post(url, token, ORDER)["data"]["ingestEvents"]["accepted"] == 1
            message = json.loads(await asyncio.wait_for(ws.recv(), 5))
            assert message["type"] == "next", message
            change = message["payload"]["data"]["segmentMembershipChanged"]
            assert (change["change"], change["cause"], change["segmentId"]) == ("ENTERED", "event", segment_id)
            assert change["segment"] == {"name": "Buyers"} and change["profile"]["id"]
        finally:
            await ws.close()

        # A key without the subscribe scope may connect (it could query) but not subscribe.
        reader = _keys_create(tmp_path)
        ws = await _open(url.replace("http", "ws") + "/graphql", reader)
        try:
            await ws.send(json.dumps({"id": "2", "type": "subscribe", "payload": {"query": SUBSCRIBE}}))
            refused = json.loads(await asyncio.wait_for(ws.recv(), 5))
            assert refused["type"] in ("error", "next"), refused
            errors = refused["payload"] if refused["type"] == "error" else refused["payload"]["errors"]
            assert errors[0]["extensions"]["code"] == "FORBIDDEN"
        finally:
            await ws.close()


async def test_a_subscription_to_a_segment_or_profile_that_does_not_exist_is_an_error(tmp_path: Path) -> None:
    """A mistyped id is said at once (NOT_FOUND, naming the argument), not a subscription that never
    hears anything; the socket stays open for the client's next subscription."""
    env = {"CDP_DATABASE_URL": f"sqlite:///{tmp_path}/cdp.sqlite3", "CDP_SEED_FIXTURES": "false"}
    by_profile = "subscription($p: ID) { segmentMembershipChanged(profileId: $p) { change } }"
    with running_server(env) as url:
        token = (tmp_path / "dev-api-key").read_text().strip()
        segment_id = _post(url, token, CREATE)["data"]["createSegment"]["segment"]["id"]
        ws = await _open(url.replace("http", "ws") + "/graphql", token)
        try:
            asked = [
                ("1", {"query": SUBSCRIBE, "variables": {"segment": "no-such-segment"}}),
                ("2", {"query": by_profile, "variables": {"p": "no-such-profile"}}),
            ]
            for number, payload in asked:
                await ws.send(json.dumps({"id": number, "type": "subscribe", "payload": payload}))
            # As graphql-ws says a resolver's error: a result with errors, then complete.
            errors, completed = {}, set()
            while completed != {"1", "2"}:
                answer = json.loads(await asyncio.wait_for(ws.recv(), 5))
                if answer["type"] == "next":
                    assert answer["payload"]["data"] is None, answer
                    [errors[answer["id"]]] = answer["payload"]["errors"]
                else:
                    assert answer["type"] == "complete", answer
                    completed.add(answer["id"])
            assert errors.keys() == {"1", "2"}, errors
            assert errors["1"]["message"] == "no segment no-such-segment"
            assert errors["1"]["extensions"] == {"code": "NOT_FOUND", "field": "segmentId"}
            assert errors["2"]["extensions"] == {"code": "NOT_FOUND", "field": "profileId"}

            payload = {"query": SUBSCRIBE, "variables": {"segment": segment_id}}  # one that exists, no members yet
            await ws.send(json.dumps({"id": "3", "type": "subscribe", "payload": payload}))
            await asyncio.sleep(0.2)  # the subscription is registered before the change is made
            assert _post(url, token, ORDER)["data"]["ingestEvents"]["accepted"] == 1
            message = json.loads(await asyncio.wait_for(ws.recv(), 5))
            assert (message["id"], message["type"]) == ("3", "next"), message
        finally:
            await ws.close()


def _keys_create(tmp_path: Path) -> str:
    """A read-only key, made with the CLI as an operator would."""
    created = subprocess.run(
        [sys.executable, "-m", "app", "keys", "create", "dashboard", "-s", "read:profiles"],
        cwd=ROOT,
        env={"PATH": "/usr/bin:/bin", "CDP_DATABASE_URL": f"sqlite:///{tmp_path}/cdp.sqlite3", "PYTHONPATH": str(ROOT)},
        capture_output=True,
        text=True,
        check=True,
    )
    return created.stdout.strip()


async def test_a_merged_away_profile_id_is_refused_naming_its_survivor_and_its_history_holds_both(
    tmp_path: Path,
) -> None:
    """Found by an audit: a subscription with a merged-away id was accepted and heard nothing; then,
    following it to the survivor, the subscriber stayed on the survivor (another person) once the merge
    was undone. It is refused, naming the survivor. The history by that id answers its own changes
    (those before its merge) and its survivor's."""
    env = {"CDP_DATABASE_URL": f"sqlite:///{tmp_path}/cdp.sqlite3", "CDP_SEED_FIXTURES": "false"}
    upsert = 'mutation($e: String!) { upsertProfile(input: {identifiers: [{type: "email", value: $e}]}) { id } }'
    by_profile = "subscription($p: ID) { segmentMembershipChanged(profileId: $p) { change } }"
    order = ORDER.replace('"o-1"', '"o-0"').replace("nora@example.com", "nora.old@example.com")
    with running_server(env) as url:
        token = (tmp_path / "dev-api-key").read_text().strip()
        segment_id = _post(url, token, CREATE)["data"]["createSegment"]["segment"]["id"]
        old = _post(url, token, upsert, {"e": "nora.old@example.com"})["data"]["upsertProfile"]["id"]
        assert _post(url, token, order)["data"]["ingestEvents"]["accepted"] == 1  # the old profile enters
        survivor = _post(url, token, upsert, {"e": "nora@example.com"})["data"]["upsertProfile"]["id"]
        merge = """mutation($s: ID!, $m: ID!) {
          mergeProfiles(survivorId: $s, mergedIds: [$m], reason: "same") { merge { id } } }"""
        assert _post(url, token, merge, {"s": survivor, "m": old})["data"]["mergeProfiles"]["merge"]["id"]
        ws = await _open(url.replace("http", "ws") + "/graphql", token)
        try:
            payload = {"query": by_profile, "variables": {"p": old}}
            await ws.send(json.dumps({"id": "1", "type": "subscribe", "payload": payload}))
            answer = json.loads(await asyncio.wait_for(ws.recv(), 5))
            assert answer["type"] == "next" and answer["payload"]["data"] is None, answer
            [error] = answer["payload"]["errors"]
            assert error["extensions"] == {"code": "BAD_USER_INPUT", "field": "profileId"}
            assert f"was merged into {survivor}: subscribe with {survivor}" in error["message"]
        finally:
            await ws.close()
        history = "query($p: ID) { segmentHistory(profileId: $p) { change cause segmentId profileId } }"
        changes = _post(url, token, history, {"p": old})["data"]["segmentHistory"]
        assert sorted((c["change"], c["cause"], c["profileId"]) for c in changes) == sorted(
            [("ENTERED", "event", old), ("EXITED", "merge", old), ("ENTERED", "merge", survivor)]
        )
        assert {c["segmentId"] for c in changes} == {segment_id}
