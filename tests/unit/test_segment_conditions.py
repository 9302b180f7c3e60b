"""Segment condition trees: validation (errors name the place in the tree), the meaning of each leaf
and operator, combinations, time windows, dependencies, and that no client text becomes a query
operator or SQL. Agreement of the three evaluations is in tests/property/test_segment_agreement.py."""

from __future__ import annotations

import asyncio
import tempfile
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from app.domain.errors import InvalidInput, LimitExceeded
from app.domain.events import EventType
from app.domain.profile import Address, Consent, IdentifierRecord, Interaction, Profile, Rfm, Stats
from app.domain.segments.catalogue import PathCatalogue, ValueType
from app.domain.segments.conditions import And, Compare, ConsentGranted, CountBound, EventCount, Not, Op, Or
from app.domain.segments.dependencies import dependencies, next_change
from app.domain.segments.parser import parse_condition
from app.domain.segments.predicate import Activity, ActivityTooShort, longest_window, predicate
from app.store.mongo.segment_query import membership_pipeline, profile_filter
from app.store.sqlite.segment_query import where_clause
from tests.property.segment_stores import select_everywhere

NOW = datetime(2026, 6, 1, 12, 0, tzinfo=UTC)
CATALOGUE = PathCatalogue(
    traits={"tier": ValueType.STRING, "score": ValueType.NUMBER, "vip": ValueType.BOOLEAN},
    event_properties={(EventType.CART_ABANDONED, "cartId"): ValueType.STRING},
)


def _parse(raw: Any) -> Any:
    return parse_condition(raw, CATALOGUE)


def _compare(path: str, op: str, value: Any = None) -> dict[str, Any]:
    return {"compare": {"path": path, "op": op, "value": value}}


def _event(type_: str = "order_completed", **fields: Any) -> dict[str, Any]:
    return {"event": {"type": type_, **fields}}


def _did(index: int, type_: str, *, hours: float, channel: str = "web", **props: Any) -> Interaction:
    return Interaction(
        message_id=f"m{index}",
        type=type_,
        channel=channel,
        timestamp=NOW - timedelta(hours=hours),
        properties=props,
    )


EMMA = Profile(
    _id="emma",
    identifiers=[IdentifierRecord(type="email", value="emma@example.com", added_at=NOW)],
    first_name="Emma",
    birth_date=date(1990, 5, 1),
    addresses=[Address(city="Paris"), Address(city="Lyon", country="FR")],
    traits={"tier": "gold", "score": "7"},  # score holds a string although declared a number
    consents={"email_marketing": Consent(granted=True, at=NOW), "sms": Consent(granted=False, at=NOW)},
    stats=Stats(orders=2, last_order_at=NOW - timedelta(days=3), channels={"store": 1}),
    rfm=Rfm(recency_score=4, segment="loyal"),
    segments=["vip"],
    created_at=NOW - timedelta(days=100),
    updated_at=NOW,
)
HISTORY = Activity.of(
    [
        _did(0, "order_completed", hours=24 * 30, total=80),  # exactly on a 30-day boundary: outside
        _did(1, "order_completed", hours=24 * 10, total=20, channel="store"),
        _did(2, "order_completed", hours=24 * 2, total=55.5),
        _did(3, "page_view", hours=-0.05, url="/sale"),  # a few minutes ahead of the clock: counted
    ]
)


def _holds(raw: Any, profile: Profile = EMMA, activity: Activity = HISTORY, memberships: Any = None) -> bool:
    members = set(profile.segments) if memberships is None else memberships
    return predicate(_parse(raw))(profile, activity, members, now=NOW)


