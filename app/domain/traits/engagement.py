"""Engagement per channel, from the counters kept on every event (no history read).

Rates are over the customer's span: from first seen to the analysis time, at least a week for weekly
rates and a month for monthly ones, so that a customer seen yesterday is not extrapolated to
hundreds of visits a week. See `Engagement` for why email has no open rate per email received.
"""

from __future__ import annotations

from datetime import datetime

from app.domain.profile import Engagement, Stats

DAYS_PER_WEEK = 7.0
DAYS_PER_MONTH = 30.44


def engagement(stats: Stats, *, as_of: datetime) -> Engagement:
    if stats.first_seen_at is None:
        return Engagement()
    days = max(0.0, (as_of - stats.first_seen_at).total_seconds() / 86_400)
    weeks = max(days, DAYS_PER_WEEK) / DAYS_PER_WEEK
    months = max(days, DAYS_PER_MONTH) / DAYS_PER_MONTH
    return Engagement(
        email_opens_per_month=round(stats.email_opens / months, 3),
        email_click_to_open_rate=round(min(1.0, stats.email_clicks / stats.email_opens), 3)
        if stats.email_opens
        else None,
        visits_per_week=round(stats.visits / weeks, 3),
        events_per_week={channel: round(count / weeks, 3) for channel, count in sorted(stats.channels.items())},
    )
