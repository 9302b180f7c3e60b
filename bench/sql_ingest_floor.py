"""The ingestion floor: the rows the server writes for a batch of events, written by hand-written SQL
in one transaction per batch, with the embedded store's connection settings (WAL, synchronous=FULL,
secure_delete). Run by bench/serving.py as its own process, pinned to the server's core:

    python -m bench.sql_ingest_floor DATABASE BODIES --batches N --tag TAG

Per batch, as batch-native ingestion would: one query for the replays (processed_messages), one for
the owners of every identifier (identities); a profile and its identity inserted for each new
identifier; each touched profile read once, its JSON document updated in memory for each of its
events (counters, first/last times, visits, order totals, consents, survey answers, identify fields,
the 50 newest interactions), written once with a new revision and its row's pad, as the store pads it
(app/store/sqlite/profile_rows.py); the interactions their profiles' recent lists do not hold (this
batch's and those it pushed out, as app/store/sqlite/history_rows.py keeps them), processed-message
keys and consent decisions inserted in bulk; one commit; the log copied back into the file by a thread, as
the store does (app/store/sqlite/checkpoints.py). Not done (the server does them): validation and normalisation of
events and identifiers, merges, blocking keys, segment upkeep and segment events.
"""

from __future__ import annotations

import argparse
import sqlite3
import time
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import orjson

from app.store.sqlite import profile_rows
from app.store.sqlite.checkpoints import LOG_LIMIT_BYTES, Checkpointer, restart_after_copying
from app.store.sqlite.store import WRITER_CACHE_KIB

RECENT_CAP = 50
RATINGS_CAP = 20
VISIT_GAP = timedelta(minutes=30)
IDEMPOTENCY_TTL = timedelta(days=30)
ROWS_PER_QUERY = 500
COUNTERS = {
    "page_view": "pageViews",
    "product_view": "productViews",
    "add_to_cart": "addToCarts",
    "cart_abandoned": "cartAbandons",
    "order_completed": "orders",
    "order_returned": "returns",
    "email_open": "emailOpens",
    "email_click": "emailClicks",
    "email_reply": "emailReplies",
    "support_contact": "supportContacts",
    "survey_response": "surveyResponses",
}
VISIT_TYPES = {"page_view", "product_view", "add_to_cart"}
VISIT_CHANNELS = {"web", "mobile"}


def connect(path: Path) -> sqlite3.Connection:
    db = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
    for pragma in (
        "journal_mode=WAL",
        "busy_timeout=5000",
        "synchronous=FULL",
        "secure_delete=ON",
        f"journal_size_limit={LOG_LIMIT_BYTES}",
    ):
        db.execute(f"PRAGMA {pragma}")
    return db


def connect_writer(path: Path) -> tuple[sqlite3.Connection, Checkpointer]:
    """As the store's writer: its page cache, no checkpoint inside a COMMIT, the log copied back by a thread."""
    db = connect(path)
    db.execute("PRAGMA wal_autocheckpoint=0")
    db.execute(f"PRAGMA cache_size=-{WRITER_CACHE_KIB}")
    return db, Checkpointer(lambda: connect(path), database=path, name="floor-checkpoint")


