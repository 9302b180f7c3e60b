"""The predicted next order: the last order plus the mean interval between orders.

The mean of consecutive intervals telescopes to (last - first) / (orders - 1), so the counters kept
on every event are enough. Fewer than two orders: no interval, no prediction. A date in the past
is kept: the customer is overdue, which is what an at-risk campaign wants to know.
"""

from __future__ import annotations

from datetime import datetime

from app.domain.clock import utc_ms
from app.domain.profile import Stats


def next_order_at(stats: Stats) -> datetime | None:
    if stats.orders < 2 or stats.first_order_at is None or stats.last_order_at is None:
        return None
    mean = (stats.last_order_at - stats.first_order_at) / (stats.orders - 1)
    return utc_ms(stats.last_order_at + mean)
