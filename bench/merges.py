"""Merges into a customer with a long history beside their floor: the same events ingested into it.

An anonymous visitor (a few page views under its own anonymousId) is merged into a customer holding
`--history` events by one event naming both identifiers, as a site's sign-in does: an automatic
merge on the per-event path, the embedded store's writer held throughout. The floor, in the same
round on the same store: another visitor's page views and its sign-in event sent with the customer's
email alone, i.e. the same events ingested straight into the customer, no merge. Rounds alternate
which goes first; the figures are each path's median over the rounds. In process (the store and the
services, no HTTP): what is timed is the writer's work, which HTTP would only add to.

    python -m bench merges                  # 20,000 events of history, 9 rounds
    python -m bench merges --quick          # 2,000 events, 5 rounds
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from datetime import UTC, datetime, timedelta

from app.domain.events import RawEvent, RawIdentifier
from app.services.ingestion import EventStatus, IngestionPolicy, ingest_events
from app.services.profile_reads import get_profile_by_identifier
from app.store.sqlite.store import SQLiteStore
from bench.common import heading, ratio, run_async, say, say_machine, table, temp_dir

CUSTOMER = ("email", "long.history@example.com")
VISITOR_EVENTS = 5
BATCH = 1000


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--history", type=int, default=20_000, help="events the customer holds (default 20,000)")
    parser.add_argument("--rounds", type=int, default=9, help="merges and floors, alternating (default 9)")
    parser.add_argument("--quick", action="store_true", help="2,000 events of history, 5 rounds")
    parser.add_argument("--tmp-dir", default=None, help="parent of the temporary directory")


def run(args: argparse.Namespace) -> None:
    history, rounds = (2_000, 5) if args.quick else (args.history, args.rounds)
    say("CDP core: merges into a long history beside their floor" + (" (quick)" if args.quick else ""))
    say(f"started {datetime.now(UTC):%Y-%m-%d %H:%M:%S} UTC; command: python -m bench {' '.join(sys.argv[1:])}")
    with temp_dir(args.tmp_dir) as work:
        heading("Machine")
        say_machine(work)
        merges, floors = run_async(_measure(SQLiteStore(work / "merges.sqlite3"), history, rounds))
    heading(f"Merging a visitor of {VISITOR_EVENTS} page views into a customer of {history:,} events, {rounds} rounds")
    table(
        ["path", "median", "min", "max"],
        [
            ["merge: the visitor's sign-in event names both", *_ms(merges)],
            ["floor: the same events sent with the customer's email", *_ms(floors)],
        ],
    )
    say(f"  merge / floor: {ratio(statistics.median(merges), statistics.median(floors))}")


async def _measure(store: SQLiteStore, history: int, rounds: int) -> tuple[list[float], list[float]]:
    """Per round, the time of the visitor's merge and of its floor (the visitor's events and sign-in)."""
    policy = IngestionPolicy()
    start = datetime.now(UTC) - timedelta(days=30)
    try:
        events = [_page_view(f"h{n}", [CUSTOMER], start + timedelta(minutes=n)) for n in range(history)]
        for first in range(0, history, BATCH):
            _accepted(await ingest_events(store, events[first : first + BATCH], policy))
        merges: list[float] = []
        floors: list[float] = []
        for number in range(rounds):
            for merged in (True, False) if number % 2 == 0 else (False, True):
                at = start + timedelta(minutes=history + 100 * (2 * number + merged))
                visitor = ("anonymousId", f"visitor-{number}-{merged}")
                views = [
                    _page_view(f"v{number}-{merged}-{n}", [visitor if merged else CUSTOMER], at + timedelta(minutes=n))
                    for n in range(VISITOR_EVENTS)
                ]
                sign_in = RawEvent(
                    message_id=f"s{number}-{merged}",
                    type="identify",
                    channel="web",
                    timestamp=(at + timedelta(minutes=VISITOR_EVENTS)).isoformat(),
                    identifiers=[RawIdentifier(*CUSTOMER), *([RawIdentifier(*visitor)] if merged else [])],
                    properties={"firstName": "Long"},
                )
                if merged:  # the visitor's own profile, before the clock starts
                    _accepted(await ingest_events(store, views, policy))
                began = time.perf_counter()
                if not merged:  # the floor ingests the visitor's events here, into the customer
                    _accepted(await ingest_events(store, views, policy))
                _accepted(await ingest_events(store, [sign_in], policy))
                (merges if merged else floors).append(time.perf_counter() - began)
        customer = await get_profile_by_identifier(store, *CUSTOMER)
        expected = history + rounds * 2 * (VISITOR_EVENTS + 1)
        if customer is None or customer.stats.events_total != expected:
            raise RuntimeError(f"the customer holds {customer and customer.stats.events_total} events, not {expected}")
        return merges, floors
    finally:
        await store.close()


def _ms(seconds: list[float]) -> list[str]:
    return [f"{value * 1000:,.1f} ms" for value in (statistics.median(seconds), min(seconds), max(seconds))]


def _page_view(message_id: str, identifiers: list[tuple[str, str]], at: datetime) -> RawEvent:
    return RawEvent(
        message_id=message_id,
        type="page_view",
        channel="web",
        timestamp=at.isoformat(),
        identifiers=[RawIdentifier(*identifier) for identifier in identifiers],
        properties={"url": "/"},
    )


def _accepted(outcomes: list[object]) -> None:
    refused = [o for o in outcomes if getattr(o, "status", None) is not EventStatus.ACCEPTED]
    if refused:
        raise RuntimeError(f"not accepted: {refused[:3]}")
