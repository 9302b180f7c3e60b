"""Purchases read from order interactions: what preferences, co-purchases, best sellers and the
"just bought" exclusion of recommendations are computed from."""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from datetime import datetime

from app.domain.profile import Interaction

ORDER = "order_completed"


@dataclass(frozen=True, slots=True)
class Purchase:
    product_id: str
    quantity: int
    at: datetime


def order_lines(item: Interaction) -> Iterator[tuple[str, int]]:
    """(product id, units) of each line of an order interaction; lines without a product are skipped."""
    for line in item.properties.get("lines") or []:
        if isinstance(line, dict) and isinstance(line.get("productId"), str):
            quantity = line.get("quantity")
            yield line["productId"], quantity if isinstance(quantity, int) and quantity > 0 else 1


def purchases(interactions: Iterable[Interaction]) -> list[Purchase]:
    return [
        Purchase(product_id, units, item.timestamp)
        for item in interactions
        if item.type == ORDER
        for product_id, units in order_lines(item)
    ]


def unique(interactions: Iterable[Interaction]) -> list[Interaction]:
    """The embedded recent list and a history page overlap: each interaction once, newest first."""
    seen: dict[str, Interaction] = {}
    for item in interactions:
        seen.setdefault(item.message_id, item)
    return sorted(seen.values(), key=lambda i: (i.timestamp, i.message_id), reverse=True)
