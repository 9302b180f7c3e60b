"""One condition tree, three evaluations that must agree: the in-memory predicate, the SQLite
WHERE clause and the MongoDB membership pipeline (on mongomock-ng).

Profiles and their interactions are written through the real stores' transaction API
(`claim_identities`, `insert_profile`, `append_interaction`), so the documents, identity rows and
interaction buckets are exactly what production writes. Generated data is deliberately awkward:
traits holding the wrong type, nulls, lists with nulls, objects; missing counters; events exactly on
a window boundary and slightly in the future. Trees come from raw input through `parse_condition`.
"""

from __future__ import annotations

import asyncio
import tempfile
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from app.domain.clock import to_iso
from app.domain.events import Channel, EventType
from app.domain.profile import Address, Consent, IdentifierRecord, Interaction, Profile, Qualitative, Rfm, Stats
from app.domain.segments.catalogue import PathCatalogue, ValueType
from app.domain.segments.conditions import Condition
from app.domain.segments.dependencies import next_change
from app.domain.segments.parser import OPERATORS, parse_condition
from app.domain.segments.predicate import Activity, predicate
from tests.property.segment_stores import Selected, select_everywhere

NOW = datetime(2026, 6, 1, 12, 0, tzinfo=UTC)
CATALOGUE = PathCatalogue(
    traits={
        "tier": ValueType.STRING,
        "score": ValueType.NUMBER,
        "vip": ValueType.BOOLEAN,
        "since": ValueType.DATETIME,  # a trait holds JSON: its dates are ISO 8601 text
        "born": ValueType.DATE,
    },
    event_properties={(EventType.CART_ABANDONED, "cartId"): ValueType.STRING},
)

STRINGS = ["gold", "Gold", "go", "", "Emma", "Em", "Léa", "Paris", "Par", "%", "_x", "a.b", "Zoë", "champions"]
NUMBERS = [0, 1, 2, 2.5, -3, 5, 10, 50, 50.0]
DATES = [date(1985, 1, 31), date(1990, 5, 1), date(2001, 12, 24)]
MOMENTS = [NOW - timedelta(days=d) for d in (0, 1, 7, 30, 400)] + [NOW - timedelta(days=7, milliseconds=1)]
# Values of every kind, for traits and properties whose declared type they may not have.
ANYTHING = st.sampled_from([*STRINGS, *NUMBERS, True, False, None, ["gold"], [1, None], [], {"a": 1}])
# What a date or datetime trait holds, as JSON gives it: ISO text (with or without milliseconds).
ISO_TEXTS = st.one_of(
    st.sampled_from(DATES).map(date.isoformat),
    st.sampled_from(MOMENTS).map(to_iso),
    st.sampled_from(MOMENTS).map(lambda moment: moment.strftime("%Y-%m-%dT%H:%M:%SZ")),
)
PATHS: dict[ValueType, list[str]] = {
    ValueType.STRING: ["firstName", "traits.tier", "addresses.city", "rfm.segment"],
    ValueType.NUMBER: [
        "stats.orders",
        "stats.channels.web",
        "traits.score",
        "qualitative.npsScore",
        "rfm.recencyScore",
    ],
    ValueType.BOOLEAN: ["traits.vip", "consents.email_marketing.granted"],
    ValueType.DATE: ["birthDate", "traits.born"],
    ValueType.DATETIME: ["stats.lastOrderAt", "consents.sms.at", "createdAt", "traits.since"],
}
VALUES: dict[ValueType, st.SearchStrategy[Any]] = {
    ValueType.STRING: st.sampled_from(STRINGS),
    ValueType.NUMBER: st.sampled_from(NUMBERS),
    ValueType.BOOLEAN: st.booleans(),
    ValueType.DATE: st.sampled_from(DATES).map(date.isoformat),
    ValueType.DATETIME: st.sampled_from(MOMENTS).map(to_iso),
}
DEFAULTED = {"stats.orders", "stats.channels.web"}
EVENT_TYPES = [EventType.ORDER_COMPLETED, EventType.PAGE_VIEW, EventType.CART_ABANDONED]
WHERE: dict[EventType, list[tuple[str, ValueType]]] = {
    EventType.ORDER_COMPLETED: [("total", ValueType.NUMBER), ("orderId", ValueType.STRING)],
    EventType.PAGE_VIEW: [("url", ValueType.STRING)],
    EventType.CART_ABANDONED: [("cartId", ValueType.STRING), ("value", ValueType.NUMBER)],
}


