"""Small builders for test data, so tests say only what matters to them."""

from __future__ import annotations

import itertools
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from app.domain.events import RawEvent, RawIdentifier
from app.domain.profile_query import InteractionFilter
from app.domain.segments.segment import MembershipChange, SegmentEvent
from app.services.ports import ProfileStore, StoreTransaction

BASE_TIME = datetime(2026, 6, 1, 12, 0, tzinfo=UTC)
_counter = itertools.count()

PROPERTIES: dict[str, dict[str, Any]] = {
    "identify": {"firstName": "Emma", "lastName": "Martin", "traits": {"tier": "gold"}},
    "page_view": {"url": "/home"},
    "product_view": {"productId": "sku-1", "price": 20.0},
    "add_to_cart": {"productId": "sku-1", "quantity": 2},
    "cart_abandoned": {"cartId": "c1", "value": 40.0},
    "order_completed": {
        "orderId": "o1",
        "total": 59.9,
        "lines": [{"productId": "sku-1", "quantity": 2, "price": 29.95}],
    },
    "order_returned": {"orderId": "o1", "amount": 29.95},
    "email_open": {"campaignId": "spring"},
    "email_click": {"campaignId": "spring", "url": "/sale"},
    "email_reply": {"campaignId": "spring"},
    "support_contact": {"topic": "delivery", "satisfaction": 4},
    "survey_response": {"nps": 9, "rating": 4},
    "consent_update": {"purpose": "email_marketing", "granted": True},
}


def event(
    type_: str = "page_view",
    *,
    email: str | None = "emma@example.com",
    identifiers: list[tuple[str, str]] | None = None,
    channel: str = "web",
    at: datetime | None = None,
    minutes: float = 0,
    message_id: str | None = None,
    properties: Any = None,
) -> RawEvent:
    ids = identifiers if identifiers is not None else [("email", email)] if email else []
    return RawEvent(
        message_id=message_id or f"msg-{next(_counter)}",
        type=type_,
        channel=channel,
        timestamp=(at or BASE_TIME) + timedelta(minutes=minutes),
        identifiers=[RawIdentifier(t, v) for t, v in ids],
        properties=PROPERTIES.get(type_, {}) if properties is None else properties,
    )


def segment_event(number: int) -> SegmentEvent:
    """The `number`th ENTERED change of one segment, for feed and bus tests."""
    return SegmentEvent(
        _id=f"e{number}",
        segment_id="seg",
        profile_id=f"p{number}",
        change=MembershipChange.ENTERED,
        at=datetime(2026, 1, 1, tzinfo=UTC),
        cause="test",
    )


async def stored_state(store: ProfileStore, ids: list[str], keys: list[str]) -> dict[str, Any]:
    """What a merge or unmerge touches, as stored: who owns `keys`, and each profile's document,
    history, merges and consent history; two snapshots compare equal when nothing was written."""

    async def owners(tx: StoreTransaction) -> dict[str, str]:
        return await tx.owners_of(keys)

    state: dict[str, Any] = {"identities": await store.run_in_transaction(owners)}
    for profile_id in ids:
        profile = await store.get_profile(profile_id)
        state[profile_id] = profile.to_document() if profile else None
        items = await store.list_interactions(profile_id, before=None, where=InteractionFilter(), limit=1000)
        state[f"history:{profile_id}"] = sorted(i.message_id for i in items)
        state[f"merges:{profile_id}"] = [(m.id, m.status) for m in await store.merges_of(profile_id)]
        state[f"consents:{profile_id}"] = [d.model_dump() for d in await store.consent_history([profile_id])]
    return state


async def rename_from_another_process(path: Path, email: str, first_name: str) -> None:
    """Change a customer's first name through another embedded store on the same file: its writes tell
    the store under test nothing, as another worker process's would not."""
    from app.services import profiles
    from app.store.sqlite.store import SQLiteStore

    other_process = SQLiteStore(path)
    try:
        await profiles.upsert_profile(other_process, [RawIdentifier("email", email)], {"first_name": first_name})
    finally:
        await other_process.close()


def demo_fixtures(into: Path, events: int) -> Path:
    """The demo data (fixtures/) with only its first `events` events: a load that takes seconds."""
    source = Path(__file__).resolve().parents[1] / "fixtures"
    into.mkdir()
    for name in ("products.jsonl", "profiles.jsonl", "segments.jsonl"):
        (into / name).write_bytes((source / name).read_bytes())
    with (source / "events.jsonl").open() as lines, (into / "events.jsonl").open("w") as target:
        for _, line in zip(range(events), lines, strict=False):
            target.write(line)
    return into
