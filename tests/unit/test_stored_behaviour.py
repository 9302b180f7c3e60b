"""What an event's behaviour change reads, taken off a stored document (app/domain/stored_behaviour.py):
the same times the validated profile holds, from either store's form, and the same change for
every kind of event that reads them."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from app.domain.event_effects import behaviour_change, change_for_event
from app.domain.events import Channel, Event, EventType
from app.domain.profile import Consent, Profile, new_profile
from app.domain.stored_behaviour import StoredBehaviour
from app.store.documents import dumps, loads

AT = datetime(2026, 6, 1, 12, 0, 0, 123000, tzinfo=UTC)


def _customer() -> Profile:
    profile = new_profile("p-1", AT)
    profile.stats.last_visit_at = AT - timedelta(minutes=10)
    profile.qualitative.nps_at = AT - timedelta(days=2)
    profile.consents["email"] = Consent(granted=True, source="web", at=AT - timedelta(hours=1))
    return profile


def _forms(profile: Profile) -> dict[str, dict[str, Any]]:
    document = profile.to_document()
    naive = loads(dumps(document))  # as MongoDB's fake reads dates back: naive, UTC
    naive["stats"]["lastVisitAt"] = profile.stats.last_visit_at.replace(tzinfo=None)  # type: ignore[union-attr]
    return {"datetimes": document, "embedded store's text": loads(dumps(document)), "naive dates": naive}


@pytest.mark.parametrize("form", ["datetimes", "embedded store's text", "naive dates"])
def test_the_times_read_off_a_document_are_the_profiles(form: str) -> None:
    profile = _customer()
    read = StoredBehaviour.of(_forms(profile)[form])
    assert read.id == profile.id
    assert read.stats.last_visit_at == profile.stats.last_visit_at
    assert read.qualitative.nps_at == profile.qualitative.nps_at
    assert {p: c.at for p, c in read.consents.items()} == {p: c.at for p, c in profile.consents.items()}
    assert all(t.tzinfo is not None for t in (read.stats.last_visit_at, read.qualitative.nps_at))


def _event(kind: EventType, minutes: int, **properties: Any) -> Event:
    return Event(
        message_id=f"m-{kind}-{minutes}",
        type=kind,
        channel=Channel.WEB,
        timestamp=AT + timedelta(minutes=minutes),
        identifiers=[],
        properties=properties,
    )


@pytest.mark.parametrize(
    "event",
    [
        _event(EventType.PAGE_VIEW, 5),  # within the visit
        _event(EventType.PAGE_VIEW, 45),  # a new visit
        _event(EventType.SURVEY_RESPONSE, -60 * 24 * 3, nps=3),  # older than the NPS answer kept
        _event(EventType.SURVEY_RESPONSE, 1, nps=9, rating=4),
        _event(EventType.CONSENT_UPDATE, -120, purpose="email", granted=False),  # older than the decision
        _event(EventType.CONSENT_UPDATE, 1, purpose="email", granted=False),
        _event(EventType.CONSENT_UPDATE, 1, purpose="sms", granted=True),
    ],
    ids=lambda e: f"{e.type}{e.timestamp - AT}",
)
def test_a_change_computed_from_the_document_is_the_profiles(event: Event) -> None:
    profile = _customer()
    for document in _forms(profile).values():
        assert behaviour_change(StoredBehaviour.of(document), event, received_at=None) == behaviour_change(
            profile, event, received_at=None
        )


def test_an_identify_event_is_not_computed_without_the_whole_profile() -> None:
    profile = _customer()
    with pytest.raises(TypeError, match="whole profile"):
        change_for_event(
            StoredBehaviour.of(profile.to_document()), _event(EventType.IDENTIFY, 1, firstName="Emma"), [], at=AT
        )
