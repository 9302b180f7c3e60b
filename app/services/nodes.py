"""What an id names, for Relay's `node(id)`: a profile (an id merged away names the surviving profile,
as `profile(id)` has it), else a segment.

Ids are the objects' own, as every other field and argument gives and takes them. Ids the server
makes never collide: a profile's is 32 hexadecimal digits, a segment's starts with `seg_`. Imported
data keeps its ids; should an imported segment share a profile's id, the profile is what it names
(`segment(id)` still finds the segment).
"""

from __future__ import annotations

from app.domain.profile import Profile
from app.domain.segments.segment import Segment
from app.services.ports import ProfileStore
from app.services.profile_reads import get_profile


async def find_node(store: ProfileStore, node_id: str) -> Profile | Segment | None:
    profile = await get_profile(store, node_id)
    if profile is not None:
        return profile
    return await store.get_segment(node_id)