# -- validation --------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("raw", "field", "words"),
    [
        pytest.param(
            {
                "and": [
                    _compare("stats.orders", "gt", 1),
                    _compare("firstName", "eq", "Emma"),
                    {"not": _compare("stats.ordres", "gt", 1)},
                ]
            },
            "condition.and[2].not.compare.path",
            'unknown path "stats.ordres" (did you mean stats.orders?)',
            id="unknown-path-with-suggestion",
        ),
        pytest.param(
            _compare("traits.colour", "eq", "red"),
            "condition.compare.path",
            "a trait must be declared",
            id="undeclared-trait",
        ),
        pytest.param(_compare("firstName", "like", "E"), "condition.compare.op", "unknown operator", id="unknown-op"),
        pytest.param(
            _compare("firstName", "gt", 3), "condition.compare.value", "expected a string", id="number-on-string"
        ),
        pytest.param(
            _compare("stats.orders", "startsWith", "1"),
            "condition.compare.op",
            "startsWith does not apply",
            id="startswith-number",
        ),
        pytest.param(
            _compare("traits.vip", "gt", True), "condition.compare.op", "gt does not apply", id="order-on-boolean"
        ),
        pytest.param(
            _compare("stats.orders", "in", 3), "condition.compare.value", "in needs a list", id="in-without-list"
        ),
        pytest.param(_compare("stats.orders", "in", []), "condition.compare.value", "in needs a list", id="in-empty"),
        pytest.param(
            _compare("stats.orders", "in", [1, "2"]),
            "condition.compare.value[1]",
            "expected a number",
            id="in-bad-item",
        ),
        pytest.param(
            _compare("stats.orders", "eq", True), "condition.compare.value", "expected a number", id="bool-is-no-number"
        ),
        pytest.param(_compare("stats.orders", "eq", float("nan")), "condition.compare.value", "finite", id="nan"),
        pytest.param(
            _compare("stats.orders", "exists", True),
            "condition.compare.op",
            "always has a value",
            id="exists-on-counter",
        ),
        pytest.param(
            _compare("firstName", "exists", "yes"), "condition.compare.value", "true or false", id="exists-not-bool"
        ),
        pytest.param(_compare("birthDate", "lt", "01/05/1990"), "condition.compare.value", "YYYY-MM-DD", id="bad-date"),
        pytest.param(
            _compare("stats.lastOrderAt", "gt", "yesterday"), "condition.compare.value", "ISO-8601", id="bad-datetime"
        ),
        pytest.param(
            _compare("firstName", "eq", "x" * 300), "condition.compare.value", "at most 256", id="long-string"
        ),
        pytest.param(
            _compare("consents.Email.granted", "eq", True),
            "condition.compare.path",
            "lower-case",
            id="bad-purpose-path",
        ),
        pytest.param({"or": []}, "condition.or", "non-empty list", id="empty-or"),
        pytest.param({"xor": []}, "condition.xor", "unknown condition kind", id="unknown-kind"),
        pytest.param({"and": [{}]}, "condition.and[0]", "exactly one of", id="empty-node"),
        pytest.param({**_compare("firstName", "eq", "E"), "not": {}}, "condition", "exactly one of", id="two-kinds"),
        pytest.param([], "condition", "expected an object", id="not-an-object"),
        pytest.param(
            {"compare": {"path": "firstName", "op": "eq", "value": "E", "extra": 1}},
            "condition.compare.extra",
            "unknown field",
            id="extra-field",
        ),
        pytest.param(_event(atLeast=1), "condition.event.withinDays", "from 1 to 730", id="no-window"),
        pytest.param(
            _event(atLeast=1, withinDays=731), "condition.event.withinDays", "from 1 to 730", id="window-too-long"
        ),
        pytest.param(_event(atLeast=0, withinDays=7), "condition.event.atLeast", "from 1 to", id="at-least-zero"),
        pytest.param(
            _event(atLeast=1, atMost=3, withinDays=7),
            "condition.event",
            "exactly one of atLeast, atMost",
            id="both-bounds",
        ),
        pytest.param(
            _event("purchase", atLeast=1, withinDays=7),
            "condition.event.type",
            "unknown event type",
            id="bad-event-type",
        ),
        pytest.param(
            _event(atLeast=1, withinDays=7, channel="fax"),
            "condition.event.channel",
            "unknown channel",
            id="bad-channel",
        ),
        pytest.param(
            _event(atLeast=1, withinDays=7, where={"property": "totl", "op": "gt", "value": 1}),
            "condition.event.where.property",
            "did you mean total?",
            id="bad-property",
        ),
        pytest.param(
            _event(atLeast=1, withinDays=7, where={"property": "total", "op": "gt", "value": "1"}),
            "condition.event.where.value",
            "expected a number",
            id="bad-property-value",
        ),
        pytest.param(
            {"hasIdentifier": {"type": "E-mail"}},
            "condition.hasIdentifier.type",
            "unknown identifier type",
            id="bad-identifier",
        ),
        pytest.param(
            {"inSegment": {"segmentId": "a b"}}, "condition.inSegment.segmentId", "segment id", id="bad-segment-id"
        ),
        pytest.param(
            {"consentGranted": {"purpose": "Email"}}, "condition.consentGranted.purpose", "lower-case", id="bad-purpose"
        ),
        pytest.param(  # RFM names are a closed set: "Champion" matched nobody, silently
            _compare("rfm.segment", "eq", "Champion"), "condition.compare.value", "is one of", id="rfm-name"
        ),
        pytest.param(
            _compare("rfm.segment", "in", ["Lost", "loyal"]), "condition.compare.value[1]", "is one of", id="rfm-names"
        ),
        pytest.param(  # no such time in UTC: an OverflowError, INTERNAL_SERVER_ERROR through the API
            {"compare": {"path": "stats.lastOrderAt", "op": "gt", "value": "0001-01-01T00:00:00+01:00"}},
            "condition.compare.value",
            "out of range",
            id="datetime-out-of-range",
        ),
    ],
)
def test_an_invalid_tree_is_rejected_naming_the_place(raw: Any, field: str, words: str) -> None:
    with pytest.raises(InvalidInput) as error:
        _parse(raw)
    assert error.value.field == field
    assert error.value.message.startswith(f"{field}: ")
    assert words in error.value.message


