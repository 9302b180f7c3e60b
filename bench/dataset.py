"""Synthetic but realistic data: the customers the store is built from, and the event stream that is
ingested. Deterministic for a given seed (message ids are unique per run, so nothing is a replay)."""

from __future__ import annotations

import random
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from app.domain.events import RawEvent, RawIdentifier
from app.services.ingestion import EventStatus, IngestionPolicy, ingest_events
from app.services.match_index import ensure_blocking_keys
from app.services.profile_changes import ProfileChanges
from app.services.segment_bus import SegmentBus
from app.services.segments import SegmentEngine
from app.services.traits import recompute_traits
from app.store.sqlite.store import SQLiteStore

FIRST_NAMES = (
    "Emma",
    "Louis",
    "Jade",
    "Gabriel",
    "Louise",
    "Raphael",
    "Alice",
    "Arthur",
    "Chloe",
    "Jules",
    "Lina",
    "Adam",
    "Mia",
    "Hugo",
    "Lea",
    "Noah",
    "Manon",
    "Paul",
    "Zoe",
    "Leo",
    "Anna",
    "Tom",
)
LAST_NAMES = (
    "Martin",
    "Bernard",
    "Dubois",
    "Thomas",
    "Robert",
    "Richard",
    "Petit",
    "Durand",
    "Leroy",
    "Moreau",
    "Simon",
    "Laurent",
    "Lefebvre",
    "Michel",
    "Garcia",
    "David",
    "Bertrand",
    "Roux",
)
DOMAINS = ("gmail.com", "yahoo.fr", "orange.fr", "outlook.com", "free.fr", "hotmail.com", "laposte.net")
CITIES = (
    ("Paris", "75011"),
    ("Lyon", "69003"),
    ("Marseille", "13006"),
    ("Lille", "59000"),
    ("Nantes", "44000"),
    ("Bordeaux", "33000"),
    ("Toulouse", "31000"),
)


