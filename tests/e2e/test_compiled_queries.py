"""Compiled queries (graphql_schema/compiled_queries.py) answer exactly as graphql-core does.

Two apps over one store (queries only read it): one compiling queries (the default), one with
CDP_COMPILED_EXECUTION off. Documents are generated from the real schema: random selections of any
type's fields, aliases, repeated keys, `__typename`, named and inline fragments, `@include`/`@skip`
on literals and variables, arguments from a pool of valid and refused values (unknown ids, merged-away
ids, pages out of bounds, foreign cursors), sent with keys of different scopes and without one.
Status, data and errors (message, path, code) must be the same.
"""

from __future__ import annotations

import asyncio
import tempfile
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import httpx
from graphql import GraphQLInterfaceType, GraphQLNonNull, GraphQLObjectType, GraphQLOutputType, get_named_type
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from app.bootstrap import Services
from app.domain.access import Scope
from app.main import create_app
from app.services.api_keys import create_key
from app.services.ingestion import IngestionPolicy
from app.settings import Settings
from app.store.sqlite.store import SQLiteStore
from graphql_schema.compiled_queries import PLANS_PER_DOCUMENT
from graphql_schema.schema import schema as strawberry_schema

SCHEMA = strawberry_schema._schema
KEYS = {
    "all": list(Scope),
    "no-pii": [Scope.READ_PROFILES],
    "writer": [Scope.WRITE_EVENTS],
}
EMAILS = ["ann@example.com", "bob@example.com", "cat@example.com"]
# Arguments by name: values to try (None: leave the argument out). Ids are filled in once the data exists.
ARGUMENT_VALUES: dict[str, list[Any]] = {
    "first": [None, 1, 3, 10, 0, -1, 1000],
    "last": [None, 2, 50, 0, 501],
    "after": [None, None, None, "not-a-cursor", "cHJvZmlsZTp6eno="],
    "before": [None, None, None, "not-a-cursor", "cHJvZmlsZTp6eno="],
    "types": [None, ["page_view"], ["order_completed", "identify"], []],
    "channels": [None, ["web"], ["email", "mars"]],
    "type": ["email", "phone", "nope"],
    "value": [*EMAILS, "ANN@Example.com", "not an email", "nobody@example.com"],
    "minScore": [None, 0.5, 0.99],
}
SKIPPED_FIELDS = {"mergeCandidates", "computedAt"}  # slow to score; the time a review list was scored
STAMPS = {"exportedAt"}  # the time of an export (inside JSON, so never aliased): left out


def _argument_pool(ids: dict[str, list[str]]) -> dict[str, list[Any]]:
    return ARGUMENT_VALUES | {
        "id": [*ids["profiles"], *ids["segments"], "nope"],
        "profileId": [None, *ids["profiles"], "nope"],
        "segmentId": [None, *ids["segments"], "nope"],
    }