def test_limits_on_depth_leaves_are_limit_errors() -> None:
    deep: dict[str, Any] = _compare("firstName", "eq", "E")
    for _ in range(10):
        deep = {"not": deep}
    with pytest.raises(LimitExceeded) as error:
        _parse(deep)
    assert error.value.field == "condition" + ".not" * 10
    _parse(deep["not"])  # ten levels are fine

    wide = {"or": [_compare("stats.orders", "eq", n) for n in range(101)]}
    with pytest.raises(LimitExceeded) as error:
        _parse(wide)
    assert error.value.field == "condition.or[100].compare"
    assert len(_parse({"or": wide["or"][:100]}).children) == 100


def test_a_valid_tree_parses_into_typed_nodes() -> None:
    tree = _parse(
        {
            "and": [
                _compare("stats.lastOrderAt", "gte", "2026-05-01T00:00:00+02:00"),
                {"not": {"consentGranted": {"purpose": "sms"}}},
                _event(
                    "order_completed",
                    atMost=2,
                    withinDays=30,
                    channel="web",
                    where={"property": "total", "op": "gt", "value": 50},
                ),
            ],
            "or": None,  # GraphQL sends unset one-of fields as null
        }
    )
    assert isinstance(tree, And)
    moment, consent, event = tree.children
    assert isinstance(moment, Compare) and moment.op is Op.GTE
    assert moment.value == datetime(2026, 4, 30, 22, 0, tzinfo=UTC)
    assert consent == Not(ConsentGranted("sms"))
    assert isinstance(event, EventCount)
    assert (event.event_type, event.bound, event.count, event.within_days) == (
        EventType.ORDER_COMPLETED,
        CountBound.AT_MOST,
        2,
        30,
    )
    assert event.where is not None and event.where.path.path == "properties.total"


# -- no operator injection ---------------------------------------------------------------------
@pytest.mark.parametrize(
    ("raw", "field"),
    [
        pytest.param(
            _compare("firstName", "eq", {"$where": "sleep(1000)"}),
            "condition.compare.value",
            id="operator-object-value",
        ),
        pytest.param(_compare("firstName", "in", [{"$ne": None}]), "condition.compare.value[0]", id="operator-in-list"),
        pytest.param(
            _compare("stats.orders'); DROP TABLE profiles; --", "gt", 1), "condition.compare.path", id="sql-in-path"
        ),
        pytest.param(_compare("traits.$where", "eq", "x"), "condition.compare.path", id="dollar-path"),
        pytest.param(_compare("firstName", "$regex", ".*"), "condition.compare.op", id="operator-as-op"),
        pytest.param(_compare("consents.x.granted'--", "eq", True), "condition.compare.path", id="sql-in-purpose"),
    ],
)
def test_database_syntax_in_input_is_rejected(raw: Any, field: str) -> None:
    with pytest.raises(InvalidInput) as error:
        _parse(raw)
    assert error.value.field == field


