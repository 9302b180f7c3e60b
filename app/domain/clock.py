"""Time as the stores keep it: timezone-aware UTC, truncated to milliseconds (BSON date precision),
so a value read back from either backend equals the value written."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

_ZERO = timedelta(0)


def utc_ms(moment: datetime) -> datetime:
    if not moment.microsecond % 1000:  # already at millisecond precision: most calls, on every value read or written
        if moment.tzinfo is UTC:
            return moment
        if moment.tzinfo is not None and moment.utcoffset() == _ZERO:  # e.g. pydantic's UTC, read from JSON
            return moment.replace(tzinfo=UTC)
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    moment = moment.astimezone(UTC)
    return moment.replace(microsecond=moment.microsecond // 1000 * 1000)


def now() -> datetime:
    return utc_ms(datetime.now(UTC))


# Times already written, by value: a profile's history is written again with every change to it, so
# most times a write encodes were encoded before, and a lookup is ~30 times cheaper than formatting.
_ISO_WRITTEN: dict[datetime, str] = {}
_ISO_WRITTEN_MAX = 65_536  # then forgotten all at once: a cache, never a growing map


def to_iso(moment: datetime) -> str:
    """Fixed-width ISO form whose string order equals time order (the embedded store relies on it)."""
    text = _ISO_WRITTEN.get(moment)  # equal instants are equal keys whatever their tzinfo: same UTC text
    if text is None:
        if len(_ISO_WRITTEN) >= _ISO_WRITTEN_MAX:
            _ISO_WRITTEN.clear()
        text = _ISO_WRITTEN[moment] = _format_iso(moment)
    return text


def _format_iso(moment: datetime) -> str:
    # Checked inline, not by calling utc_ms: a time read back from JSON is UTC milliseconds with
    # pydantic's own UTC tzinfo, not UTC itself.
    if moment.microsecond % 1000 or moment.utcoffset() != _ZERO:
        moment = utc_ms(moment)
    if moment.year >= 1000:  # isoformat is several times faster; strftime's %Y does not pad years below 1000
        return moment.isoformat(timespec="milliseconds")[:-6] + "Z"  # without its "+00:00"
    return moment.strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"