class _Documents:
    """Draws documents over the real schema."""

    def __init__(self, draw: st.DrawFn, pool: dict[str, list[Any]]) -> None:
        self.draw, self.pool = draw, pool
        self.fragments: list[str] = []
        self.variables: dict[str, tuple[str, Any]] = {}  # name → (type, value)

    def selection(self, kind: GraphQLObjectType, depth: int) -> str:
        draw = self.draw
        names = [n for n in kind.fields if n not in SKIPPED_FIELDS and self._fillable(kind, n)]
        chosen = draw(st.lists(st.sampled_from(names), min_size=1, max_size=min(6, len(names))))
        parts = [self._field(kind, name, depth) for name in chosen]
        parts = [p for p in parts if p]
        if not parts:
            parts = ["__typename"]
        if draw(st.integers(0, 4)) == 0:
            parts.append(draw(st.sampled_from(["__typename", "t: __typename"])))
        shape = draw(st.integers(0, 6))
        if shape == 0:  # a named fragment
            name = f"F{len(self.fragments)}"
            self.fragments.append(f"fragment {name} on {kind.name} {{ {' '.join(parts)} }}")
            return f"{{ ...{name} }}"
        if shape == 1:
            return f"{{ ... on {kind.name} {{ {' '.join(parts)} }} }}"
        return "{ " + " ".join(parts) + " }"

    def _fillable(self, kind: GraphQLObjectType, name: str) -> bool:
        return all(
            argument in self.pool or not isinstance(definition.type, GraphQLNonNull) or definition.default_value
            for argument, definition in kind.fields[name].args.items()
        )

    def _field(self, kind: GraphQLObjectType, name: str, depth: int) -> str:
        draw = self.draw
        definition = kind.fields[name]
        named = get_named_type(definition.type)
        if isinstance(named, GraphQLObjectType | GraphQLInterfaceType) and depth >= 3:
            return ""
        arguments = []
        for argument, argument_definition in definition.args.items():
            values = self.pool.get(argument)
            if values is None:
                continue
            value = draw(st.sampled_from(values))
            required = isinstance(argument_definition.type, GraphQLNonNull)
            required = required and argument_definition.default_value is None
            if value is None and not required:
                continue
            if value is None:
                value = next(v for v in values if v is not None)
            arguments.append(f"{argument}: {self._value(argument_definition.type, value)}")
        alias = draw(st.sampled_from(["", "", "", f"{name}A: ", "x: "]))
        directive = draw(st.sampled_from(["", "", "", "", " @include(if: true)", " @skip(if: true)", " @skip(if: $s)"]))
        if "$s" in directive:
            self.variables["s"] = ("Boolean!", draw(st.booleans()))
        head = f"{alias}{name}" + (f"({', '.join(arguments)})" if arguments else "") + directive
        if isinstance(named, GraphQLObjectType):
            return f"{head} {self.selection(named, depth + 1)}"
        if isinstance(named, GraphQLInterfaceType):  # `node`: a fragment on each type that implements it
            fragments = [f"... on {t.name} {self.selection(t, depth + 1)}" for t in SCHEMA.get_possible_types(named)]
            return f"{head} {{ __typename {' '.join(fragments)} }}"
        return head

    def _value(self, kind: GraphQLOutputType | Any, value: Any) -> str:
        """A literal, or now and then a variable of the argument's type."""
        if self.draw(st.booleans()):
            name = f"v{len(self.variables)}"
            self.variables[name] = (str(kind), value)
            return f"${name}"
        if isinstance(value, list):
            return "[" + ", ".join(self._literal(v) for v in value) + "]"
        return self._literal(value)

    @staticmethod
    def _literal(value: Any) -> str:
        if isinstance(value, str):
            return '"' + value + '"'
        return str(value).lower() if isinstance(value, bool) else str(value)

    def document(self) -> tuple[str, dict[str, Any]]:
        query_type = SCHEMA.query_type
        assert query_type is not None
        body = self.selection(query_type, 0)
        declared = ", ".join(f"${n}: {t}" for n, (t, _) in self.variables.items())
        head = f"query Q({declared})" if declared else "query Q"
        return " ".join([f"{head} {body}", *self.fragments]), {n: v for n, (_, v) in self.variables.items()}


def requests(pool: dict[str, list[Any]]) -> st.SearchStrategy[tuple[str, str, dict[str, Any]]]:
    @st.composite
    def one(draw: st.DrawFn) -> tuple[str, str, dict[str, Any]]:
        document, variables = _Documents(draw, pool).document()
        key = draw(st.sampled_from(["all", "all", "all", "no-pii", "writer", "none"]))
        return key, document, variables

    return one()


class _App:
    def __init__(self, client: httpx.AsyncClient, keys: dict[str, str]) -> None:
        self.client, self.keys = client, keys

    async def answer(self, key: str, document: str, variables: dict[str, Any]) -> tuple[int, Any, Any]:
        headers = {"authorization": f"Bearer {self.keys[key]}"} if key in self.keys else {}
        response = await self.client.post("/graphql", json={"query": document, "variables": variables}, headers=headers)
        body = response.json()
        errors = [(e["message"], e.get("path"), e.get("extensions", {}).get("code")) for e in body.get("errors", [])]
        return response.status_code, _unstamped(body.get("data")), errors