def test_a_declared_trait_name_must_be_a_plain_key() -> None:
    with pytest.raises(ValueError, match="must be 1-64 letters"):
        PathCatalogue(traits={"a.b": ValueType.STRING})
    with pytest.raises(ValueError, match="plain key"):
        PathCatalogue(event_properties={(EventType.PAGE_VIEW, "$where"): ValueType.STRING})


def test_hostile_strings_are_literals_in_sql_and_mongodb() -> None:
    hostile = "x'); DROP TABLE profiles; --"
    tree = _parse({"or": [_compare("firstName", "eq", hostile), _compare("traits.tier", "startsWith", ".*")]})
    sql, params = where_clause(tree, now=NOW)
    assert hostile not in sql and ".*" not in sql
    assert hostile in params and ".*" in params
    query = profile_filter(tree)
    assert {"$eq": hostile}.items() <= query["$and"][1]["$or"][0]["firstName"].items()
    assert query["$and"][1]["$or"][1]["traits.tier"]["$regex"] == r"^\.\*"


def test_regex_and_like_characters_match_only_themselves_in_every_backend() -> None:
    population = [
        (Profile(_id=name, first_name=name, created_at=NOW, updated_at=NOW), [])
        for name in ("a.b", "axb", "%x", "Ax", "_y", "zy", "x'); DROP TABLE profiles; --")
    ]
    trees = [
        _parse(_compare("firstName", "startsWith", "a.")),
        _parse(_compare("firstName", "contains", "%")),
        _parse(_compare("firstName", "startsWith", "_")),
        _parse(_compare("firstName", "eq", "x'); DROP TABLE profiles; --")),
        _parse(_compare("firstName", "startsWith", "a")),  # case-sensitive
    ]
    with tempfile.TemporaryDirectory() as directory:
        results = asyncio.run(select_everywhere(population, trees, Path(directory), now=NOW))
    expected = [{"a.b"}, {"%x"}, {"_y"}, {"x'); DROP TABLE profiles; --"}, {"a.b", "axb"}]
    for result, ids in zip(results, expected, strict=True):
        assert result.memory == result.sqlite == result.mongo == ids


# -- what each leaf means ----------------------------------------------------------------------
@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        (_compare("stats.orders", "eq", 2), True),
        (_compare("stats.orders", "eq", 2.0), True),
        (_compare("stats.orders", "ne", 2), False),
        (_compare("stats.orders", "gt", 2), False),
        (_compare("stats.orders", "gte", 2), True),
        (_compare("stats.orders", "lt", 2.5), True),
        (_compare("stats.orders", "lte", 1), False),
        (_compare("stats.orders", "in", [1, 2]), True),
        (_compare("stats.channels.web", "eq", 0), True),  # a missing counter reads as 0
        (_compare("stats.channels.web", "lt", 1), True),
        (_compare("stats.channels.store", "gte", 1), True),
        (_compare("firstName", "startsWith", "Em"), True),
        (_compare("firstName", "startsWith", "em"), False),  # case-sensitive
        (_compare("firstName", "contains", "mm"), True),
        (_compare("firstName", "gt", "Ella"), True),
        (_compare("firstName", "exists", True), True),
        (_compare("lastName", "exists", True), False),
        (_compare("lastName", "exists", False), True),
        (_compare("lastName", "ne", "Martin"), False),  # ne needs a value
        ({"not": _compare("lastName", "eq", "Martin")}, True),
        (_compare("traits.tier", "in", ["gold", "silver"]), True),
        (_compare("traits.score", "gt", 1), False),  # "7" is not a number: no match
        (_compare("traits.score", "exists", True), True),  # but it is present
        (_compare("traits.vip", "eq", False), False),
        (_compare("birthDate", "lt", "1990-05-02"), True),
        (_compare("birthDate", "eq", "1990-05-01"), True),
        (_compare("stats.lastOrderAt", "gt", "2026-05-28T12:00:00Z"), True),
        (_compare("stats.lastOrderAt", "gt", "2026-05-29T12:00:00Z"), False),
        (_compare("stats.firstOrderAt", "exists", False), True),
        (_compare("addresses.city", "eq", "Lyon"), True),  # any address
        (_compare("addresses.city", "ne", "Paris"), True),  # some address is not in Paris
        (_compare("addresses.country", "exists", True), True),
        (_compare("addresses.region", "exists", False), True),  # no address has a region
        (_compare("rfm.recencyScore", "gte", 4), True),
        (_compare("rfm.segment", "eq", "Champions"), False),
        (_compare("addresses.country", "eq", "fr"), True),  # kept upper-case, as addresses are (it matched nobody)
        (_compare("addresses.country", "in", ["de", "fr"]), True),
        (_compare("consents.email_marketing.granted", "eq", True), True),
        (_compare("consents.sms.at", "lte", "2026-06-01T12:00:00Z"), True),
        ({"consentGranted": {"purpose": "email_marketing"}}, True),
        ({"consentGranted": {"purpose": "sms"}}, False),  # recorded, but refused
        ({"consentGranted": {"purpose": "post"}}, False),  # never asked
        ({"hasIdentifier": {"type": "email"}}, True),
        ({"hasIdentifier": {"type": "phone"}}, False),
        ({"inSegment": {"segmentId": "vip"}}, True),
        ({"inSegment": {"segmentId": "churn"}}, False),
    ],
)
def test_each_profile_leaf_means_what_it_says(raw: Any, expected: bool) -> None:
    assert _holds(raw) is expected


