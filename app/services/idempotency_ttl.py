"""The idempotency keys' TTL the store was run with, so that a raise of CDP_IDEMPOTENCY_TTL_DAYS
never lets a replay through.

A key lives the TTL from its event's receipt; an event dated before that window is asked of its
profile's history (ingestion_batch.held), since its key may have been purged. Raised from 1 day to 30,
the TTL said that keys of events received 2 to 29 days ago were still there, when they had been
purged after a day: their replays were counted again. The store remembers the TTL; after a raise, the
shorter one decides which events are asked until the keys it governed are older than the new TTL."""

from __future__ import annotations

import dataclasses
import json
from datetime import datetime, timedelta
from typing import Any

from app.domain import clock
from app.services.ingestion import IngestionPolicy
from app.services.ports import ProfileStore

META_KEY = "idempotencyTtl"


async def with_remembered_ttl(store: ProfileStore, policy: IngestionPolicy) -> IngestionPolicy:
    """`policy` with the shorter TTL an earlier run wrote keys with (`purged_sooner`), the TTL it has
    now remembered for the next runs."""
    now, ttl = clock.now(), policy.idempotency_ttl
    text = await store.read_meta(META_KEY)
    stored = json.loads(text) if text else {}
    sooner: tuple[timedelta, datetime] | None = None
    if (kept := stored.get("sooner")) is not None and (until := clock.parse_time(kept["until"])) > now:
        sooner = (timedelta(seconds=kept["ttlSeconds"]), until)
    if "ttlSeconds" in stored and (before := timedelta(seconds=stored["ttlSeconds"])) < ttl:
        # Keys received until now may have been purged `before` after receipt; by now + ttl, every
        # event received until now is outside the window anyway.
        raised = (before, now + ttl)
        sooner = raised if sooner is None else (min(sooner[0], before), max(sooner[1], raised[1]))
    remembered: dict[str, Any] = {"ttlSeconds": ttl.total_seconds()}
    if sooner is not None:
        remembered["sooner"] = {"ttlSeconds": sooner[0].total_seconds(), "until": clock.to_iso(sooner[1])}
    if remembered != stored:
        await store.write_meta(META_KEY, json.dumps(remembered))
    return dataclasses.replace(policy, purged_sooner=sooner)