def _unstamped(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _unstamped(v) for k, v in value.items() if k not in STAMPS}
    return [_unstamped(v) for v in value] if isinstance(value, list) else value


@asynccontextmanager
async def _apps(root: Path) -> AsyncIterator[tuple[_App, _App, dict[str, list[str]]]]:
    """The compiling app, the interpreting one, and the ids of the data they share."""
    store = SQLiteStore(root / "shared.sqlite3")
    keys = {name: (await create_key(store, name, scopes))[1] for name, scopes in KEYS.items()}
    apps = []
    for compiled in (True, False):
        settings_ = Settings(seed_fixtures=False, compiled_execution=compiled)
        services = Services(settings=settings_, store=store, ingestion=IngestionPolicy())
        apps.append(
            httpx.AsyncClient(transport=httpx.ASGITransport(app=create_app(services=services)), base_url="http://t")
        )
    try:
        fast, core = _App(apps[0], keys), _App(apps[1], keys)
        yield fast, core, await _data(core)
    finally:
        for client in apps:
            await client.aclose()
        await store.close()


async def _data(app: _App) -> dict[str, list[str]]:
    """Three customers with history, consents and a segment; a fourth merged into the first."""
    events = []
    for n, email in enumerate([*EMAILS, "ann.other@example.com"]):
        for i, kind in enumerate(["identify", "page_view", "order_completed", "email_open", "page_view"][: 5 - n]):
            properties: dict[str, Any] = {"url": f"/p{i}", "email": email}
            if kind == "identify":
                properties = {"firstName": f"Name{n}", "lastName": "Martin", "traits": {"tier": "gold", "email": email}}
            if kind == "order_completed":
                properties = {"orderId": f"o{n}", "total": 10.5 * (n + 1), "lines": []}
            identifiers = [{"type": "email", "value": email}]
            timestamp = f"2026-11-0{i + 1}T10:00:00Z"
            channel = "web" if i % 2 else "email"
            events.append({"messageId": f"m{n}-{i}", "type": kind, "channel": channel, "timestamp": timestamp,
                           "identifiers": identifiers, "properties": properties})  # fmt: skip
    ingest = "mutation($e: [EventInput!]!) { ingestEvents(events: $e) { results { profileId } } }"
    status, data, errors = await app.answer("all", ingest, {"e": events})
    assert (status, errors) == (200, []), errors
    profiles = list(dict.fromkeys(r["profileId"] for r in data["ingestEvents"]["results"]))
    segment = (
        'mutation { createSegment(input: {name: "web visitors", '
        'condition: {event: {type: "page_view", atLeast: 1, withinDays: 730}}}) { segment { id } } }'
    )
    admin = {"authorization": f"Bearer {app.keys['all']}"}
    created = await app.client.post("/graphql", json={"query": segment}, headers=admin)
    assert "errors" not in created.json(), created.text
    segment_id = created.json()["data"]["createSegment"]["segment"]["id"]
    merge = 'mutation M($s: ID!, $m: ID!) { mergeProfiles(survivorId: $s, mergedIds: [$m], reason: "x") '
    merge += "{ merge { id } } }"
    body = {"query": merge, "variables": {"s": profiles[0], "m": profiles[3]}}
    merged = await app.client.post("/graphql", json=body, headers=admin)
    assert "errors" not in merged.json(), merged.text
    return {"profiles": profiles, "segments": [segment_id]}


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.data())
def test_compiled_queries_answer_as_graphql_core(data: st.DataObject) -> None:
    async def compare() -> None:
        with tempfile.TemporaryDirectory() as root:
            async with _apps(Path(root)) as (fast, core, ids):
                sequence = data.draw(st.lists(requests(_argument_pool(ids)), min_size=1, max_size=8))
                for key, document, variables in sequence:
                    expected = await core.answer(key, document, variables)
                    # Twice: a document seen before takes the shorter way (graphql_schema/compiled_requests.py).
                    assert await fast.answer(key, document, variables) == expected, document
                    assert await fast.answer(key, document, variables) == expected, document

    asyncio.run(compare())


