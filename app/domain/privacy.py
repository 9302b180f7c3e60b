"""Privacy rights: consent decisions with their history, erasure, and the suppression list that
keeps an erased person from coming back.

The suppression list holds keyed hashes (HMAC-SHA256 with a secret kept by the store) of the
erased person's identifier keys: enough to recognise their identifiers on a late or replayed event,
useless for finding out who they were (a plain hash of an email is reversed by a dictionary).
"""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets
from collections.abc import Collection, Sequence
from datetime import datetime

from pydantic import Field

from app.domain.errors import InvalidInput
from app.domain.identifiers import Identifier
from app.domain.profile import Consent, StoredModel
from app.domain.profile_change import ProfileChange
from app.domain.stored_behaviour import ConsentTime
from app.domain.traits.computed import PROFILED_FIELDS, PROFILING

DEFAULT_PURPOSES = ("email_marketing", "sms_marketing", "personalisation", "analytics", "profiling")
SOURCE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9 ._:/-]{0,63}\Z")


class ConsentDecision(StoredModel):
    """One decision, kept forever (the current state per purpose lives on the profile)."""

    profile_id: str
    purpose: str
    granted: bool
    source: str
    at: datetime
    message_id: str | None = None  # when it came as a consent_update event
    # A decision made directly (setConsent): its own id, and the merged-away profile the caller named
    # when it was not the live one, whose person the decision goes back to if the merge is undone.
    decision_id: str | None = None
    named_id: str | None = None
    # When it was recorded, where that is later than `at` (None: at `at`): a withdrawal a restore
    # carried into a backup, dated when the person made it, is recorded after the backup's merges,
    # and an unmerge keeps it as it keeps a decision made while merged.
    recorded_at: datetime | None = None


class Erasure(StoredModel):
    """The audit record of an erasure: when, by whom, how much; no personal data."""

    id: str = Field(alias="_id")
    at: datetime
    actor: str
    profiles: int
    identifiers: int
    interactions: int


def check_purpose(purpose: str, purposes: tuple[str, ...], *, field: str = "purpose") -> str:
    if purpose not in purposes:
        raise InvalidInput(f"unknown purpose {purpose!r}; expected one of {', '.join(purposes)}", field=field)
    return purpose


def check_source(source: str) -> str:
    if not SOURCE.match(source):
        raise InvalidInput("source: 1-64 letters, digits, spaces or . _ : / -", field="source")
    return source


def supersedes(at: datetime, granted: bool, current: Consent | ConsentTime | None) -> bool:
    """Whether a decision made `at` replaces `current`: the newer one wins, and of two made at one
    instant, the refusal. Two decisions with one time (a banner's clicks sent in one batch, two
    profiles merged) left whichever came last: live, the one that arrived last; replayed by a merge
    or unmerge, the one whose messageId sorts last, so that a merge could turn an opt-out back into
    an opt-in. A refusal at a tie is the reading that never uses data the person may have refused."""
    return current is None or at > current.at or (at == current.at and not granted)


def record_consent(change: ProfileChange, purpose: str, *, granted: bool, source: str, at: datetime) -> None:
    """Set the profile's current decision for `purpose`. A refusal of profiling also withdraws what
    profiling the person made (RFM scores, engagement, preferences) at once, not at the next traits
    job: nothing keeps personalising on them or holding the person in segments built on them."""
    change.set[f"consents.{purpose}"] = {"granted": granted, "source": source, "at": at}
    if purpose == PROFILING and not granted:
        change.set |= dict.fromkeys(PROFILED_FIELDS)


def new_suppression_secret() -> str:
    return secrets.token_hex(32)


def suppression_hash(secret: str, identity_key: str) -> str:
    return hmac.new(bytes.fromhex(secret), identity_key.encode(), hashlib.sha256).hexdigest()


def kept_despite_erasure(
    identifiers: Sequence[Identifier], suppressed: Collection[str], owned: Collection[str]
) -> list[Identifier] | None:
    """The identifiers a write goes on with when some of them (`suppressed` keys) belong to an erased
    person: the others, when its strongest identifiers are none of those and one of them is someone's
    already (`owned` keys: a family's tablet, whose deviceId one of them took with their erasure,
    sending with another's email: the other's event, refused for good before); None otherwise (the
    erased person's write, or one that would make a new profile: a shop connected since, sending
    their email with its own new customer id, recreated them). Either way the erased person's
    identifiers are never claimed again."""
    if not any(i.key in suppressed for i in identifiers):
        return list(identifiers)
    strongest = min(i.strength for i in identifiers)
    top = [i for i in identifiers if i.strength == strongest]
    if any(i.key in suppressed for i in top) or not any(i.key in owned for i in top):
        return None
    return [i for i in identifiers if i.key not in suppressed]
