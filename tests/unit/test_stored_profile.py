"""Reading a profile back from the JSON text the embedded store wrote (pure, no store): the fast
read gives the profile the full validation gives, deep free-form data cut included, and the
encoder writes every time in the one fixed-width form whatever its timezone object."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import pytest
from pydantic_core import TzInfo

from app.domain.clock import to_iso, utc_ms
from app.domain.event_limits import MAX_STORED_DEPTH, TOO_DEEP_MARKER
from app.domain.profile import Profile, new_profile
from app.store.documents import dumps, loads

AT = datetime(2026, 6, 1, 12, 0, 0, 123000, tzinfo=UTC)


def _nested(levels: int) -> Any:
    value: Any = {"a": 1}
    for _ in range(levels - 1):
        value = {"a": value}
    return value


def _depth(value: Any) -> int:
    depth = 0
    while isinstance(value, dict):
        depth, value = depth + 1, value["a"]
    return depth


def _stored(**fields: Any) -> str:
    """A profile's document as the embedded store writes it."""
    recent = {
        "messageId": "m-1",
        "type": "page_view",
        "channel": "web",
        "timestamp": AT,
        "receivedAt": AT,
        "properties": fields.pop("properties", {"url": "/"}),
    }
    document = new_profile("p-1", AT).to_document() | {"recent": [recent], "birthDate": "1990-02-03"} | fields
    return dumps(document)


@pytest.mark.parametrize(
    "fields",
    [
        pytest.param({}, id="plain"),
        pytest.param({"traits": {"l": [[1, 2], {"b": [3]}] * 40}}, id="many-brackets-shallow"),
        pytest.param({"traits": {"deep": _nested(MAX_STORED_DEPTH - 1)}}, id="deep-within-the-bound"),
        pytest.param({"traits": {"deep": _nested(MAX_STORED_DEPTH + 5)}}, id="traits-too-deep"),
        pytest.param({"properties": {"url": "/", "x": _nested(200)}}, id="history-too-deep"),
        pytest.param(
            {"qualitative": {"preferences": {"x": _nested(MAX_STORED_DEPTH)}}, "traits": {"t": "{[{["}}, id="pref-deep"
        ),
    ],
)
def test_the_fast_read_of_stored_text_gives_the_fully_validated_profile(fields: dict[str, Any]) -> None:
    text = _stored(**fields)
    assert Profile.from_own_json(text) == Profile.from_document(loads(text))


def test_free_form_data_stored_too_deep_is_cut_on_the_fast_read() -> None:
    profile = Profile.from_own_json(_stored(traits={"deep": _nested(MAX_STORED_DEPTH + 10)}))
    deep = profile.traits["deep"]
    assert _depth(deep) == MAX_STORED_DEPTH - 1  # traits is the first level
    for _ in range(MAX_STORED_DEPTH - 1):
        deep = deep["a"]
    assert deep == TOO_DEEP_MARKER


def test_the_fast_read_gives_utc_millisecond_times() -> None:
    profile = Profile.from_own_json(_stored())
    for moment in (profile.created_at, profile.updated_at, profile.recent[0].timestamp):
        assert moment == AT and moment.utcoffset() == timedelta(0) and utc_ms(moment) == moment
    assert profile.birth_date is not None and profile.birth_date.isoformat() == "1990-02-03"


def _to_iso_before(moment: datetime) -> str:
    """to_iso as it was before its inline check: the reference the encoder must keep matching (the
    year zero-padded to four digits, which strftime's %Y is not on Linux)."""
    moment = utc_ms(moment)
    return f"{moment.year:04d}" + moment.isoformat(timespec="milliseconds")[4:-6] + "Z"


def test_stored_times_sort_as_text_in_time_order_whatever_the_year() -> None:
    """README: the embedded store compares times as text. Unpadded, year 999 was `999-…`, after every
    later year, and pydantic could not read it back: the profile holding it was neither read nor erased."""
    moments = [datetime(year, 6, 1, tzinfo=UTC) for year in (1, 99, 999, 1000, 2026)]
    texts = [to_iso(moment) for moment in moments]
    assert sorted(texts) == texts and {len(text) for text in texts} == {24}
    assert [Profile.model_validate({"_id": "p", "createdAt": t, "updatedAt": t}).created_at for t in texts] == moments


@pytest.mark.parametrize(
    "moment",
    [
        pytest.param(AT, id="utc-ms"),
        pytest.param(AT.replace(tzinfo=TzInfo(0)), id="pydantic-utc"),
        pytest.param(AT.replace(microsecond=999_999), id="microseconds-truncated"),
        pytest.param(AT.replace(microsecond=0), id="whole-second"),
        pytest.param(AT.replace(tzinfo=None), id="naive"),
        pytest.param(AT.replace(tzinfo=timezone(timedelta(hours=-5))), id="offset"),
        pytest.param(AT.replace(tzinfo=TzInfo(3600), microsecond=1500), id="pydantic-offset"),
        pytest.param(datetime(999, 12, 31, 23, 59, 59, 999_999, tzinfo=UTC), id="year-999"),
        pytest.param(datetime(1, 1, 1, tzinfo=UTC), id="year-1"),
        pytest.param(datetime(1000, 1, 1, tzinfo=TzInfo(0)), id="year-1000"),
        pytest.param(datetime(9999, 12, 31, 23, 59, 59, 999_999, tzinfo=UTC), id="year-9999"),
    ],
)
def test_times_are_encoded_byte_for_byte_as_before(moment: datetime) -> None:
    assert to_iso(moment) == _to_iso_before(moment)
    assert (
        dumps({"at": moment, "l": [moment]}) == f'{{"at":"{_to_iso_before(moment)}","l":["{_to_iso_before(moment)}"]}}'
    )


def test_a_profile_read_fast_is_written_back_as_it_was_read() -> None:
    text = _stored(traits={"tier": "gold"})
    assert dumps(Profile.from_own_json(text).to_document()) == dumps(Profile.from_document(loads(text)).to_document())


def test_times_remembered_once_encoded_are_the_same_instant_in_any_zone() -> None:
    """to_iso remembers what it wrote by value: equal instants (whatever their zone) share one text,
    and a naive time or one with microseconds never reads another's."""
    utc = datetime(2031, 7, 1, 12, 0, 0, 250_000, tzinfo=UTC)
    moments = [
        utc.astimezone(timezone(timedelta(hours=9))),
        utc,
        utc.replace(tzinfo=TzInfo(0)),
        utc.replace(tzinfo=None) + timedelta(hours=1),  # naive: read as UTC, one hour later
        utc.replace(microsecond=250_999),
    ]
    for _ in range(2):  # the second pass answers from what the first remembered
        assert [to_iso(m) for m in moments] == [_to_iso_before(m) for m in moments]
    assert len({to_iso(m) for m in moments}) == 2
