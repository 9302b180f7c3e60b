"""Time as the stores keep it: timezone-aware UTC, truncated to milliseconds (BSON date precision),
so a value read back from either backend equals the value written."""

from __future__ import annotations

from datetime import UTC, datetime


def utc_ms(moment: datetime) -> datetime:
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    moment = moment.astimezone(UTC)
    return moment.replace(microsecond=moment.microsecond // 1000 * 1000)


def now() -> datetime:
    return utc_ms(datetime.now(UTC))


def to_iso(moment: datetime) -> str:
    """Fixed-width ISO form whose string order equals time order (the embedded store relies on it)."""
    return utc_ms(moment).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"
