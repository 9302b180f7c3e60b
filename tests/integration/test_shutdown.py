"""Graceful shutdown of a real server process: SIGTERM during a large batch lets the batch finish and
answer ACCEPTED (and its events are there after a restart); open subscriptions are closed with code
1001, going away (not uvicorn's 1012, service restart), rather than dropped."""

from __future__ import annotations

import asyncio
import json
import signal
from pathlib import Path

import httpx
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed
from websockets.typing import Subprotocol

from tests.server_process import free_port, running_server, start_server

BATCH = """mutation($events: [EventInput!]!) { ingestEvents(events: $events) { accepted rejected } }"""


def _events(count: int) -> list[dict[str, object]]:
    return [
        {
            "messageId": f"shutdown-{n}",
            "type": "order_completed",
            "channel": "web",
            "timestamp": "2026-11-01T10:00:00Z",
            "identifiers": [{"type": "email", "value": f"c{n % 300}@example.com"}],
            "properties": {"orderId": f"o{n}", "total": 10},
        }
        for n in range(count)
    ]


async def test_sigterm_finishes_the_batch_in_flight_and_closes_subscriptions(tmp_path: Path) -> None:
    env = {"CDP_DATABASE_URL": f"sqlite:///{tmp_path}/cdp.sqlite3", "CDP_SEED_FIXTURES": "false", "CDP_AUTH": "off"}
    port = free_port()
    process = start_server(env, port, timeout=30)
    try:
        ws = await connect(f"ws://127.0.0.1:{port}/graphql", subprotocols=[Subprotocol("graphql-transport-ws")])
        await ws.send(json.dumps({"type": "connection_init", "payload": {}}))
        assert json.loads(await ws.recv())["type"] == "connection_ack"
        payload = {"query": "subscription { segmentMembershipChanged { change } }"}
        await ws.send(json.dumps({"id": "1", "type": "subscribe", "payload": payload}))

        async with httpx.AsyncClient(timeout=60) as http:
            request = asyncio.create_task(
                http.post(
                    f"http://127.0.0.1:{port}/graphql", json={"query": BATCH, "variables": {"events": _events(1000)}}
                )
            )
            await asyncio.sleep(0.3)  # the batch is being ingested
            process.send_signal(signal.SIGTERM)
            response = await request
        assert response.status_code == 200
        assert response.json()["data"]["ingestEvents"] == {"accepted": 1000, "rejected": 0}

        try:
            await asyncio.wait_for(ws.recv(), 10)
            raise AssertionError("the subscription was not closed")
        except ConnectionClosed as closed:
            assert closed.rcvd is not None and closed.rcvd.code == 1001, closed.rcvd  # going away
        # uvicorn shuts down cleanly, then re-raises the signal so the exit status says what stopped it.
        assert process.wait(timeout=20) in (0, -signal.SIGTERM)
    finally:
        if process.poll() is None:
            process.kill()

    with running_server(env) as url:
        count = httpx.post(f"{url}/graphql", json={"query": "{ profiles(first: 100) { edges { cursor } } }"}).json()
        assert len(count["data"]["profiles"]["edges"]) == 100
        emma = httpx.post(
            f"{url}/graphql",
            json={"query": '{ profileByIdentifier(type: "email", value: "c0@example.com") { stats { orders } } }'},
        ).json()
        assert emma["data"]["profileByIdentifier"]["stats"]["orders"] == 4  # events 0, 300, 600, 900