# -- trees ------------------------------------------------------------------------------------
@st.composite
def compare_inputs(draw: st.DrawFn) -> dict[str, Any]:
    kind = draw(st.sampled_from(list(PATHS)))
    path = draw(st.sampled_from(PATHS[kind]))
    ops = sorted(OPERATORS[kind] - ({"exists"} if path in DEFAULTED else set()))
    op = draw(st.sampled_from(ops))
    if op == "exists":
        return {"compare": {"path": path, "op": op, "value": draw(st.booleans())}}
    values = RFM_NAMES if path == "rfm.segment" and op in ("eq", "ne", "in") else VALUES[kind]  # a closed set
    if op == "in":
        return {"compare": {"path": path, "op": op, "value": draw(st.lists(values, min_size=1, max_size=3))}}
    return {"compare": {"path": path, "op": op, "value": draw(values)}}


RFM_NAMES = st.sampled_from(["Champions", "Lost", "Prospect"])


@st.composite
def event_inputs(draw: st.DrawFn) -> dict[str, Any]:
    event_type = draw(st.sampled_from(EVENT_TYPES))
    body: dict[str, Any] = {"type": event_type.value, "withinDays": draw(st.sampled_from([1, 7, 30]))}
    if draw(st.booleans()):
        body["atLeast"] = draw(st.integers(1, 3))
    else:
        body["atMost"] = draw(st.integers(0, 2))
    if draw(st.booleans()):
        body["channel"] = draw(st.sampled_from(["web", "store"]))
    if draw(st.booleans()):
        name, kind = draw(st.sampled_from(WHERE[event_type]))
        op = draw(st.sampled_from(sorted(OPERATORS[kind] - {"in"})))
        body["where"] = {"property": name, "op": op, "value": None if op == "exists" else draw(VALUES[kind])}
    return {"event": body}


LEAVES = st.one_of(
    compare_inputs(),
    compare_inputs(),
    event_inputs(),
    st.sampled_from(["email", "loyaltyId", "deviceId"]).map(lambda t: {"hasIdentifier": {"type": t}}),
    st.sampled_from(["vip", "churn"]).map(lambda s: {"inSegment": {"segmentId": s}}),
    st.sampled_from(["email_marketing", "sms"]).map(lambda p: {"consentGranted": {"purpose": p}}),
)
TREES = st.recursive(
    LEAVES,
    lambda children: st.one_of(
        st.lists(children, min_size=1, max_size=3).map(lambda c: {"and": c}),
        st.lists(children, min_size=1, max_size=3).map(lambda c: {"or": c}),
        children.map(lambda c: {"not": c}),
    ),
    max_leaves=8,
).map(lambda raw: parse_condition(raw, CATALOGUE))


# -- profiles ---------------------------------------------------------------------------------
@st.composite
def interactions(draw: st.DrawFn, profile_id: str) -> list[Interaction]:
    items = []
    for index in range(draw(st.integers(0, 6))):
        event_type = draw(st.sampled_from(EVENT_TYPES))
        # Whole days land exactly on window boundaries; -1 hour is an event slightly ahead of the clock.
        age = draw(st.one_of(st.sampled_from([1, 7, 30]).map(lambda d: d * 24), st.integers(-1, 24 * 40)))
        names = [name for name, _ in WHERE[event_type]]
        properties = draw(st.dictionaries(st.sampled_from(names), ANYTHING, max_size=2))
        items.append(
            Interaction(
                message_id=f"{profile_id}-m{index}",
                type=event_type.value,
                channel=draw(st.sampled_from(["web", "store", "email"])),
                timestamp=NOW - timedelta(hours=age),
                properties=properties,
            )
        )
    return items


def optional(strategy: st.SearchStrategy[Any]) -> st.SearchStrategy[Any]:
    return st.one_of(st.none(), strategy)


