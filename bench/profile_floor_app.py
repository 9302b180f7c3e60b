"""The personalisation read's floor (issues 13 and 14): a hand-written Starlette endpoint that reads the
same profile with the same store calls as `profileByIdentifier` (the identifier normalised, merges
followed, the 10 newest interactions), builds the same JSON (the fields of issue 14's document) and
encodes it with orjson; served by uvicorn with the settings `python -m app serve` uses. It answers
POST /graphql with the GraphQL request body, so the same load reaches both.

    python -m bench.profile_floor_app --database PATH --host 127.0.0.1 --port 8002

`served()` runs it that way for a benchmark, pinned to the server's core.
"""

from __future__ import annotations

import argparse
import base64
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager, contextmanager
from pathlib import Path
from typing import Any

import orjson
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from app.domain.clock import to_iso
from app.domain.profile import Interaction, Profile
from app.domain.profile_query import InteractionFilter
from app.services.profile_reads import get_profile_by_identifier
from app.store.sqlite.store import SQLiteStore
from bench import process_tree
from bench.common import SERVER_LOG_LEVEL, Server, server

INTERACTIONS = 10


def shape(profile: Profile, interactions: list[Interaction]) -> dict[str, Any]:
    stats = profile.stats
    quality = profile.qualitative
    rfm = profile.rfm
    page = interactions[:INTERACTIONS]
    return {
        "id": profile.id,
        "firstName": profile.first_name,
        "lastName": profile.last_name,
        "language": profile.language,
        "gender": profile.gender,
        "traits": profile.traits,
        "segments": profile.segments,
        "consents": [{"purpose": p, "granted": c.granted, "at": c.at} for p, c in sorted(profile.consents.items())],
        "stats": {
            "orders": stats.orders,
            "revenue": stats.revenue_cents / 100,
            "averageOrderValue": stats.revenue_cents / stats.orders / 100 if stats.orders else None,
            "lastOrderAt": stats.last_order_at,
            "cartAbandons": stats.cart_abandons,
            "visits": stats.visits,
            "lastSeenAt": stats.last_seen_at,
            "emailOpens": stats.email_opens,
            "emailClicks": stats.email_clicks,
            "productViews": stats.product_views,
            "pageViews": stats.page_views,
            "channels": [{"channel": c, "count": n} for c, n in sorted(stats.channels.items())],
        },
        "qualitative": {
            "npsScore": quality.nps_score,
            "averageRating": quality.average_rating,
            "preferences": quality.preferences,
        },
        "rfm": None
        if rfm is None
        else {
            "recencyScore": rfm.recency_score,
            "frequencyScore": rfm.frequency_score,
            "monetaryScore": rfm.monetary_score,
            "segment": rfm.segment,
        },
        "interactions": {
            "edges": [
                {"node": {"type": i.type, "channel": i.channel, "timestamp": i.timestamp, "properties": i.properties}}
                for i in page
            ],
            "pageInfo": {
                "hasNextPage": len(interactions) > INTERACTIONS,
                "endCursor": _cursor(page[-1]) if page else None,
            },
        },
    }


def _cursor(interaction: Interaction) -> str:
    raw = f"interaction:{to_iso(interaction.timestamp)}|{interaction.message_id}".encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def create_app(database: str) -> Starlette:
    holder: dict[str, SQLiteStore] = {}

    @asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        holder["store"] = SQLiteStore(database)
        try:
            yield
        finally:
            await holder["store"].close()

    async def healthz(request: Request) -> Response:
        return JSONResponse({"status": "ok"})

    async def profile(request: Request) -> Response:
        variables = orjson.loads(await request.body())["variables"]
        store = holder["store"]
        found = await get_profile_by_identifier(store, variables["type"], variables["value"])
        data = None
        if found is not None:
            interactions = await store.list_interactions(
                found.id, before=None, where=InteractionFilter(), limit=INTERACTIONS + 1
            )
            data = shape(found, interactions)
        return Response(orjson.dumps({"data": {"profileByIdentifier": data}}), media_type="application/json")

    return Starlette(
        routes=[Route("/healthz", healthz), Route("/graphql", profile, methods=["POST"])], lifespan=lifespan
    )


@contextmanager
def served(database: Path, log_dir: Path, core: int | None, name: str = "profile-floor") -> Iterator[Server]:
    """This endpoint in its own uvicorn process on `database` (the app's log level), pinned to `core`."""
    args = ["-m", "bench.profile_floor_app", "--database", str(database), "--log-level", SERVER_LOG_LEVEL]
    with server(name, args, env={}, log_dir=log_dir) as floor:
        process_tree.pin(floor.process.pid, core)
        yield floor


def main() -> None:
    import uvicorn

    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--database", required=True)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--log-level", default="warning")
    args = parser.parse_args()
    if args.host != "127.0.0.1":
        parser.error("the benchmark servers listen on 127.0.0.1 only")
    uvicorn.run(create_app(args.database), host=args.host, port=args.port, log_level=args.log_level, lifespan="on")


if __name__ == "__main__":
    main()
