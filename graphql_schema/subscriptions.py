"""Subscription resolvers: real-time segment membership changes over graphql-transport-ws."""

from __future__ import annotations

from collections.abc import AsyncGenerator

import strawberry
from starlette.websockets import WebSocket

from app.domain.access import Scope
from app.services.segment_bus import STALLED_SECONDS, SlowSubscriber
from app.services.segments import check_watched
from graphql_schema import broadcast
from graphql_schema.context import Info
from graphql_schema.permissions import requires
from graphql_schema.shared_events import shared_payload
from graphql_schema.types.segment import SegmentMembershipEvent

SLOW_SUBSCRIBER_CLOSE = 4029  # 4xxx: application-defined close codes


@strawberry.type
class Subscription:
    @strawberry.subscription(
        permission_classes=[requires(Scope.SUBSCRIBE)],
        description="Profiles entering and leaving segments as it happens; filter by segment, profile or both. "
        "A subscriber that stops reading (1,000 changes waiting, none read for 5 s) is disconnected (close 4029) "
        "rather than buffered forever.",
    )
    async def segment_membership_changed(
        self, info: Info, segment_id: strawberry.ID | None = None, profile_id: strawberry.ID | None = None
    ) -> AsyncGenerator[SegmentMembershipEvent, None]:
        bus = info.context.services.bus
        segment, profile = (str(segment_id) if segment_id else None), (str(profile_id) if profile_id else None)
        await check_watched(info.context.services.store, segment, profile)
        sharing = broadcast.sharing(info)
        group, outlet = (sharing.group, sharing.outlet) if sharing is not None else (None, None)
        release = sharing.admitted((segment, profile)) if sharing is not None else None
        try:
            async for heard in bus.listen_shared(segment, profile, group=group, owner=outlet):
                payload = shared_payload(heard.event.id, SegmentMembershipEvent.for_subscribers, heard.event)
                try:
                    if sharing is None:
                        yield payload
                    # Written from the group's answer, or executed (and written) for this subscriber;
                    # either way, for those of its group who waited on it first.
                    elif not await sharing.sent(payload, heard):
                        sharing.outlet.waiting = heard
                        yield payload
                finally:
                    if sharing is not None:
                        sharing.outlet.waiting = None
                    heard.release()  # any it did not write for (an answer with errors) take it in themselves
        except SlowSubscriber:
            socket = info.context.request
            if not isinstance(socket, WebSocket):
                raise
            # Documented, and said in the close: the subscription ends there, no server error.
            reason = f"too slow: over {bus.max_queue} changes unread, none read for {STALLED_SECONDS:.0f} s"
            await socket.close(code=SLOW_SUBSCRIBER_CLOSE, reason=reason)  # a reason fits in 123 bytes
        finally:
            if release is not None:
                release()