def iso(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"


def write_batch(
    db: sqlite3.Connection, events: list[dict[str, Any]], checkpoints: Checkpointer | None = None
) -> dict[str, int]:
    now = datetime.now(UTC)
    at, expires = iso(now), iso(now + IDEMPOTENCY_TTL)
    page = profile_rows.page_bytes(db)
    if checkpoints is not None:  # as the store's writer: the log restarted once past its limit
        checkpoints.keep_log_short(lambda wait_ms: restart_after_copying(db, wait_ms=wait_ms, then_ms=5000))
    db.execute("BEGIN IMMEDIATE")
    seen = set(_select(db, "SELECT message_id FROM processed_messages WHERE message_id IN ({})", [
        e["messageId"] for e in events]))  # fmt: skip
    fresh = []
    for event in events:
        if event["messageId"] not in seen:
            seen.add(event["messageId"])
            fresh.append(event)
    keys = {_key(e) for e in fresh}
    owners = dict(_select(db, "SELECT key, profile_id FROM identities WHERE key IN ({})", sorted(keys), pairs=True))
    docs: dict[str, dict[str, Any]] = {}
    created = []
    for key in sorted(keys - owners.keys()):
        profile_id = uuid.uuid4().hex
        owners[key] = profile_id
        kind, value = key.split(":", 1)
        docs[profile_id] = _new_profile(profile_id, kind, value, at)
        created.append(profile_id)
        db.execute(
            "INSERT INTO identities (key, profile_id, type, created_at) VALUES (?, ?, ?, ?)",
            (key, profile_id, kind, at),
        )
    existing = sorted({owners[k] for k in keys} - set(created))
    for profile_id, doc in _select(db, "SELECT id, doc FROM profiles WHERE id IN ({})", existing, pairs=True):
        docs[profile_id] = orjson.loads(doc)
    listed = {p: doc.get("recent", []) for p, doc in docs.items()}  # as stored, before the batch
    interactions, messages, consents = [], [], []
    for event in fresh:
        profile_id = owners[_key(event)]
        interaction = _apply(docs[profile_id], event, at)
        interactions.append(
            (profile_id, interaction["timestamp"], event["messageId"], event["type"], event["channel"],
             orjson.dumps(interaction).decode())
        )  # fmt: skip
        messages.append((event["messageId"], profile_id, expires))
        if event["type"] == "consent_update":
            decision = {"profileId": profile_id, "purpose": event["properties"]["purpose"],
                        "granted": event["properties"]["granted"], "source": event["channel"],
                        "at": interaction["timestamp"], "messageId": event["messageId"]}  # fmt: skip
            consents.append((profile_id, interaction["timestamp"], orjson.dumps(decision).decode()))
    # Rows only for what the recent lists do not hold: this batch's and those it pushed out of them.
    kept = {(p, i["timestamp"], i["messageId"]) for p, doc in docs.items() for i in doc["recent"]}
    pushed_out = [(p, i["timestamp"], i["messageId"], i["type"], i["channel"], orjson.dumps(i).decode())
                  for p in existing for i in listed[p] if (p, i["timestamp"], i["messageId"]) not in kept]  # fmt: skip
    interactions = pushed_out + [row for row in interactions if row[:3] not in kept]
    for doc in docs.values():
        doc["version"] = doc.get("version", 0) + 1
        doc["updatedAt"] = at
    texts = {p: orjson.dumps(doc) for p, doc in docs.items()}
    pads = {p: profile_rows.padding(len(text), p, None, page=page) for p, text in texts.items()}
    db.executemany(
        "INSERT INTO profiles (id, revision, doc, version, merged_into, pad) "
        "VALUES (?, random(), ?, ?, NULL, zeroblob(?))",
        [(p, texts[p].decode(), docs[p]["version"], pads[p]) for p in created],
    )
    db.executemany(
        "UPDATE profiles SET revision = random(), doc = ?, version = ?, pad = zeroblob(?) WHERE id = ?",
        [(texts[p].decode(), docs[p]["version"], pads[p], p) for p in existing],
    )
    db.executemany(
        "INSERT OR IGNORE INTO interactions (profile_id, ts, message_id, type, channel, doc) VALUES (?, ?, ?, ?, ?, ?)",
        interactions,
    )
    db.executemany("INSERT INTO processed_messages (message_id, profile_id, expires_at) VALUES (?, ?, ?)", messages)
    db.executemany("INSERT INTO consent_log (profile_id, at, doc) VALUES (?, ?, ?)", consents)
    db.execute("COMMIT")
    if checkpoints is not None:
        checkpoints.committed()
    return {"events": len(events), "duplicates": len(events) - len(fresh), "created": len(created),
            "updated": len(existing), "interactions": len(interactions), "consents": len(consents)}  # fmt: skip


def _select(db: sqlite3.Connection, sql: str, values: list[str], *, pairs: bool = False) -> list[Any]:
    found: list[Any] = []
    for start in range(0, len(values), ROWS_PER_QUERY):
        chunk = values[start : start + ROWS_PER_QUERY]
        rows = db.execute(sql.format(",".join("?" * len(chunk))), chunk).fetchall()
        found += rows if pairs else [r[0] for r in rows]
    return found


def _key(event: dict[str, Any]) -> str:
    identifier = event["identifiers"][0]
    value = identifier["value"].strip()
    return f"{identifier['type']}:{value.lower() if identifier['type'] == 'email' else value}"


def _new_profile(profile_id: str, kind: str, value: str, at: str) -> dict[str, Any]:
    return {"_id": profile_id, "identifiers": [{"type": kind, "value": value, "addedAt": at}], "traits": {},
            "qualitative": {"ratingCount": 0, "ratingSum": 0, "ratings": [], "preferences": {}}, "consents": {},
            "stats": {"channels": {}}, "segments": [], "recent": [], "version": 0, "createdAt": at}  # fmt: skip


def _apply(doc: dict[str, Any], event: dict[str, Any], at: str) -> dict[str, Any]:
    """The event's effect on the profile document; returns the interaction document."""
    moment = datetime.fromisoformat(event["timestamp"])
    ts = iso(moment)
    kind, channel, props = event["type"], event["channel"], event["properties"]
    stats = doc.setdefault("stats", {})
    stats["eventsTotal"] = stats.get("eventsTotal", 0) + 1
    channels = stats.setdefault("channels", {})
    channels[channel] = channels.get(channel, 0) + 1
    stats["firstSeenAt"] = min(stats.get("firstSeenAt") or ts, ts)
    stats["lastSeenAt"] = max(stats.get("lastSeenAt") or ts, ts)
    if counter := COUNTERS.get(kind):
        stats[counter] = stats.get(counter, 0) + 1
    if kind in VISIT_TYPES and channel in VISIT_CHANNELS:
        last = stats.get("lastVisitAt")
        if last is None or abs(moment - datetime.fromisoformat(last)) > VISIT_GAP:
            stats["visits"] = stats.get("visits", 0) + 1
        stats["lastVisitAt"] = max(last or ts, ts)
    match kind:
        case "order_completed":
            stats["revenueCents"] = stats.get("revenueCents", 0) + round(props["total"] * 100)
            stats["itemsPurchased"] = stats.get("itemsPurchased", 0) + sum(x["quantity"] for x in props["lines"])
            stats["lastOrderAt"] = max(stats.get("lastOrderAt") or ts, ts)
            stats["firstOrderAt"] = min(stats.get("firstOrderAt") or ts, ts)
        case "order_returned":
            stats["returnedCents"] = stats.get("returnedCents", 0) + round(props["amount"] * 100)
        case "cart_abandoned":
            stats["lastCartAbandonAt"] = max(stats.get("lastCartAbandonAt") or ts, ts)
        case "survey_response":
            quality = doc.setdefault("qualitative", {})
            if "nps" in props:
                quality["npsScore"], quality["npsAt"] = props["nps"], ts
            if "rating" in props:
                quality["ratingCount"] = quality.get("ratingCount", 0) + 1
                quality["ratingSum"] = quality.get("ratingSum", 0) + props["rating"]
                ratings = [{"rating": props["rating"], "at": ts}, *quality.get("ratings", [])]
                quality["ratings"] = sorted(ratings, key=lambda r: r["at"], reverse=True)[:RATINGS_CAP]
        case "consent_update":
            doc.setdefault("consents", {})[props["purpose"]] = {"granted": props["granted"], "source": channel,
                                                                 "at": ts}  # fmt: skip
        case "identify":
            if "language" in props:
                doc["language"] = props["language"]
            doc.setdefault("traits", {}).update(props.get("traits") or {})
        case _:
            pass
    interaction = {"messageId": event["messageId"], "type": kind, "channel": channel, "timestamp": ts,
                   "properties": props, "origin": doc["_id"], "receivedAt": at,
                   "identifiers": [_key(event)]}  # fmt: skip
    recent = [interaction, *doc.get("recent", [])]
    recent.sort(key=lambda i: (i["timestamp"], i["messageId"]), reverse=True)
    doc["recent"] = recent[:RECENT_CAP]
    return interaction


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("database", type=Path)
    parser.add_argument("bodies", type=Path, help="ingestEvents request bodies, one JSON per line (bench/wrk.py)")
    parser.add_argument("--batches", type=int, required=True)
    parser.add_argument("--tag", default="floor", help="replaces __UID__ in message ids, as load.lua does")
    args = parser.parse_args()
    bodies = args.bodies.read_bytes().splitlines()
    db, checkpoints = connect_writer(args.database)
    totals: dict[str, int] = {}
    busy = 0.0
    try:
        for n in range(args.batches):
            body = bodies[n % len(bodies)].replace(b"__UID__", f"{args.tag}-{n}".encode())
            started = time.perf_counter()
            counts = write_batch(db, orjson.loads(body)["variables"]["events"], checkpoints)
            busy += time.perf_counter() - started
            for name, value in counts.items():
                totals[name] = totals.get(name, 0) + value
    finally:
        checkpoints.close()
        db.close()
    print(orjson.dumps({**totals, "batches": args.batches, "seconds": busy}).decode(), flush=True)


if __name__ == "__main__":
    main()
