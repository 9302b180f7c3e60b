"""Small builders for test data, so tests say only what matters to them."""

from __future__ import annotations

import itertools
from datetime import UTC, datetime, timedelta
from typing import Any

from app.domain.events import RawEvent, RawIdentifier

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
