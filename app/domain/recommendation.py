"""Ranking products for one customer, with the reasons each was picked.

Personalised (the customer granted the `personalisation` consent): in-stock candidates from the
customer's preferred categories and from what customers who bought the same products also bought,
scored as CATEGORY_WEIGHT * category affinity + CO_PURCHASE_WEIGHT * co-purchase strength +
POPULARITY_WEIGHT * sales, plus NEW_ITEM_BOOST for new items. Not personalised: in-stock best
sellers only, each item saying so. Products bought recently are never recommended.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass

from app.domain.products import Product
from app.domain.profile import CategoryAffinity

CATEGORY_WEIGHT = 0.5
CO_PURCHASE_WEIGHT = 0.4
POPULARITY_WEIGHT = 0.1
NEW_ITEM_BOOST = 0.15
NOT_PERSONALISED = "not personalised: the customer has not granted the personalisation consent"


@dataclass(frozen=True, slots=True)
class Recommendation:
    product: Product
    score: float
    reasons: list[str]


def rank_personalised(
    candidates: Sequence[Product],
    *,
    preferred: Sequence[CategoryAffinity],
    co_purchased: Mapping[str, tuple[int, str]],
    excluded: Collection[str],
    first: int,
    sales_days: int,
) -> list[Recommendation]:
    """`co_purchased`: product id → (customers who bought it with one of this customer's products, that
    product's name), the strongest link."""
    affinity = {p.category: (rank, p.score) for rank, p in enumerate(preferred, start=1)}
    top_affinity = max((p.score for p in preferred), default=0.0) or 1.0
    top_link = max((count for count, _ in co_purchased.values()), default=0) or 1
    top_sales = max((p.sales for p in candidates), default=0) or 1
    ranked: list[Recommendation] = []
    for product in _eligible(candidates, excluded):
        score, reasons = 0.0, []
        if product.category in affinity:
            rank, share = affinity[product.category]
            score += CATEGORY_WEIGHT * share / top_affinity
            reasons.append(f"in your preferred category {product.category} (#{rank})")
        if product.id in co_purchased:
            count, bought = co_purchased[product.id]
            score += CO_PURCHASE_WEIGHT * count / top_link
            reasons.append(f"often bought with {bought} ({count} customers bought both)")
        if not reasons:
            continue  # neither preferred nor co-purchased: not a personal pick
        score += _popularity(product, top_sales, reasons, sales_days) + _novelty(product, reasons)
        ranked.append(Recommendation(product, round(score, 4), reasons))
    return _best(ranked, first)


def rank_best_sellers(
    candidates: Sequence[Product], *, excluded: Collection[str], first: int, sales_days: int, personalised: bool
) -> list[Recommendation]:
    """Best sellers: what a customer without consent gets, and what fills a short personal list."""
    top_sales = max((p.sales for p in candidates), default=0) or 1
    ranked: list[Recommendation] = []
    for product in _eligible(candidates, excluded):
        reasons: list[str] = []
        score = _popularity(product, top_sales, reasons, sales_days) + _novelty(product, reasons)
        if not reasons:
            reasons.append("in stock")
        if not personalised:
            reasons.append(NOT_PERSONALISED)
        ranked.append(Recommendation(product, round(score, 4), reasons))
    return _best(ranked, first)


def _eligible(candidates: Sequence[Product], excluded: Collection[str]) -> list[Product]:
    unique = {p.id: p for p in candidates}
    return [p for p in unique.values() if p.in_stock and p.id not in excluded]


def _popularity(product: Product, top_sales: int, reasons: list[str], sales_days: int) -> float:
    if product.sales <= 0:
        return 0.0
    reasons.append(f"popular: {product.sales} sold in the last {sales_days} days")
    return POPULARITY_WEIGHT * product.sales / top_sales


def _novelty(product: Product, reasons: list[str]) -> float:
    if not product.new_item:
        return 0.0
    reasons.append("new item")
    return NEW_ITEM_BOOST


def _best(ranked: list[Recommendation], first: int) -> list[Recommendation]:
    return sorted(ranked, key=lambda r: (-r.score, r.product.id))[:first]