@st.composite
def profiles(draw: st.DrawFn, profile_id: str) -> tuple[Profile, list[Interaction]]:
    types = draw(st.sets(st.sampled_from(["email", "loyaltyId", "deviceId"])))
    identifiers = [IdentifierRecord(type=t, value=f"{t}-{profile_id}", added_at=NOW) for t in sorted(types)]
    stats = Stats(
        orders=draw(st.integers(0, 3)),
        last_order_at=draw(optional(st.sampled_from(MOMENTS))),
        channels=draw(st.dictionaries(st.sampled_from([c.value for c in Channel]), st.integers(0, 3), max_size=2)),
    )
    profile = Profile(
        _id=profile_id,
        identifiers=identifiers,
        first_name=draw(optional(st.sampled_from(STRINGS))),
        birth_date=draw(optional(st.sampled_from(DATES))),
        addresses=draw(st.lists(st.builds(Address, city=optional(st.sampled_from(STRINGS))), max_size=2)),
        traits=draw(
            st.dictionaries(
                st.sampled_from(["tier", "score", "vip", "since", "born"]), st.one_of(ANYTHING, ISO_TEXTS), max_size=3
            )
        ),
        consents=draw(
            st.dictionaries(
                st.sampled_from(["email_marketing", "sms"]),
                st.builds(Consent, granted=st.booleans(), at=st.sampled_from(MOMENTS)),
                max_size=2,
            )
        ),
        stats=stats,
        qualitative=Qualitative(nps_score=draw(optional(st.integers(0, 10)))),
        rfm=draw(
            optional(
                st.builds(
                    Rfm,
                    recency_score=optional(st.integers(1, 5)),
                    segment=st.sampled_from([*STRINGS, "Champions", "Lost"]),
                )
            )
        ),
        segments=sorted(draw(st.sets(st.sampled_from(["vip", "churn"])))),
        created_at=draw(st.sampled_from(MOMENTS)),
        updated_at=NOW,
    )
    return profile, draw(interactions(profile_id))


POPULATIONS = st.integers(1, 6).flatmap(lambda n: st.tuples(*(profiles(f"p{i}") for i in range(n))))


# -- the three evaluations --------------------------------------------------------------------
def _assert_agree(results: list[Selected]) -> None:
    for result in results:
        assert result.sqlite == result.memory, (result.tree, result.detail["sql"], result.detail["params"])
        assert result.mongo == result.memory, (result.tree, result.detail["pipeline"])


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(population=POPULATIONS, trees=st.lists(TREES, min_size=1, max_size=4))
def test_predicate_sqlite_and_mongodb_select_the_same_profiles(
    population: tuple[tuple[Profile, list[Interaction]], ...], trees: list[Condition]
) -> None:
    with tempfile.TemporaryDirectory() as directory:
        _assert_agree(asyncio.run(select_everywhere(population, trees, Path(directory), now=NOW)))


@settings(max_examples=300, deadline=None)
@given(member=profiles("p0"), tree=TREES, later=st.integers(1, 24 * 800))
def test_result_holds_until_the_next_change_instant(
    member: tuple[Profile, list[Interaction]], tree: Condition, later: int
) -> None:
    profile, history = member
    evaluate = predicate(tree)
    activity = Activity.of(history)
    memberships = set(profile.segments)
    now_result = evaluate(profile, activity, memberships, now=NOW)
    change = next_change(tree, activity, now=NOW)
    moment = NOW + timedelta(hours=later)
    if change is None or moment < change:
        assert evaluate(profile, activity, memberships, now=moment) == now_result
    if change is not None:
        assert change > NOW
        just_before = change - timedelta(milliseconds=1)
        assert evaluate(profile, activity, memberships, now=max(just_before, NOW)) == now_result


# -- every leaf, deterministically, on profiles built to trip the type guards ------------------
def _awkward_population() -> list[tuple[Profile, list[Interaction]]]:
    times = {"created_at": NOW - timedelta(days=30), "updated_at": NOW}

    def did(profile_id: str, index: int, type_: str, hours: int, channel: str = "web", **props: Any) -> Interaction:
        stamp = NOW - timedelta(hours=hours)
        return Interaction(
            message_id=f"{profile_id}-{index}", type=type_, channel=channel, timestamp=stamp, properties=props
        )

    good = Profile(
        _id="good",
        identifiers=[IdentifierRecord(type="email", value="good@example.com", added_at=NOW)],
        first_name="Léa",
        birth_date=date(1990, 5, 1),
        addresses=[Address(city="Paris"), Address(city="Lyon")],
        traits={"tier": "gold", "score": 2.5, "vip": True},
        consents={"email_marketing": Consent(granted=True, at=MOMENTS[1])},
        stats=Stats(orders=2, last_order_at=MOMENTS[2], channels={"web": 3}),
        qualitative=Qualitative(nps_score=9),
        rfm=Rfm(recency_score=5, segment="Champions"),
        segments=["vip"],
        **times,
    )
    good_history = [
        did("good", 0, "order_completed", 2, total=50, orderId="o-1"),
        did("good", 1, "order_completed", 24 * 7, channel="store", total=10.5, orderId="o-2"),
        did("good", 2, "page_view", 24 * 30, url="/home"),
        did("good", 3, "page_view", -1, url="/gold"),
    ]
    lists = Profile(
        _id="lists",
        identifiers=[IdentifierRecord(type="loyaltyId", value="L-1", added_at=NOW)],
        traits={"tier": ["gold"], "score": [1, None], "vip": [True]},
        addresses=[Address(city="Paris"), Address()],
        consents={"sms": Consent(granted=False, at=MOMENTS[0])},
        segments=["churn", "vip"],
        **times,
    )
    lists_history = [did("lists", 0, "cart_abandoned", 3, cartId=["c1"], value=[40])]
    wrong = Profile(
        _id="wrong-types",
        first_name="",
        traits={"tier": 5, "score": "2.5", "vip": 1},
        stats=Stats(channels={"store": 1}),
        **times,
    )
    wrong_history = [did("wrong-types", 0, "order_completed", 5, total="50", orderId=7)]
    nulls = Profile(_id="nulls", traits={"tier": None, "score": None, "vip": None}, **times)
    nulls_history = [did("nulls", 0, "cart_abandoned", 24, cartId=None)]
    objects = Profile(_id="objects", traits={"tier": {"eq": "gold"}, "score": {"a": 1}, "vip": []}, **times)
    empty = Profile(_id="empty", **times)
    return [
        (good, good_history),
        (lists, lists_history),
        (wrong, wrong_history),
        (nulls, nulls_history),
        (objects, []),
        (empty, []),
    ]


