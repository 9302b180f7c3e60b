"""The co-purchase table: for each product, the products most often bought by the same customers.

Built by the traits job from every customer's purchases, in bounded memory: a customer counts at
most PER_CUSTOMER distinct products (their newest), and once MAX_PAIRS pairs are held the pairs seen
only once are dropped (the least informative; a pair bought together often comes back quickly).
"""

from __future__ import annotations

from collections.abc import Iterable
from itertools import combinations

PER_CUSTOMER = 30
MAX_PAIRS = 200_000
TOP_LINKS = 20


class CoPurchases:
    def __init__(self, *, per_customer: int = PER_CUSTOMER, max_pairs: int = MAX_PAIRS) -> None:
        self.per_customer = per_customer
        self.max_pairs = max_pairs
        self.pairs: dict[tuple[str, str], int] = {}

    def add_customer(self, product_ids_newest_first: Iterable[str]) -> None:
        products = list(dict.fromkeys(product_ids_newest_first))[: self.per_customer]
        for pair in combinations(sorted(products), 2):
            self.pairs[pair] = self.pairs.get(pair, 0) + 1
        if len(self.pairs) > self.max_pairs:
            self.pairs = {pair: count for pair, count in self.pairs.items() if count > 1}

    def links(self, *, top: int = TOP_LINKS) -> dict[str, list[tuple[str, int]]]:
        """product id → [(other product id, customers who bought both)], most shared first."""
        found: dict[str, list[tuple[str, int]]] = {}
        for (a, b), count in self.pairs.items():
            found.setdefault(a, []).append((b, count))
            found.setdefault(b, []).append((a, count))
        return {product: sorted(others, key=lambda o: (-o[1], o[0]))[:top] for product, others in found.items()}