@pytest.mark.parametrize(
    ("fields", "expected"),
    [
        ({"atLeast": 1, "withinDays": 30}, True),
        ({"atLeast": 2, "withinDays": 30}, True),
        ({"atLeast": 3, "withinDays": 30}, False),  # the order exactly 30 days old is out
        ({"atLeast": 3, "withinDays": 31}, True),
        ({"atLeast": 1, "withinDays": 1}, False),
        ({"atMost": 0, "withinDays": 1}, True),  # atMost includes zero
        ({"atMost": 1, "withinDays": 30}, False),
        ({"atLeast": 1, "withinDays": 30, "channel": "store"}, True),
        ({"atLeast": 2, "withinDays": 30, "channel": "web"}, False),
        ({"atLeast": 1, "withinDays": 30, "where": {"property": "total", "op": "gt", "value": 50}}, True),
        ({"atLeast": 2, "withinDays": 30, "where": {"property": "total", "op": "gt", "value": 50}}, False),
        ({"atLeast": 2, "withinDays": 30, "where": {"property": "total", "op": "exists"}}, True),
    ],
)
def test_event_counts_use_a_window_ending_now(fields: dict[str, Any], expected: bool) -> None:
    assert _holds(_event("order_completed", **fields)) is expected


def test_an_event_slightly_ahead_of_the_clock_counts() -> None:
    assert _holds(_event("page_view", atLeast=1, withinDays=1))


def test_combinations_follow_boolean_logic() -> None:
    yes, no = _compare("stats.orders", "eq", 2), _compare("stats.orders", "eq", 3)
    assert _holds({"and": [yes, yes]}) and not _holds({"and": [yes, no]})
    assert _holds({"or": [no, yes]}) and not _holds({"or": [no, no]})
    assert _holds({"not": no}) and not _holds({"not": {"or": [no, yes]}})
    assert isinstance(_parse({"or": [yes]}), Or)


def test_membership_comes_from_the_caller() -> None:
    # During one evaluation pass a segment computed earlier counts before the profile is saved.
    assert _holds({"inSegment": {"segmentId": "churn"}}, memberships={"churn"})
    assert not _holds({"inSegment": {"segmentId": "vip"}}, memberships=set())


