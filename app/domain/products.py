"""The product catalogue as stored, and the validation of `upsertProducts` input.

A write names a product by id; for a new product name, category, price and stock are required, for
a known one omitted fields keep their value. A price change appends to `priceHistory` (each entry
is a price and the time it took effect), so past prices are never lost. `sales` and `alsoBought`
are derived by the traits job (best sellers, co-purchases) and survive upserts.
"""

from __future__ import annotations

import math
from datetime import datetime
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from app.domain.errors import InvalidInput, LimitExceeded, first_problem
from app.domain.event_limits import MAX_GRAPHQL_INT
from app.domain.events import to_minor_units
from app.domain.profile import StoredModel
from app.domain.profile import datetime as stored_time

MAX_PRODUCTS_PER_CALL = 1000
REQUIRED_FOR_NEW = ("name", "category", "price", "stock")


class PricePoint(StoredModel):
    price: float
    from_: stored_time = Field(alias="from")


class CoPurchase(StoredModel):
    product_id: str
    count: int  # customers who bought both


class Product(StoredModel):
    id: str = Field(alias="_id")
    name: str
    category: str
    brand: str | None = None
    price: float
    currency: str = "EUR"
    stock: int = 0
    new_item: bool = False
    price_history: list[PricePoint] = Field(default_factory=list)
    sales: int = 0  # units sold in the best-seller window, as of the last traits job
    also_bought: list[CoPurchase] = Field(default_factory=list)
    updated_at: stored_time | None = None

    @property
    def in_stock(self) -> bool:
        return self.stock > 0

    def to_document(self) -> dict[str, Any]:
        return self.model_dump(by_alias=True, exclude_none=True)


class ProductFields(BaseModel):
    """One item of `upsertProducts`. None: not given (unchanged on a known product)."""

    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)
    id: str = Field(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9][A-Za-z0-9._:/-]*$")
    name: str | None = Field(default=None, min_length=1, max_length=200)
    category: str | None = Field(default=None, min_length=1, max_length=64)
    brand: str | None = Field(default=None, max_length=100)
    price: float | None = Field(default=None, ge=0, le=10_000_000)
    currency: str | None = Field(default=None, pattern=r"^[A-Z]{3}$")
    stock: int | None = Field(default=None, ge=0, le=MAX_GRAPHQL_INT)  # shown as a GraphQL Int
    new_item: bool | None = None

    @field_validator("price")
    @classmethod
    def _finite(cls, value: float | None) -> float | None:
        """Whole cents, rounded half up as order amounts are (float rounding made 2.675 a price of 2.67
        and its order 2.68); a positive price is never rounded to nothing (0.004 made a product free)."""
        if value is None:
            return None
        if not math.isfinite(value):
            raise ValueError("must be a finite number")
        cents = to_minor_units(value)
        if cents == 0 and value > 0:
            raise ValueError("a price is in cents: one below 0.005 would make the product free")
        return cents / 100


_NAMES = {"new_item": "newItem"}


def parse_products(raw: list[dict[str, Any]], *, field: str = "products") -> list[ProductFields]:
    """Every item validated before anything is written; the error names the item and its field."""
    if len(raw) > MAX_PRODUCTS_PER_CALL:
        raise LimitExceeded(f"at most {MAX_PRODUCTS_PER_CALL} products per call", field=field)
    parsed: list[ProductFields] = []
    seen: set[str] = set()
    for index, item in enumerate(raw):
        try:
            fields = ProductFields.model_validate(item)
        except ValidationError as exc:
            path, message = first_problem(exc, prefix=f"{field}[{index}]", names=_NAMES)
            raise InvalidInput(f"{path}: {message}", field=path) from None
        if fields.id in seen:
            raise InvalidInput(f"{field}[{index}].id: {fields.id} appears twice", field=f"{field}[{index}].id")
        seen.add(fields.id)
        parsed.append(fields)
    return parsed


def checked_document(document: dict[str, Any]) -> tuple[ProductFields, dict[str, Any]]:
    """A stored product document (a data file's line) held to what `upsertProducts` accepts, with the
    values as that takes them (a price in cents): the stored model alone let in a negative stock, a
    NaN price (every customer's recommendations then failed to read it), an id the API can never name
    again. Returns the fields, for a product already known, and the document, for a new one."""
    given = {name: document[stored] for name, stored in _STORED_NAMES.items() if document.get(stored) is not None}
    try:
        fields = ProductFields.model_validate(given)
    except ValidationError as exc:
        path, message = first_problem(exc, names=_NAMES)
        raise InvalidInput(message, field=path or None) from None
    values = fields.model_dump(exclude_none=True)
    return fields, {**document, **{_STORED_NAMES[name]: value for name, value in values.items()}}


_STORED_NAMES = {name: "_id" if name == "id" else _NAMES.get(name, name) for name in ProductFields.model_fields}


def upserted(current: Product | None, fields: ProductFields, *, at: datetime, index: int = 0) -> Product:
    """The product after the write: a new one, or `current` with the given fields changed."""
    given = {k: v for k, v in fields.model_dump(exclude={"id"}).items() if v is not None}
    if current is None:
        missing = [name for name in REQUIRED_FOR_NEW if name not in given]
        if missing:
            path = f"products[{index}].{missing[0]}"
            raise InvalidInput(f"{path}: required for a new product ({fields.id})", field=path)
        history = [PricePoint(price=given["price"], from_=at)]
        return Product(_id=fields.id, price_history=history, updated_at=at, **given)
    history = list(current.price_history)
    if "price" in given and given["price"] != current.price:
        history.append(PricePoint(price=given["price"], from_=at))
    return current.model_copy(update={**given, "price_history": history, "updated_at": at})