# -- the customers -------------------------------------------------------------------------------
def email_of(index: int) -> str:
    first = FIRST_NAMES[index % len(FIRST_NAMES)].lower()
    last = LAST_NAMES[(index // len(FIRST_NAMES)) % len(LAST_NAMES)].lower()
    return f"{first}.{last}.{index}@{DOMAINS[index % len(DOMAINS)]}"


def customer_id_of(index: int) -> str:
    return f"C{index:08d}"


def identify_event(index: int, run_id: str, at: datetime) -> RawEvent:
    city, postcode = CITIES[index % len(CITIES)]
    return RawEvent(
        message_id=f"build-{run_id}-{index}",
        type="identify",
        channel="web" if index % 3 else "store",
        timestamp=at - timedelta(days=30, seconds=index),
        identifiers=[RawIdentifier("email", email_of(index)), RawIdentifier("customerId", customer_id_of(index))],
        properties={
            "firstName": FIRST_NAMES[index % len(FIRST_NAMES)],
            "lastName": LAST_NAMES[(index // len(FIRST_NAMES)) % len(LAST_NAMES)],
            "language": "fr",
            "address": {"kind": "home", "city": city, "postcode": postcode, "country": "FR"},
        },
    )


@dataclass(frozen=True, slots=True)
class BuildReport:
    profiles: int
    seconds: float
    batches: int
    rejected: int
    file_bytes: int


def upkept_policy(store: SQLiteStore) -> IngestionPolicy:
    """Ingestion with segment upkeep listening, as in the server: each write leaves a check of every
    segment until its upkeep has run, and a store built without it has the server catch up every
    profile when the check comes due (a minute later, in the middle of a benchmark's rounds)."""
    return IngestionPolicy(changes=ProfileChanges(SegmentEngine(store, SegmentBus()).profiles_changed))


async def settle_as_served(store: SQLiteStore, policy: IngestionPolicy) -> None:
    """What a server that ran the build's writes (through `policy`) would have done besides: a server
    started on a store without it does it in the middle of whatever a benchmark measures."""
    # The keys are current (ingestion wrote them); this records that they are, so that a server
    # started on a copy does not walk every profile to find out (app/services/match_index.py).
    await ensure_blocking_keys(store)
    # The computed-traits job (the server runs it every hour, and first a minute after starting on a
    # store it never ran on: 100,000 profiles rewritten, about 50 s of CPU), its writes upkept too.
    await recompute_traits(store, changes=policy.changes)


async def build_store(
    path: Path, profiles: int, *, batch_size: int, run_id: str, progress: Callable[[int, float], None]
) -> BuildReport:
    """Create `profiles` customers through the real ingestion service: one `identify` event each
    (email + customerId + name + address), `batch_size` events per `ingest_events` call."""
    store = SQLiteStore(path)
    at = datetime.now(UTC)
    policy = upkept_policy(store)
    started = time.perf_counter()
    accepted = rejected = batches = 0
    try:
        for start in range(0, profiles, batch_size):
            batch = [identify_event(i, run_id, at) for i in range(start, min(start + batch_size, profiles))]
            outcomes = await ingest_events(store, batch, policy)
            batches += 1
            accepted += sum(1 for o in outcomes if o.status is EventStatus.ACCEPTED)
            rejected += sum(1 for o in outcomes if o.status is not EventStatus.ACCEPTED)
            progress(accepted + rejected, time.perf_counter() - started)
        await settle_as_served(store, policy)  # store_cache dates the traits job it runs
        count = await store.count_profiles()
    finally:
        await store.close()
    seconds = time.perf_counter() - started
    if rejected or count != profiles:
        raise RuntimeError(f"store build went wrong: {count} profiles, {rejected} events not accepted")
    size = sum(p.stat().st_size for p in path.parent.glob(path.name + "*"))
    return BuildReport(profiles, seconds, batches, rejected, size)


# -- the event stream ----------------------------------------------------------------------------
# (type, weight, channels) for events of known customers; anonymous visitors only browse.
KNOWN_MIX: tuple[tuple[str, float, tuple[str, ...]], ...] = (
    ("page_view", 0.28, ("web", "web", "mobile")),
    ("product_view", 0.20, ("web", "mobile")),
    ("add_to_cart", 0.09, ("web", "mobile")),
    ("cart_abandoned", 0.03, ("web", "mobile")),
    ("order_completed", 0.07, ("web", "web", "mobile", "store")),
    ("order_returned", 0.01, ("store", "web")),
    ("email_open", 0.14, ("email",)),
    ("email_click", 0.06, ("email",)),
    ("email_reply", 0.01, ("email",)),
    ("support_contact", 0.03, ("customer_service", "call_center")),
    ("survey_response", 0.03, ("email", "web")),
    ("consent_update", 0.02, ("web", "email")),
    ("identify", 0.03, ("web", "mobile", "store")),
)
ANONYMOUS_MIX: tuple[tuple[str, float, tuple[str, ...]], ...] = (
    ("page_view", 0.6, ("web", "mobile")),
    ("product_view", 0.3, ("web", "mobile")),
    ("add_to_cart", 0.1, ("web", "mobile")),
)
ANONYMOUS_SHARE = 0.15  # share of events from new anonymous visitors
EVENTS_PER_VISITOR = 3  # an anonymous visitor sends about this many events


@dataclass(frozen=True, slots=True)
class EventStream:
    """The same batches in the two forms the two paths take: GraphQL variables and RawEvents."""

    graphql: list[list[dict[str, Any]]]
    raw: list[list[RawEvent]]
    type_counts: dict[str, int]
    anonymous_events: int
    anonymous_visitors: int

    @property
    def events(self) -> int:
        return sum(len(b) for b in self.raw)


def event_stream(customers: int, events: int, *, batch_size: int, seed: int, run_id: str, now: datetime) -> EventStream:
    rng = random.Random(seed)
    visitors = [f"anon-{run_id}-{n}" for n in range(max(1, int(events * ANONYMOUS_SHARE / EVENTS_PER_VISITOR)))]
    used_visitors: set[str] = set()
    documents: list[dict[str, Any]] = []
    counts: dict[str, int] = {}
    anonymous = 0
    for n in range(events):
        if rng.random() < ANONYMOUS_SHARE:
            anonymous += 1
            visitor = rng.choice(visitors)
            used_visitors.add(visitor)
            identifiers = [{"type": "anonymousId", "value": visitor}]
            event_type, channel = _pick(rng, ANONYMOUS_MIX)
        else:
            identifiers = [{"type": "email", "value": email_of(rng.randrange(customers))}]
            event_type, channel = _pick(rng, KNOWN_MIX)
        counts[event_type] = counts.get(event_type, 0) + 1
        documents.append(
            {
                "messageId": f"evt-{run_id}-{n}",
                "type": event_type,
                "channel": channel,
                # within the last 7 days, in time order as a live stream would be (a little jitter)
                "timestamp": now - timedelta(days=7) * (1 - n / events) + timedelta(seconds=rng.uniform(-30, 0)),
                "identifiers": identifiers,
                "properties": _properties(rng, event_type, n),
            }
        )
    graphql = [
        [{**d, "timestamp": _iso(d["timestamp"])} for d in documents[i : i + batch_size]]
        for i in range(0, len(documents), batch_size)
    ]
    # The in-process path gets exactly what the GraphQL layer hands the service (EventInput.to_raw).
    raw = [
        [
            RawEvent(
                message_id=d["messageId"],
                type=d["type"],
                channel=d["channel"],
                timestamp=datetime.fromisoformat(d["timestamp"]),
                identifiers=[RawIdentifier(i["type"], i["value"]) for i in d["identifiers"]],
                properties=d["properties"],
            )
            for d in batch
        ]
        for batch in graphql
    ]
    return EventStream(graphql, raw, dict(sorted(counts.items())), anonymous, len(used_visitors))


def _iso(moment: datetime) -> str:
    return moment.isoformat(timespec="milliseconds")


def _pick(rng: random.Random, mix: tuple[tuple[str, float, tuple[str, ...]], ...]) -> tuple[str, str]:
    roll = rng.random() * sum(w for _, w, _ in mix)
    for event_type, weight, channels in mix:
        roll -= weight
        if roll <= 0:
            return event_type, rng.choice(channels)
    event_type, _, channels = mix[-1]
    return event_type, rng.choice(channels)


def _product(rng: random.Random) -> tuple[str, float]:
    number = rng.randrange(2000)
    return f"SKU-{number:05d}", round(5 + (number % 97) * 1.5, 2)


def _properties(rng: random.Random, event_type: str, n: int) -> dict[str, Any]:
    match event_type:
        case "page_view":
            return {
                "url": rng.choice(("/", "/women", "/men", "/sale", "/new", "/stores", "/account")),
                "referrer": rng.choice(("google", "direct", "newsletter", "instagram")),
            }
        case "product_view":
            product, price = _product(rng)
            return {"productId": product, "price": price}
        case "add_to_cart":
            product, price = _product(rng)
            return {"productId": product, "quantity": rng.randint(1, 3), "price": price}
        case "cart_abandoned":
            return {"value": round(rng.uniform(20, 300), 2)}
        case "order_completed":
            lines: list[dict[str, Any]] = []
            total = 0.0
            for _ in range(rng.randint(1, 4)):
                product, price = _product(rng)
                quantity = rng.randint(1, 2)
                lines.append({"productId": product, "quantity": quantity, "price": price})
                total += quantity * price
            total = round(total, 2)
            return {"orderId": f"O-{n:08d}", "total": total, "currency": "EUR", "lines": lines}
        case "order_returned":
            return {"orderId": f"O-R{n:08d}", "amount": round(rng.uniform(10, 150), 2)}
        case "email_open" | "email_click" | "email_reply":
            return {"campaignId": f"CMP-{rng.randrange(40):03d}"}
        case "support_contact":
            return {"satisfaction": rng.randint(1, 5), "topic": rng.choice(("delivery", "refund", "size"))}
        case "survey_response":
            return {"nps": rng.randint(0, 10)} if rng.random() < 0.6 else {"rating": rng.randint(1, 5)}
        case "consent_update":
            return {
                "purpose": rng.choice(("email_marketing", "sms_marketing", "profiling")),
                "granted": rng.random() < 0.7,
            }
        case "identify":
            return {"language": "fr", "traits": {"vip": rng.random() < 0.1}}
    return {}


def run_id() -> str:
    return uuid.uuid4().hex[:8]