PERSONALISATION = """
query Customer($type: String!, $value: String!) { profileByIdentifier(type: $type, value: $value) {
  id firstName lastName language gender traits segments consents { purpose granted at }
  stats { orders revenue averageOrderValue lastOrderAt cartAbandons visits lastSeenAt emailOpens emailClicks
          productViews pageViews channels { channel count } }
  qualitative { npsScore averageRating preferences } rfm { recencyScore frequencyScore monetaryScore segment }
  interactions(first: 10) { edges { node { type channel timestamp properties } }
                            pageInfo { hasNextPage endCursor } } } }
"""


async def test_the_personalisation_query_is_compiled_and_masks_without_read_pii(tmp_path: Path) -> None:
    async with _apps(tmp_path) as (fast, core, _):
        variables = {"type": "email", "value": EMAILS[0]}
        for key in ("all", "no-pii"):
            answered = await fast.answer(key, PERSONALISATION, variables)
            assert answered == await core.answer(key, PERSONALISATION, variables)
            assert answered[0] == 200 and answered[2] == [], answered
        profile = answered[1]["profileByIdentifier"]
        assert profile["firstName"] == "N***" and "***" in profile["traits"]["email"]
        assert profile["interactions"]["edges"], "the history is there"
        refused = await fast.answer("writer", PERSONALISATION, variables)
        assert refused[1] is None and refused[2][0][2] == "FORBIDDEN", refused
        metrics = (await fast.client.get("/metrics")).text
        executions = await _executions(fast)
    assert executions["compiled"] >= 2, executions
    # Every request's latency is recorded under its operation's name, whichever way it was answered.
    assert 'cdp_graphql_operation_seconds_count{name="Customer",type="query"} 3.0' in metrics


async def test_an_error_in_a_compiled_query_is_answered_by_graphql_core(tmp_path: Path) -> None:
    """A foreign cursor: the plan is abandoned and graphql-core's error (with its path) is the answer."""
    document = (
        'query { profileByIdentifier(type: "email", value: "ann@example.com") { id '
        'interactions(first: 2, after: "bad") { edges { node { type } } } } }'
    )
    async with _apps(tmp_path) as (fast, core, _):
        answered = await fast.answer("all", document, {})
        assert answered == await core.answer("all", document, {})
        _, data, errors = answered
        assert data == {"profileByIdentifier": None}  # interactions is non-null: the error nulls the profile
        assert errors and errors[0][1][:2] == ["profileByIdentifier", "interactions"], errors
        metrics = (await fast.client.get("/metrics")).text
    assert 'cdp_graphql_executions_total{executor="graphql-core"} 1.0' in metrics


def _minimal(name: str, pool: dict[str, list[Any]]) -> str:
    """`name` at the root with its arguments' first values and its object's first leaf field."""
    query_type = SCHEMA.query_type
    assert query_type is not None
    definition = query_type.fields[name]
    given = [(a, next(v for v in pool.get(a, [None]) if v is not None)) for a in definition.args if a in pool]
    arguments = ", ".join(f"{a}: {_Documents._literal(v)}" for a, v in given)
    named = get_named_type(definition.type)
    selection = ""
    if isinstance(named, GraphQLObjectType):
        leaves = [n for n, f in named.fields.items() if not isinstance(get_named_type(f.type), GraphQLObjectType)]
        selection = f" {{ __typename {' '.join(leaves[:1])} }}"
    return f"query Q {{ {name}{f'({arguments})' if arguments else ''}{selection} }}"


async def test_every_root_field_with_every_key(tmp_path: Path) -> None:
    """Each root field, asked by each key: its scope rule is applied by the plan as by graphql-core."""
    query_type = SCHEMA.query_type
    assert query_type is not None
    async with _apps(tmp_path) as (fast, core, ids):
        pool = _argument_pool(ids)
        for name in query_type.fields:
            document = _minimal(name, pool)
            for key in [*KEYS, "none"]:
                assert await fast.answer(key, document, {}) == await core.answer(key, document, {}), (key, document)


