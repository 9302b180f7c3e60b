"""What an event's behaviour change reads of a profile, read straight from its stored document.

Before each event, applying a batch (app/services/ingestion_batch.py) or replaying a history after a
merge (history_rebuild.py) needs only the last visit's time, the NPS answer's time and score, and
each consent's time and decision. Validating the whole profile again for them (pydantic: identifiers,
counters, addresses, …) cost more than the event's change itself: ~12% of a 1,000-event batch's CPU.
These are read from the document as it is, in either store's form (the embedded store's ISO texts,
or datetimes), with the same attribute names as the profile's, so `behaviour_change` reads either.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from app.domain.clock import utc_ms


@dataclass(frozen=True, slots=True)
class VisitTime:
    last_visit_at: datetime | None


@dataclass(frozen=True, slots=True)
class NpsTime:
    nps_at: datetime | None
    nps_score: int | None = None  # of two answers at one instant, the lower stands


@dataclass(frozen=True, slots=True)
class ConsentTime:
    at: datetime
    granted: bool = True  # of two decisions at one instant, the refusal stands


@dataclass(frozen=True, slots=True)
class StoredBehaviour:
    id: str
    stats: VisitTime
    qualitative: NpsTime
    consents: dict[str, ConsentTime]
    recent_items: list[dict[str, Any]]  # the document's own list, read only for an event that comes late

    def recent_activity(self) -> list[tuple[datetime, str, str]]:
        """(time, type, channel) of each interaction in the embedded recent list."""
        return [(_time(item["timestamp"]), item["type"], item["channel"]) for item in self.recent_items]  # type: ignore[misc]

    @classmethod
    def of(cls, document: dict[str, Any]) -> StoredBehaviour:
        stats, quality = document.get("stats") or {}, document.get("qualitative") or {}
        return cls(
            id=document["_id"],
            stats=VisitTime(_time(stats.get("lastVisitAt"))),
            qualitative=NpsTime(_time(quality.get("npsAt")), quality.get("npsScore")),
            consents={
                purpose: ConsentTime(at, bool(consent.get("granted")))
                for purpose, consent in (document.get("consents") or {}).items()
                if (at := _time(consent.get("at"))) is not None
            },
            recent_items=document.get("recent") or [],
        )


def _time(value: Any) -> datetime | None:
    """A stored time as the profile reads it: aware UTC, milliseconds (utc_ms keeps most as they are)."""
    if value is None:
        return None
    return utc_ms(datetime.fromisoformat(value) if isinstance(value, str) else value)
