"""GraphQL types of the product catalogue and of recommendations."""

from __future__ import annotations

from datetime import datetime
from typing import Any

import strawberry

from app.domain import products as domain
from app.domain.recommendation import Recommendation as DomainRecommendation
from graphql_schema.types.counts import graphql_int


@strawberry.type
class PricePoint:
    price: float
    from_: datetime = strawberry.field(name="from", description="When this price took effect.")


@strawberry.type
class Product:
    id: strawberry.ID
    name: str
    category: str
    brand: str | None
    price: float
    currency: str
    stock: int
    new_item: bool
    price_history: list[PricePoint] = strawberry.field(
        description="Every price with when it took effect, oldest first."
    )
    sales: int = strawberry.field(description="Units sold in the best-seller window, as of the last traits job.")

    @classmethod
    def from_domain(cls, product: domain.Product) -> Product:
        return cls(
            id=strawberry.ID(product.id),
            name=product.name,
            category=product.category,
            brand=product.brand,
            price=product.price,
            currency=product.currency,
            stock=product.stock,
            new_item=product.new_item,
            price_history=[PricePoint(price=p.price, from_=p.from_) for p in product.price_history],
            sales=graphql_int(product.sales),  # a quantity may be up to the largest Int: a sum goes past it
        )


@strawberry.input(
    description="A product to create or update. A new product needs name, category, price and stock; "
    "on a known one omitted fields stay as they are."
)
class ProductInput:
    id: strawberry.ID
    name: str | None = None
    category: str | None = None
    brand: str | None = None
    price: float | None = None
    currency: str | None = strawberry.field(default=None, description="ISO 4217, e.g. EUR (default for a new product)")
    stock: int | None = None
    new_item: bool | None = None

    def fields(self) -> dict[str, Any]:
        return {
            "id": str(self.id),
            **{
                name: getattr(self, name)
                for name in ("name", "category", "brand", "price", "currency", "stock", "new_item")
                if getattr(self, name) is not None
            },
        }


@strawberry.type
class Recommendation:
    product: Product
    score: float
    reasons: list[str] = strawberry.field(description="Why the product was picked, strongest first.")

    @classmethod
    def from_domain(cls, item: DomainRecommendation) -> Recommendation:
        return cls(product=Product.from_domain(item.product), score=item.score, reasons=list(item.reasons))