EDGES = """
query Edges($after: String) { segments { id members(first: 2) {
  edges { __typename node { id firstName interactions(first: 3, after: $after) {
    edges { n: node { type properties } m: node { __typename channel } } } } }
  again: edges { cursor node { id } } ids: edges { node { id } } pageInfo { endCursor } } } }
"""


async def test_edges_asked_for_their_node_only_answer_as_graphql_core(tmp_path: Path) -> None:
    """A connection's edges asked for their node only are completed from the page's nodes, with no
    edge made for each (graphql_schema/pagination.py, `page_nodes`): the same answers, masking and
    error paths included, beside edges asked for their cursor too."""
    async with _apps(tmp_path) as (fast, core, _):
        for key in ("all", "no-pii"):
            for after in (None, "not-a-cursor"):
                variables = {"after": after}
                answered = await fast.answer(key, EDGES, variables)
                assert answered == await core.answer(key, EDGES, variables), (key, after)
        status, data, errors = await fast.answer("no-pii", EDGES, {"after": None})
        assert (status, errors) == (200, []), errors
        members = data["segments"][0]["members"]
        assert members["edges"] and members["edges"][0]["__typename"] == "ProfileEdge"
        ids = [e["node"]["id"] for e in members["edges"]]
        assert ids == [e["node"]["id"] for e in members["again"]] == [e["node"]["id"] for e in members["ids"]]
        history = members["edges"][0]["node"]["interactions"]["edges"]
        assert history and all(e["n"]["type"] and e["m"]["channel"] for e in history)
        assert all(e["cursor"] for e in members["again"])


# A connection asked for its edges' nodes alone, with constant arguments: the nodes come from the
# resolver's `nodes_alone` (graphql_schema/pagination.py) where it gives them, the resolver otherwise.
NODES_ALONE = [
    "interactions(first: 2)",
    "interactions",
    "interactions(first: 55)",  # past the embedded list of the long history: read from the store
    "interactions(first: 0)",
    "interactions(first: 1000)",
    'interactions(types: ["page_view"])',
    "interactions(last: 2)",
    'interactions(after: "not-a-cursor")',
]


async def test_a_connection_asked_for_its_nodes_alone_answers_as_graphql_core(tmp_path: Path) -> None:
    """Members' last interactions, asked for nothing but the edges' nodes: the same answers as
    graphql-core's (masking, refused arguments and their paths included) whether the nodes are given
    alone (the newest page of the embedded list) or the resolver makes the page (filters, cursors,
    a page past the embedded list, a size out of bounds)."""
    async with _apps(tmp_path) as (fast, core, _):
        long = [{"type": "email", "value": "long@example.com"}]
        long_history = [{"messageId": f"long-{i}", "type": "page_view", "channel": "web", "identifiers": long,
                         "timestamp": f"2026-10-01T10:{i:02d}:00Z", "properties": {"url": f"/l{i}"}}
                        for i in range(60)]  # fmt: skip
        ingest = "mutation($e: [EventInput!]!) { ingestEvents(events: $e) { results { status } } }"
        assert (await core.answer("all", ingest, {"e": long_history}))[2] == []
        before, refused = await _executions(fast), 0
        for field in NODES_ALONE:
            document = (
                f"{{ segments {{ members(first: 10) {{ edges {{ node {{ id {field} "
                "{ edges { node { type channel messageId properties } } } } } } } }"
            )
            for key in ("all", "no-pii"):
                answered = await fast.answer(key, document, {})
                assert answered == await core.answer(key, document, {}), (key, field)
                refused += any(path for _, path, _ in answered[2])  # refused in execution (sizes are before)
        _, data, errors = await fast.answer("all", document.replace(NODES_ALONE[-1], NODES_ALONE[0]), {})
        assert errors == [], errors
        after = await _executions(fast)
        _, masked, _ = await fast.answer("no-pii", document.replace(NODES_ALONE[-1], NODES_ALONE[2]), {})
    members = data["segments"][0]["members"]["edges"]
    assert len(members) == 4 and all(len(m["node"]["interactions"]["edges"]) == 2 for m in members)
    newest = next(m for m in members if m["node"]["interactions"]["edges"][0]["node"]["messageId"] == "long-59")
    assert [e["node"]["messageId"] for e in newest["node"]["interactions"]["edges"]] == ["long-59", "long-58"]
    pages = [m["node"]["interactions"]["edges"] for m in masked["segments"][0]["members"]["edges"]]
    assert all(pages) and max(len(p) for p in pages) == 55
    # What execution refused (the foreign cursor) was answered by graphql-core, and only that.
    assert after["graphql-core"] - before["graphql-core"] == refused >= 2


