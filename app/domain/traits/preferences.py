"""Preferred categories: a customer's product views, cart adds and purchases, weighted by how strong
a signal each is and by age (half-life HALF_LIFE_DAYS), as shares of the customer's total."""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping
from datetime import datetime

from app.domain.profile import CategoryAffinity, Interaction
from app.domain.traits.orders import ORDER, order_lines

WEIGHTS = {"product_view": 1.0, "add_to_cart": 2.0, ORDER: 4.0}  # a purchase: per unit bought
HALF_LIFE_DAYS = 90.0
TOP = 5


def products_mentioned(interactions: Iterable[Interaction]) -> set[str]:
    """Product ids whose category must be looked up in the catalogue."""
    return {product_id for item in interactions for product_id, _, _ in _products(item)}


def preferred_categories(
    interactions: Iterable[Interaction], category_of: Mapping[str, str], *, as_of: datetime, top: int = TOP
) -> list[CategoryAffinity]:
    weights: dict[str, float] = {}
    for item in interactions:
        age_days = max(0.0, (as_of - item.timestamp).total_seconds() / 86_400)
        decay = 0.5 ** (age_days / HALF_LIFE_DAYS)
        for product_id, category, units in _products(item):
            found = category or category_of.get(product_id)
            if found:
                weights[found] = weights.get(found, 0.0) + WEIGHTS[item.type] * units * decay
    total = sum(weights.values())
    if total <= 0:
        return []
    ranked = sorted(weights.items(), key=lambda kv: (-kv[1], kv[0]))[:top]
    return [CategoryAffinity(category=category, score=round(weight / total, 3)) for category, weight in ranked]


def _products(item: Interaction) -> Iterator[tuple[str, str | None, int]]:
    """(product id, category named on the event if any, units) for each product the event is about."""
    if item.type not in WEIGHTS:
        return
    properties = item.properties
    if item.type == ORDER:
        for product_id, units in order_lines(item):
            yield product_id, None, units
    elif isinstance(properties.get("productId"), str):
        category = properties.get("category")
        yield properties["productId"], category if isinstance(category, str) and category else None, 1
