"""What one event does to a profile: counters, first/last times, history and the fields it carries.

The result is a `ProfileChange`, so the whole effect of an event (stats and the history append)
lands in one single-document update. `behaviour_change` is the part that depends only on the
history, which is what rebuilding a profile after a merge or an unmerge replays.
"""

from __future__ import annotations

from collections.abc import Collection
from dataclasses import replace
from datetime import date, datetime, timedelta
from typing import Any

from app.domain.errors import InvalidInput
from app.domain.events import Channel, Event, EventType, to_minor_units
from app.domain.identifiers import Identifier
from app.domain.matching.fields import MatchFields, stated_person
from app.domain.name_initials import abbreviates
from app.domain.person_fields import MOST_ADDRESSES
from app.domain.privacy import ConsentDecision, record_consent, supersedes
from app.domain.profile import RECENT_INTERACTIONS_CAP, RECENT_RATINGS_CAP, Interaction, Profile
from app.domain.profile_bounds import traits_refusal
from app.domain.profile_change import CappedPush, ProfileChange, provenance_key
from app.domain.stored_behaviour import StoredBehaviour

# A visit is a run of web/app activity with no gap longer than this (the usual analytics session).
VISIT_GAP = timedelta(minutes=30)
_VISIT_CHANNELS = {Channel.WEB, Channel.MOBILE}
_VISIT_TYPES = {EventType.PAGE_VIEW, EventType.PRODUCT_VIEW, EventType.ADD_TO_CART}

_COUNTERS: dict[EventType, str] = {
    EventType.PAGE_VIEW: "stats.pageViews",
    EventType.PRODUCT_VIEW: "stats.productViews",
    EventType.ADD_TO_CART: "stats.addToCarts",
    EventType.CART_ABANDONED: "stats.cartAbandons",
    EventType.ORDER_COMPLETED: "stats.orders",
    EventType.ORDER_RETURNED: "stats.returns",
    EventType.EMAIL_OPEN: "stats.emailOpens",
    EventType.EMAIL_CLICK: "stats.emailClicks",
    EventType.EMAIL_REPLY: "stats.emailReplies",
    EventType.SUPPORT_CONTACT: "stats.supportContacts",
    EventType.SURVEY_RESPONSE: "stats.surveyResponses",
}

IDENTITY_FIELDS = ("firstName", "lastName", "birthDate", "gender", "language", "company", "jobTitle")
RECENT_ORDER = {"timestamp": -1, "messageId": -1}


def interaction_document(event: Event, *, origin: str, received_at: datetime) -> dict[str, Any]:
    return {
        "messageId": event.message_id,
        "type": str(event.type),
        "channel": str(event.channel),
        "timestamp": event.timestamp,
        "properties": event.properties,
        "origin": origin,
        "receivedAt": received_at,
        "identifiers": [i.key for i in event.identifiers],
    }


def landed_as(event: Event, foreign: Collection[str]) -> Event:
    """The event as the profile it lands on keeps it: without the identifiers (keys) of `foreign`,
    which another profile holds (merge protection kept the two apart, or automatic merges are off).
    They are that other person's data: kept here, they showed in this person's history and export,
    where that person's erasure never reached them. Where an event goes on an unmerge never depends
    on them either: it goes by its strongest identifier, the one that chose where it landed."""
    if not foreign:
        return event
    return replace(event, identifiers=[i for i in event.identifiers if i.key not in foreign])


def decided_at(event: Event, received_at: datetime | None) -> datetime:
    """When a consent_update event's decision was made: its timestamp, but never after the server
    received it. A sender's clock running fast (up to MAX_FUTURE_SKEW) dated a grant minutes ahead,
    and the person's refusal made a minute later lost to it as the older decision. The same from the
    stored interaction (its receivedAt) when a merge or unmerge replays it."""
    return event.timestamp if received_at is None else min(event.timestamp, received_at)


def consent_decision(event: Event, profile_id: str, *, received_at: datetime) -> ConsentDecision | None:
    """The decision a consent_update event records in the consent history (its source: the channel)."""
    if event.type is not EventType.CONSENT_UPDATE:
        return None
    props = event.properties
    return ConsentDecision(
        profile_id=profile_id,
        purpose=props["purpose"],
        granted=props["granted"],
        source=str(event.channel),
        at=decided_at(event, received_at),
        message_id=event.message_id,
    )


def event_of(interaction: Interaction) -> Event:
    """The event an interaction recorded (its identifiers are not needed to replay behaviour)."""
    return Event(
        message_id=interaction.message_id,
        type=EventType(interaction.type),
        channel=Channel(interaction.channel),
        timestamp=interaction.timestamp,
        identifiers=[],
        properties=interaction.properties,
    )