GRID_VALUES: dict[ValueType, list[Any]] = {
    ValueType.STRING: ["gold", "go", "", "Paris", "Léa", "L", "champions", "%"],
    ValueType.NUMBER: [-1, 0, 1, 2, 2.5, 3, 9],
    ValueType.BOOLEAN: [True, False],
    ValueType.DATE: ["1990-05-01", "1991-01-01"],
    ValueType.DATETIME: [to_iso(MOMENTS[2]), to_iso(NOW - timedelta(days=60))],
}


def _leaf_grid() -> list[dict[str, Any]]:
    leaves: list[dict[str, Any]] = []
    for kind, paths in PATHS.items():
        for path in paths:
            for op in sorted(OPERATORS[kind]):
                if op == "exists":
                    if path not in DEFAULTED:
                        leaves += [{"compare": {"path": path, "op": op, "value": flag}} for flag in (True, False)]
                elif path == "rfm.segment" and op in ("eq", "ne", "in"):  # a closed set of names
                    leaves += [
                        {"compare": {"path": path, "op": op, "value": ["Champions"] if op == "in" else v}}
                        for v in ("Champions", "Lost")
                    ]
                elif op == "in":
                    leaves.append({"compare": {"path": path, "op": op, "value": GRID_VALUES[kind][:3]}})
                else:
                    leaves += [{"compare": {"path": path, "op": op, "value": v}} for v in GRID_VALUES[kind]]
    for event_type in EVENT_TYPES:
        wheres: list[dict[str, Any] | None] = [None]
        for name, kind in WHERE[event_type]:
            wheres += [
                {"property": name, "op": "exists"},
                {"property": name, "op": "eq", "value": GRID_VALUES[kind][0]},
            ]
            wheres.append({"property": name, "op": "gte", "value": GRID_VALUES[kind][4]})
        for bound, count in (("atLeast", 1), ("atLeast", 2), ("atMost", 0), ("atMost", 1)):
            for days in (1, 7, 30):
                for channel in (None, "web"):
                    for where in wheres:
                        body = {"type": event_type.value, bound: count, "withinDays": days, "channel": channel}
                        leaves.append({"event": {**body, "where": where}})
    leaves += [{"hasIdentifier": {"type": t}} for t in ("email", "loyaltyId", "phone")]
    leaves += [{"inSegment": {"segmentId": s}} for s in ("vip", "churn", "none")]
    leaves += [{"consentGranted": {"purpose": p}} for p in ("email_marketing", "sms", "post")]
    return leaves


def test_every_leaf_and_its_negation_agree_on_awkward_profiles() -> None:
    leaves = _leaf_grid()
    trees = [parse_condition(raw, CATALOGUE) for leaf in leaves for raw in (leaf, {"not": leaf})]
    with tempfile.TemporaryDirectory() as directory:
        results = asyncio.run(select_everywhere(_awkward_population(), trees, Path(directory), now=NOW))
    _assert_agree(results)
    # The grid discriminates: many leaves select some profiles and not others.
    assert len(results) > 900
    assert sum(0 < len(result.memory) < 6 for result in results) > len(results) // 3
