"""A subscriber that stops reading is disconnected with close code 4029 and the reason (README: "one
that stops reading ... is disconnected with close code 4029"), quietly: a documented disconnection is
no server error, and was logged as two (an unexpected error with its id, and the send that followed
the close)."""

from __future__ import annotations

import asyncio
import json
import logging

import pytest
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed
from websockets.typing import Subprotocol

from app.bootstrap import Services
from app.domain import clock
from app.domain.access import Scope
from app.domain.segments.segment import MembershipChange, SegmentEvent, new_event_id
from app.services.api_keys import create_key
from app.services.ingestion import IngestionPolicy
from app.services.segment_bus import BURST_LIMIT, SegmentBus
from app.settings import Settings
from app.store.sqlite.store import SQLiteStore
from tests.server_process import serving

SUBSCRIBE = "subscription { segmentMembershipChanged { change } }"


def _change(n: int) -> SegmentEvent:
    return SegmentEvent(
        _id=new_event_id(),
        segment_id="seg_a",
        profile_id=f"p{n}",
        change=MembershipChange.ENTERED,
        at=clock.now(),
        cause="event",
    )


async def test_a_subscriber_past_its_queue_is_closed_4029_without_an_error_logged(
    sqlite_store: SQLiteStore, caplog: pytest.LogCaptureFixture
) -> None:
    limit = 2
    services = Services(
        settings=Settings(seed_fixtures=False),
        store=sqlite_store,
        ingestion=IngestionPolicy(),
        bus=SegmentBus(max_queue=limit),
    )
    _, token = await create_key(sqlite_store, "tests", list(Scope))
    caplog.set_level(logging.INFO)
    async with serving(services) as address, connect(
        f"ws://{address}/graphql", subprotocols=[Subprotocol("graphql-transport-ws")]
    ) as ws:
        await ws.send(json.dumps({"type": "connection_init", "payload": {"Authorization": f"Bearer {token}"}}))
        assert json.loads(await ws.recv())["type"] == "connection_ack"
        await ws.send(json.dumps({"type": "subscribe", "id": "1", "payload": {"query": SUBSCRIBE}}))
        while not services.bus.active:  # registered: what is published from now reaches it
            await asyncio.sleep(0.01)
        # More at once than the queue may hold, whatever the reader does: it is cut off.
        services.bus.publish_committed([_change(n) for n in range(limit * BURST_LIMIT + 5)])
        with pytest.raises(ConnectionClosed) as closed:
            async with asyncio.timeout(20):  # a guard against a hang, not a timing assertion
                while True:
                    await ws.recv()
    assert closed.value.rcvd is not None and closed.value.rcvd.code == 4029, closed.value
    assert "too slow" in closed.value.rcvd.reason
    errors = [r for r in caplog.records if r.levelno >= logging.ERROR]
    assert not errors, [f"{r.name}: {r.getMessage()}" for r in errors]