def change_for_event(
    profile: Profile | StoredBehaviour, event: Event, new_identifiers: list[Identifier], *, at: datetime
) -> ProfileChange:
    """What `event` does to the profile; one that identifies reads the whole profile (its fields'
    times and addresses), any other only what `StoredBehaviour` holds."""
    change = behaviour_change(profile, event, received_at=at)
    change.push["recent"] = CappedPush(
        [interaction_document(event, origin=profile.id, received_at=at)], RECENT_ORDER, RECENT_INTERACTIONS_CAP
    )
    if new_identifiers:
        change.append["identifiers"] = identifier_records(new_identifiers, at=at, source=str(event.channel))
    if event.type is EventType.IDENTIFY:
        if not isinstance(profile, Profile):
            raise TypeError("an identify event's change reads the whole profile")
        # Each field by the newest time, as consents and survey answers go, and as a merge's replay has
        # to: an older identify arriving late overwrote the newer name, and a merge then undone put the
        # newer one back, so the same events gave two profiles.
        _identify(profile, event, change)
    return change.stamped(at)


def behaviour_change(
    profile: Profile | StoredBehaviour, event: Event, *, received_at: datetime | None
) -> ProfileChange:
    """Counters, first/last times, visits, survey answers and consents: everything an event adds
    that follows from the history alone (and when it was received, which dates a consent)."""
    change = ProfileChange()
    stats = profile.stats
    ts = event.timestamp
    change.inc["stats.eventsTotal"] = 1
    change.inc[f"stats.channels.{event.channel}"] = 1
    change.min["stats.firstSeenAt"] = ts
    change.max["stats.lastSeenAt"] = ts
    counter = _COUNTERS.get(event.type)
    if counter:
        change.inc[counter] = 1

    if event.type in _VISIT_TYPES and event.channel in _VISIT_CHANNELS:
        last = stats.last_visit_at
        added = int(last is None or ts - last > VISIT_GAP) if last is None or ts >= last else _late_visit(profile, ts)
        if added:
            change.inc["stats.visits"] = added
        change.max["stats.lastVisitAt"] = ts

    props = event.properties
    match event.type:
        case EventType.ORDER_COMPLETED:
            change.inc["stats.revenueCents"] = to_minor_units(props["total"])
            change.inc["stats.itemsPurchased"] = sum(line["quantity"] for line in props.get("lines", []))
            change.max["stats.lastOrderAt"] = ts
            change.min["stats.firstOrderAt"] = ts
        case EventType.ORDER_RETURNED:
            change.inc["stats.returnedCents"] = to_minor_units(props["amount"])
        case EventType.CART_ABANDONED:
            change.max["stats.lastCartAbandonAt"] = ts
        case EventType.SURVEY_RESPONSE:
            _survey(profile, event, change)
        case EventType.CONSENT_UPDATE:
            at = decided_at(event, received_at)
            if supersedes(at, props["granted"], profile.consents.get(props["purpose"])):
                record_consent(change, props["purpose"], granted=props["granted"], source=str(event.channel), at=at)
        case _:
            pass
    return change


def reads_recent(event: Event, last_visit_at: datetime | None) -> bool:
    """Whether the event's change reads the profile's recent list: a visit earlier than the last one
    (`_late_visit`). A profile built without that list (Profile.for_change) cannot tell its neighbours."""
    return (
        event.type in _VISIT_TYPES
        and event.channel in _VISIT_CHANNELS
        and last_visit_at is not None
        and event.timestamp < last_visit_at
    )


def _late_visit(profile: Profile | StoredBehaviour, ts: datetime) -> int:
    """What an event earlier than the last visit adds to `visits` (1, 0 or -1), so that the count is the
    one a replay in time order gives (a merge, an unmerge), whatever order events arrive in: it starts
    a visit of its own, joins the visit before or after it, or joins two into one. Counted as a new
    visit whenever it was more than 30 minutes from the last one, 10:00, 12:00 then a late 10:05 made
    three visits, and a merge then made them two. Its neighbours are read from the embedded recent
    list; an event older than what that list covers keeps the former rule (README)."""
    if isinstance(profile, Profile):
        activity = [(i.timestamp, i.type, i.channel) for i in profile.recent]
    else:
        activity = profile.recent_activity()
    visits = sorted(at for at, kind, channel in activity if is_visit(kind, channel))
    complete = len(activity) < RECENT_INTERACTIONS_CAP or min(at for at, _, _ in activity) <= ts - VISIT_GAP
    if not complete:
        last = profile.stats.last_visit_at
        return int(last is None or abs(ts - last) > VISIT_GAP)
    before = max((at for at in visits if at <= ts), default=None)
    after = min((at for at in visits if at >= ts), default=None)
    return visit_added(ts, before, after)


