"""Product recommendations for one customer, and the catalogue writes they depend on.

Candidates come from bounded sources: the in-stock best sellers of each preferred category
(CANDIDATES_PER_CATEGORY), and the co-purchase links (`alsoBought`, kept by the traits job) of the
customer's newest distinct purchases (CO_PURCHASE_SOURCES). Preferred categories are computed from
the live profile, so a view made a minute ago counts. Ranking and reasons: app/domain/recommendation.py.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import timedelta
from typing import Any

from app.domain import clock
from app.domain.errors import NotFound
from app.domain.products import Product, ProductFields, parse_products, upserted
from app.domain.profile import Profile
from app.domain.recommendation import Recommendation, rank_best_sellers, rank_personalised
from app.domain.traits.computed import profiling_refused
from app.domain.traits.orders import purchases, unique
from app.domain.traits.preferences import preferred_categories, products_mentioned
from app.services import profile_reads
from app.services.order_history import orders_of
from app.services.ports import ProfileStore, StoreTransaction
from app.services.profile_writes import with_retries
from app.services.profiles import check_page_size
from app.services.traits import SALES_DAYS

PERSONALISATION = "personalisation"
MAX_RECOMMENDATIONS = 50
CANDIDATES_PER_CATEGORY = 50
CO_PURCHASE_SOURCES = 20
DEFAULT_EXCLUDE_DAYS = 30


async def upsert_products(store: ProfileStore, raw: list[dict[str, Any]]) -> list[Product]:
    """Create or update products; every item is validated (and a new product's required fields
    checked) before anything is written. A changed price is appended to the price history."""
    return await write_products(store, [(fields, None) for fields in parse_products(raw)])


async def write_products(store: ProfileStore, items: Sequence[tuple[ProductFields, Product | None]]) -> list[Product]:
    """The write of `upsertProducts` and of a data file's products: a known product updated with the
    fields given, a new one as given (a data file's, its price history with it) or made from them.
    Read and written in one transaction: read outside it, two calls changing one price at once each
    appended to the history they read, and the last write dropped the other's entry."""
    at = clock.now()

    async def work(tx: StoreTransaction) -> list[Product]:
        known = await tx.products_of([fields.id for fields, _ in items])
        products = [
            given
            if given is not None and fields.id not in known
            else upserted(known.get(fields.id), fields, at=at, index=i)
            for i, (fields, given) in enumerate(items)
        ]
        await tx.put_products([p.to_document() for p in products])
        return products

    return await with_retries(store, work) if items else []


async def recommendations(
    store: ProfileStore, profile_id: str, *, first: int = 10, exclude_days: int = DEFAULT_EXCLUDE_DAYS
) -> list[Recommendation]:
    check_page_size(first, maximum=MAX_RECOMMENDATIONS)
    profile = await profile_reads.get_profile(store, profile_id)
    if profile is None:
        raise NotFound(f"no profile {profile_id}", field="profileId")
    return await recommendations_for(store, profile, first=first, exclude_days=exclude_days)


async def recommendations_for(
    store: ProfileStore, profile: Profile, *, first: int = 10, exclude_days: int = DEFAULT_EXCLUDE_DAYS
) -> list[Recommendation]:
    """`recommendations` for a live profile already read (`Profile.recommendations`: no second read)."""
    check_page_size(first, maximum=MAX_RECOMMENDATIONS)
    now = clock.now()
    orders = await orders_of(store, profile)
    bought = purchases(orders)
    excluded = {p.product_id for p in bought if p.at >= now - timedelta(days=exclude_days)}
    consent = profile.consents.get(PERSONALISATION)
    if consent is None or not consent.granted:
        sellers = await store.best_sellers(None, limit=first + len(excluded))
        return rank_best_sellers(sellers, excluded=excluded, first=first, sales_days=SALES_DAYS, personalised=False)

    history = unique([*profile.recent, *orders])
    known = {p.id: p for p in await store.get_products(sorted(products_mentioned(history)))}
    # Preferred categories are inferred from the person's history: profiling, which a refusal of
    # that purpose stops here too (the traits job and RFM stop already).
    categories = {i: p.category for i, p in known.items()}
    preferred = [] if profiling_refused(profile) else preferred_categories(history, categories, as_of=now)
    linked: dict[str, tuple[int, str]] = {}  # product → (strongest link count, the purchase it links to)
    for source_id in list(dict.fromkeys(p.product_id for p in bought))[:CO_PURCHASE_SOURCES]:
        source = known.get(source_id)
        for link in source.also_bought if source else []:
            if link.count > linked.get(link.product_id, (0, ""))[0]:
                linked[link.product_id] = (link.count, source.name if source else source_id)
    candidates = await store.get_products(sorted(linked))
    for affinity in preferred:
        candidates += await store.best_sellers(affinity.category, limit=CANDIDATES_PER_CATEGORY)
    ranked = rank_personalised(
        candidates, preferred=preferred, co_purchased=linked, excluded=excluded, first=first, sales_days=SALES_DAYS
    )
    if len(ranked) < first:  # a short personal list is topped up with best sellers
        taken = excluded | {r.product.id for r in ranked}
        sellers = await store.best_sellers(None, limit=first + len(taken))
        ranked += rank_best_sellers(
            sellers, excluded=taken, first=first - len(ranked), sales_days=SALES_DAYS, personalised=True
        )
    return ranked