# -- activity, dependencies, time --------------------------------------------------------------
def test_recent_list_covers_a_window_only_after_its_oldest_item() -> None:
    recent = [_did(i, "page_view", hours=24 * i) for i in range(3)]  # newest first, oldest 2 days old
    cut = EMMA.model_copy(update={"recent": recent, "stats": Stats(events_total=10)})
    activity = Activity.from_recent(cut)
    assert activity.complete_after == NOW - timedelta(days=2)
    tree = _parse(_event("page_view", atLeast=2, withinDays=2))
    assert predicate(tree)(cut, activity, set(), now=NOW)
    with pytest.raises(ActivityTooShort):
        predicate(_parse(_event("page_view", atLeast=2, withinDays=3)))(cut, activity, set(), now=NOW)
    whole = EMMA.model_copy(update={"recent": recent, "stats": Stats(events_total=3)})
    assert Activity.from_recent(whole).complete_after is None
    counted_not_kept = EMMA.model_copy(update={"recent": [], "stats": Stats(events_total=4, last_seen_at=NOW)})
    with pytest.raises(ActivityTooShort):
        predicate(tree)(counted_not_kept, Activity.from_recent(counted_not_kept), set(), now=NOW)
    wider = _parse({"or": [_event("page_view", atLeast=1, withinDays=3), _event("page_view", atMost=0, withinDays=2)]})
    assert longest_window(wider) == timedelta(days=3)


def test_dependencies_name_fields_event_types_and_segments() -> None:
    tree = _parse(
        {
            "and": [
                _compare("stats.orders", "gt", 1),
                _compare("addresses.city", "eq", "Paris"),
                {"not": {"inSegment": {"segmentId": "churn"}}},
                {"consentGranted": {"purpose": "sms"}},
                {"hasIdentifier": {"type": "email"}},
                _event("cart_abandoned", atLeast=1, withinDays=7),
                _event("order_completed", atMost=0, withinDays=14),
            ]
        }
    )
    deps = dependencies(tree)
    assert deps.paths == {"stats.orders", "addresses", "segments", "consents.sms.granted", "identifiers"}
    assert deps.event_types == {EventType.CART_ABANDONED, EventType.ORDER_COMPLETED}
    assert deps.segments == {"churn"} and deps.window == timedelta(days=14)
    assert deps.affected_by(["stats.orders"]) and deps.affected_by(["stats"]) and deps.affected_by(["consents.sms"])
    assert deps.affected_by(["addresses"]) and deps.affected_by(event_types=["cart_abandoned"])
    assert not deps.affected_by(["stats.visits", "traits.tier", "recent"], event_types=["page_view"])
    assert dependencies(_parse(_compare("firstName", "eq", "E"))).window is None


def test_next_change_is_when_a_counted_event_leaves_its_window() -> None:
    orders = Activity.of([_did(i, "order_completed", hours=24 * d, total=1) for i, d in enumerate((1, 3, 5))])
    at_least_two = _parse(_event("order_completed", atLeast=2, withinDays=7))
    # Three orders; the leaf fails once two have left: the 5-day-old one, then the 3-day-old one.
    assert next_change(at_least_two, orders, now=NOW) == NOW + timedelta(days=4)
    at_most_one = _parse(_event("order_completed", atMost=1, withinDays=7))
    assert next_change(at_most_one, orders, now=NOW) == NOW + timedelta(days=4)
    at_least_four = _parse(_event("order_completed", atLeast=4, withinDays=7))
    assert next_change(at_least_four, orders, now=NOW) is None  # only new events can change it
    recent_order = _event("order_completed", atLeast=1, withinDays=2)
    either = _parse({"or": [recent_order, _compare("firstName", "eq", "E")]})
    assert next_change(either, orders, now=NOW) == NOW + timedelta(days=1)  # the earliest leaf flip
    assert next_change(_parse(_compare("firstName", "eq", "E")), orders, now=NOW) is None


def test_mongodb_event_leaves_need_the_pipeline() -> None:
    tree = _parse({"and": [_compare("stats.orders", "gt", 1), _event(atLeast=1, withinDays=7)]})
    with pytest.raises(ValueError, match="membership_pipeline"):
        profile_filter(tree)
    pipeline = membership_pipeline(tree, now=NOW)
    # The event-free conjunct filters before the per-profile lookup into the history buckets.
    assert pipeline[0] == {
        "$match": {
            "$and": [{"mergedInto": None}, {"stats.orders": {"$type": "number", "$not": {"$type": "array"}, "$gt": 1}}]
        }
    }
    assert next(iter(pipeline[1])) == "$lookup"
