"""A segment as stored, and the membership changes it produces.

The condition is kept as the client gave it (plain input, validated on every write) and parsed into a
tree when used, so that the stored form never depends on the tree's Python types. A segment used for
a consent purpose (`purpose`) only ever holds profiles that granted it: the purpose is one more
`consentGranted` leaf of the tree, so the batch query and the real-time predicate both honour it.
"""

from __future__ import annotations

import re
import time
import uuid
from collections.abc import Iterable
from datetime import datetime, timedelta
from enum import StrEnum
from typing import Any

from pydantic import Field

from app.domain.clock import dated_after
from app.domain.errors import InvalidInput
from app.domain.event_limits import is_valid_unicode
from app.domain.profile import StoredModel
from app.domain.segments.catalogue import PathCatalogue, ValueType, is_purpose
from app.domain.segments.conditions import And, Condition, ConsentGranted
from app.domain.segments.parser import parse_condition

NAME = re.compile(r"^\S.{0,99}\Z")
MAX_DESCRIPTION = 1_000
TRAIT = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,63}\Z")


class MembershipChange(StrEnum):
    ENTERED = "ENTERED"
    EXITED = "EXITED"


class Segment(StoredModel):
    id: str = Field(alias="_id")
    name: str
    description: str | None = None
    condition: dict[str, Any]
    purpose: str | None = None
    traits: dict[str, ValueType] = Field(default_factory=dict)  # declared trait names the condition may use
    created_at: datetime
    updated_at: datetime
    evaluated_at: datetime | None = None
    # New with every definition saved (two saved in one millisecond share `updated_at`); None for
    # segments saved before it existed.
    revision: str | None = None
    # When a deletion began (its members leave, then the definition goes): one cut short is finished.
    deleting_since: datetime | None = None

    def definition(self) -> tuple[datetime, str | None]:
        """What an evaluation or a membership decision was made on: it is written only while the
        segment stored is still this definition (not deleted, not changed since)."""
        return self.updated_at, self.revision

    def evaluation_unfinished(self) -> bool:
        """Whether no evaluation over the store finished since this definition was saved (each marks
        the segment evaluated as it ends): its stored members may be those of part of the store.
        Never while it is being deleted: what is left to finish then is the deletion."""
        return self.deleting_since is None and (self.evaluated_at is None or self.evaluated_at < self.updated_at)

    def tree(self) -> Condition:
        """The condition as a validated tree, with the consent purpose as a leaf when there is one."""
        tree = parse_condition(self.condition, PathCatalogue(traits=self.traits))
        return And((tree, ConsentGranted(self.purpose))) if self.purpose else tree


class SegmentEvent(StoredModel):
    id: str = Field(alias="_id")
    segment_id: str
    profile_id: str
    change: MembershipChange
    at: datetime
    cause: str
    # When the store deletes the event (an erased person's exits, see erasure_exits); None: kept.
    forget_at: datetime | None = None

    def stored(self) -> dict[str, Any]:
        """The document a store keeps (`forgetAt` only on the events that have one)."""
        return self.model_dump(by_alias=True, exclude_none=True)


# An erased person's exits are kept this long: every server process's follower of the committed
# changes (polling every 50 ms; a MongoDB change stream) delivers them to its subscribers by then.
ERASURE_EXITS_KEPT = timedelta(minutes=5)


def new_event_id() -> str:
    """Ids that sort in the order events were made (the tie-break for events of one millisecond):
    strictly increasing, as a unit of work makes many within the clock's resolution."""
    _last_event_ns[0] = stamp = max(time.time_ns(), _last_event_ns[0] + 1)
    return f"sev_{stamp:020d}{uuid.uuid4().hex[:8]}"


_last_event_ns = [0]
_EVENT_ID = re.compile(r"sev_\d{20}[0-9a-f]{8}")


def is_event_id(text: str) -> bool:
    """Whether `text` is an id `new_event_id` makes: one that names no stored event was deleted since
    (an erasure takes the person's changes; an erased person's exits go 5 minutes later), and a page
    of the history before it holds the events made before it, which its id orders."""
    return _EVENT_ID.fullmatch(text) is not None


def event_time(now: datetime, latest: datetime | None) -> datetime:
    """When changes recorded now are dated: now, or just after the newest change recorded (`latest`)
    when the clock reads no later (set back, or another server's clock behind). The history is ordered
    by time, and a subscriber catching up pages back through it until the last change it heard: a
    change dated before that one, though made after it, was never found. A newest change dated more
    than CLOCK_STEP_KEPT ahead was dated by a clock that was wrong: later ones are dated now, rather
    than all after it until the time comes."""
    if latest is not None and latest - now > CLOCK_STEP_KEPT:
        return now
    return dated_after(now, latest)


CLOCK_STEP_KEPT = timedelta(minutes=5)


def erasure_exits(profile_id: str, segment_ids: Iterable[str], *, at: datetime, cause: str) -> list[SegmentEvent]:
    """An erased person leaving their segments: recorded with the erasure, so that subscribers on
    every process hear it (a downstream audience drops the person), and forgotten ERASURE_EXITS_KEPT
    later, as the rest of the person's history was at once."""
    return [
        SegmentEvent(
            _id=new_event_id(),
            segment_id=segment_id,
            profile_id=profile_id,
            change=MembershipChange.EXITED,
            at=at,
            cause=cause,
            forget_at=at + ERASURE_EXITS_KEPT,
        )
        for segment_id in segment_ids
    ]


def checked_segment(segment: Segment) -> Condition:
    """Validate a segment about to be stored; returns its tree."""
    if not NAME.match(segment.name):
        raise InvalidInput("name: 1-100 characters, not starting with a space", field="name")
    if segment.description is not None and len(segment.description) > MAX_DESCRIPTION:
        raise InvalidInput(f"description: at most {MAX_DESCRIPTION:,} characters", field="description")
    for field, text in (("name", segment.name), ("description", segment.description or "")):
        if not is_valid_unicode(text):  # no store could encode it: an internal error before
            raise InvalidInput(f"{field}: not valid Unicode (it holds a lone surrogate)", field=field)
    if segment.purpose is not None and not is_purpose(segment.purpose):
        raise InvalidInput("purpose: lower-case letters, digits or underscores", field="purpose")
    for trait in segment.traits:
        if not TRAIT.match(trait):
            raise InvalidInput(f"trait name {trait!r} is not a plain name", field="traits")
    return segment.tree()


def parse_traits(raw: Any) -> dict[str, ValueType]:
    if raw is None:
        return {}
    if not isinstance(raw, dict):
        raise InvalidInput('traits: an object of name → type, e.g. {"tier": "string"}', field="traits")
    declared: dict[str, ValueType] = {}
    for name, kind in raw.items():
        try:
            declared[str(name)] = ValueType(kind)
        except ValueError:
            raise InvalidInput(
                f"traits.{name}: type must be one of {', '.join(t.value for t in ValueType)}", field=f"traits.{name}"
            ) from None
    return declared