HISTORY = """{ segmentHistory(last: 50) { id change segmentId profileId
  segment { id name } profile { id firstName piiMasked } again: profile { firstName } } }"""


async def test_a_history_whose_segments_and_profiles_were_read_for_the_list_answers_as_graphql_core(
    tmp_path: Path,
) -> None:
    """A history's events hold the segment and profile read for the whole list, which a compiled
    plan reads without calling their resolvers (graphql_schema/held_values.py): the same answers,
    masking included, each event with its own segment and profile (the one merged away follows its
    survivor)."""
    async with _apps(tmp_path) as (fast, core, ids):
        before = await _executions(fast)
        for key in ("all", "no-pii"):
            answered = await fast.answer(key, HISTORY, {})
            assert answered == await core.answer(key, HISTORY, {}), key
        status, data, errors = await fast.answer("all", HISTORY, {})
        assert (status, errors) == (200, []), errors
        events, (survivor, merged) = data["segmentHistory"], (ids["profiles"][0], ids["profiles"][3])
        assert {e["profileId"] for e in events} >= {survivor, merged}
        for event in events:
            assert event["segment"] == {"id": event["segmentId"], "name": "web visitors"}
            own = survivor if event["profileId"] == merged else event["profileId"]
            assert event["profile"]["id"] == own and event["profile"]["firstName"] == event["again"]["firstName"]
        assert len({e["profile"]["firstName"] for e in events}) == len({e["profile"]["id"] for e in events}) >= 3
        _, masked, _ = await fast.answer("no-pii", HISTORY, {})
        assert all(e["profile"]["firstName"] == "N***" and e["profile"]["piiMasked"] for e in masked["segmentHistory"])
        after = await _executions(fast)
    # All four answered by the compiled plans, none handed back to graphql-core.
    assert (after["compiled"] - before["compiled"], after["graphql-core"] - before["graphql-core"]) == (4, 0)


async def _executions(app: _App) -> dict[str, float]:
    metrics = (await app.client.get("/metrics")).text
    found = {line.split('"')[1]: float(line.split()[-1]) for line in metrics.splitlines()
             if line.startswith("cdp_graphql_executions_total{")}  # fmt: skip
    return {"compiled": found.get("compiled", 0.0), "graphql-core": found.get("graphql-core", 0.0)}


async def test_a_document_compiles_a_bounded_number_of_plans_and_graphql_core_answers_past_them(
    tmp_path: Path,
) -> None:
    """Found by an audit: each new value of the variables `@include`/`@skip` read compiled a new plan,
    on the loop, kept for ever (20 switches sent at random: 13 ms and 126 KB a request). Past
    PLANS_PER_DOCUMENT the other values are answered by graphql-core, as they would be."""
    switches = 6  # 64 values
    declared = ", ".join(f"$s{n}: Boolean!" for n in range(switches))
    fields = " ".join(f"c{n}: id @include(if: $s{n})" for n in range(switches))
    document = f'query Q({declared}) {{ profileByIdentifier(type: "email", value: "{EMAILS[0]}") {{ {fields} }} }}'
    async with _apps(tmp_path) as (fast, core, _):
        for value in range(2**switches):
            variables = {f"s{n}": bool(value >> n & 1) for n in range(switches)}
            answered = await fast.answer("all", document, variables)
            assert answered == await core.answer("all", document, variables)
            assert answered[0] == 200 and answered[2] == [], answered
        executions = await _executions(fast)
    assert executions == {"compiled": PLANS_PER_DOCUMENT, "graphql-core": 2**switches - PLANS_PER_DOCUMENT}