def is_visit(kind: str, channel: str) -> bool:
    """Whether an interaction of this type on this channel is part of a visit. Stored interactions
    hold types and channels as text: the enums' members are equal to theirs."""
    return kind in _VISIT_TYPES and channel in _VISIT_CHANNELS


def visit_added(ts: datetime, before: datetime | None, after: datetime | None) -> int:
    """What a visit event at `ts` adds to the count of visits (1, 0 or -1), given the nearest visit
    events at or before it and at or after it (None: none): it starts a visit of its own, joins the
    visit before or after it, or joins those two into one. Only neighbours within VISIT_GAP matter."""
    joins_before = before is not None and ts - before <= VISIT_GAP
    joins_after = after is not None and after - ts <= VISIT_GAP
    already_one = before is not None and after is not None and after - before <= VISIT_GAP
    return 1 - joins_before - joins_after + (joins_before and joins_after and already_one)


def identifier_records(identifiers: list[Identifier], *, at: datetime, source: str | None) -> list[dict[str, Any]]:
    return [{"type": i.type, "value": i.value, "addedAt": at, "source": source} for i in identifiers]


def _survey(profile: Profile | StoredBehaviour, event: Event, change: ProfileChange) -> None:
    props = event.properties
    quality = profile.qualitative
    # Of two answers at one instant, the lower: whatever order they arrive or a merge replays them in.
    nps_at = quality.nps_at
    if "nps" in props and (
        nps_at is None
        or event.timestamp > nps_at
        or (event.timestamp == nps_at and props["nps"] < (quality.nps_score if quality.nps_score is not None else 11))
    ):
        change.set["qualitative.npsScore"] = props["nps"]
        change.set["qualitative.npsAt"] = event.timestamp
    if "rating" in props:
        change.inc["qualitative.ratingCount"] = 1
        change.inc["qualitative.ratingSum"] = props["rating"]
        rating = {"rating": props["rating"], "at": event.timestamp}
        rating.update({k: props[k] for k in ("productId", "comment") if k in props})
        change.push["qualitative.ratings"] = CappedPush([rating], {"at": -1}, RECENT_RATINGS_CAP)


def event_traits_refusal(profile: Profile, event: Event) -> InvalidInput | None:
    """The refusal of an identify event whose traits would take the profile's past their bound."""
    if event.type is not EventType.IDENTIFY:
        return None
    return traits_refusal(profile.traits, event.properties.get("traits"), field="properties.traits")


def stated_by(event: Event) -> MatchFields | None:
    """The given name and birth date an identify event states, as an upsert's are (`stated_person`)."""
    if event.type is not EventType.IDENTIFY:
        return None
    properties = event.properties
    born = properties.get("birthDate")  # validated as a date (IdentifyProperties), kept as its text
    return stated_person(
        properties.get("firstName"), properties.get("lastName"), date.fromisoformat(born) if born else None
    )


def identify_fields(properties: dict[str, Any]) -> dict[str, Any]:
    """path → value for what an identify event sets: identity fields, an address (added to
    `addresses`), traits."""
    fields = {name: properties[name] for name in IDENTITY_FIELDS if name in properties}
    if properties.get("address"):
        fields["addresses"] = properties["address"]
    for key, value in (properties.get("traits") or {}).items():
        fields[f"traits.{key}"] = value
    return fields


def replayed_identify(profile: Profile, event: Event) -> ProfileChange:
    """What an identify event sets when replayed onto a profile rebuilt after an unmerge: each field
    unless the profile's own value was set later, as ingestion does."""
    change = ProfileChange()
    _identify(profile, event, change)
    return change


def _identify(profile: Profile, event: Event, change: ProfileChange) -> None:
    source = str(event.channel)
    for path, value in identify_fields(event.properties).items():
        decided_at = profile.field_times.get(provenance_key(path))
        at = event.timestamp
        held = profile.first_name if path == "firstName" else None
        if abbreviates(value, held):  # "M." after "Marie"
            continue
        if decided_at is not None and decided_at > event.timestamp:  # set by a newer event or write
            if not abbreviates(held, value):
                continue
            at = decided_at  # "Marie" arriving after a newer "M.": the full name, as of the initial's time
        if path == "addresses":
            known = [a.model_dump(by_alias=True, exclude_none=True) for a in profile.addresses]
            if value in known:
                continue
            # The newest first, as many as an upsert may hold: 300 identify events with an address each
            # left 300 on the profile, which every later write read and wrote.
            value = [value, *known][:MOST_ADDRESSES]
        change.set_field(path, value, at=at, source=source)
