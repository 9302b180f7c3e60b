"""The OWASP GraphQL cheat sheet's attack classes, sent to the application through HTTP: each is refused
before execution (no store call is made for it) with a code that says why, and no answer carries a
traceback, a source file path or a database driver's name.

Each request runs in a thread of its own with a 30-second guard: a check that expands what a document
could expand to (fragment fan-out) would otherwise hang the test run instead of failing it.
"""

from __future__ import annotations

import asyncio
import json
import re
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest

from app.bootstrap import Services
from app.main import create_app
from app.services.ingestion import IngestionPolicy
from app.settings import Settings
from app.store.sqlite.store import SQLiteStore

GUARD_SECONDS = 30
LEAKS = re.compile(r"Traceback|File \"|/[\w./-]+\.py\b|sqlite|pymongo", re.IGNORECASE)


class RecordingStore:
    """The embedded store, noting the name of every store method called (a refused request calls none)."""

    def __init__(self, store: SQLiteStore) -> None:
        self._store = store
        self.calls: list[str] = []

    def __getattr__(self, name: str) -> Any:
        found = getattr(self._store, name)
        if not callable(found):
            return found

        def called(*args: Any, **kwargs: Any) -> Any:
            self.calls.append(name)
            return found(*args, **kwargs)

        return called


@dataclass(frozen=True)
class Hostile:
    body: dict[str, Any] | list[Any] | bytes  # bytes: sent as they are
    codes: set[str]  # the codes of the refusal's errors
    says: str  # what the (first) message says, in any case
    settings: dict[str, Any] = field(default_factory=dict)
    status: int | None = None  # when the refusal is a particular HTTP status
    never_says: str | None = None


def _fan_out(levels: int) -> str:
    spreads = " ".join(f"fragment F{n} on Query {{ ...F{n + 1} ...F{n + 1} }}" for n in range(levels))
    return f"query {{ ...F0 }} {spreads} fragment F{levels} on Query {{ __typename }}"


def _nested(name: str, levels: int, leaf: str) -> str:
    return f"{name} {{ " * levels + leaf + " }" * levels


DEEP = "{ segments { members { edges { node { " + _nested("x", 60, "y") + " } } } } }"
NESTED_PAGES = "{ profiles(first: 100) { edges { node { interactions(first: 100) { edges { node { type } } } } } } }"
# The issue's item 3: a negative page's cost cancelled the rest (this one cost 502,002 with it, -999,497,998).
CANCELLED_COST = (
    "{ profiles(first: 100) { edges { node { a: interactions(first: 100) { edges { node { type channel timestamp "
    "properties } } } b: interactions(first: -10000000) { edges { node { type } } } } } } }"
)
CASES = [
    pytest.param(Hostile({"query": DEEP}, {"LIMIT_EXCEEDED"}, "depth"), id="depth"),
    pytest.param(
        Hostile(
            {"query": "{ " + " ".join(f"a{n}: segments {{ id }}" for n in range(1000)) + " }"},
            {"LIMIT_EXCEEDED"},
            "1000 aliases",
            settings={"max_query_tokens": 100_000},  # so that the alias limit is what refuses
        ),
        id="aliases",
    ),
    pytest.param(
        Hostile({"query": "{ " + "segments { id } " * 400 + "}"}, {"LIMIT_EXCEEDED"}, "selected 400 times"),
        id="field duplication",
    ),
    pytest.param(
        Hostile(
            {"query": "{ segments { id } __typename " + "@skip(if: false) " * 250 + "}"},
            {"LIMIT_EXCEEDED"},
            "250 directives",
        ),
        id="directives",
    ),
    pytest.param(
        Hostile(
            {"query": "{ segments { ...A } } fragment A on Segment { id ...B } fragment B on Segment { name ...A }"},
            {"GRAPHQL_VALIDATION_FAILED"},
            "Cannot spread fragment",
        ),
        id="circular fragments",
    ),
    pytest.param(
        Hostile({"query": _fan_out(20)}, {"LIMIT_EXCEEDED"}, "query cost"), id="fan-out fragments (the issue's)"
    ),
    pytest.param(Hostile({"query": _fan_out(60)}, {"LIMIT_EXCEEDED"}, "query cost"), id="fan-out fragments, 60 levels"),
    pytest.param(
        Hostile(
            {
                "query": " ".join(f"query Q{n} {{ ...F }}" for n in range(250))
                + " fragment F on Query { segments { id name description purpose createdAt updatedAt count } }",
                "operationName": "Q0",
            },
            {"LIMIT_EXCEEDED"},
            "250 operations",
        ),
        id="operations sharing a fragment (validated once per operation)",
    ),
    pytest.param(Hostile({"query": "{ " + "segments " * 3000 + "}"}, {"LIMIT_EXCEEDED"}, "tokens"), id="tokens"),
    pytest.param(
        Hostile({"query": "{ " + "a " * 400_000 + "}"}, {"LIMIT_EXCEEDED"}, "characters"),
        id="a 800 KB document of tokens",
    ),
    pytest.param(
        Hostile({"query": '{ profile(id: "' + "x" * 900_000 + '") { id } }'}, {"LIMIT_EXCEEDED"}, "characters"),
        id="a 900 KB string literal",
    ),
    pytest.param(
        Hostile({"query": "#" + "x" * 900_000 + "\n{ segments { id } }"}, {"LIMIT_EXCEEDED"}, "characters"),
        id="a 900 KB comment",
    ),
    pytest.param(
        Hostile([{"query": "{ segments { id } }"}] * 50, set(), "batch", status=400), id="batching (a JSON array)"
    ),
    pytest.param(
        Hostile(
            {"query": "{ __schema { types { name } } }"},
            {"GRAPHQL_VALIDATION_FAILED"},
            "introspection",
            settings={"environment": "production"},
        ),
        id="introspection in production",
    ),
    pytest.param(
        Hostile(
            {"query": "{ segmnts { id } }"},
            {"GRAPHQL_VALIDATION_FAILED"},
            "Cannot query field 'segmnts'",
            settings={"environment": "production"},
            never_says="Did you mean",
        ),
        id="suggestions in production",
    ),
    pytest.param(Hostile({"query": NESTED_PAGES}, {"LIMIT_EXCEEDED"}, "query cost"), id="cost of nested connections"),
    pytest.param(
        Hostile(
            {"query": CANCELLED_COST},
            {"BAD_USER_INPUT"},
            "first must be between 1 and 100",
        ),
        id="a negative page",
    ),
    pytest.param(
        Hostile(
            {"query": "{ profiles(first: " + "9" * 5000 + ") { edges { cursor } } }"},
            {"BAD_USER_INPUT"},
            "first must be between 1 and 100",
        ),
        id="a 5,000-digit page",
    ),
    pytest.param(
        Hostile(
            {
                "query": "query($n: Int!, $m: Int!) { profiles(first: $n) { edges { node { interactions(first: $m) "
                "{ edges { node { type } } } } } } }",
                "variables": {"n": 1, "m": -100_000_000},
            },
            {"BAD_USER_INPUT"},
            "first must be between 1 and 100",
        ),
        id="a negative page as a variable",
    ),
    pytest.param(
        Hostile(
            {
                "query": 'query($t: [String!]) { profile(id: "p") { interactions(types: $t) { edges { cursor } } } }',
                "variables": {"t": ["x"] * 20_000},
            },
            {"LIMIT_EXCEEDED"},
            "20,000 items",
        ),
        id="a huge variable (a list of 20,000)",
    ),
    pytest.param(
        Hostile(
            {
                "query": 'query($t: [String!]) { profile(id: "p") { interactions(types: $t) { edges { cursor } } } }',
                "variables": {"t": ["x"] * 100_000},
            },
            {"LIMIT_EXCEEDED"},
            "more than 50,000 JSON values",
            status=413,
        ),
        id="a body of 100,000 values (refused before decoding)",
    ),
    pytest.param(
        Hostile(
            b'{"query": "query($f: ProfileFilterInput) { profiles(filter: $f) { edges { cursor } } }", '
            b'"variables": {"f": ' + b"[" * 10_000 + b"]" * 10_000 + b"}}",
            set(),
            "",
            status=400,
        ),
        id="variables nested 10,000 levels",
    ),
]


def _post(app: Any, body: Any) -> httpx.Response:
    """POST `body` to the application, in a thread of its own so that a hang fails the test."""
    answer: list[httpx.Response] = []
    failure: list[BaseException] = []

    async def post() -> None:
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://127.0.0.1", timeout=None) as client:
            content = body if isinstance(body, bytes) else json.dumps(body).encode()
            answer.append(await client.post("/graphql", content=content, headers={"content-type": "application/json"}))

    def run() -> None:
        try:
            asyncio.run(post())
        except BaseException as error:  # handed to the test's thread
            failure.append(error)

    worker = threading.Thread(target=run, daemon=True)
    worker.start()
    worker.join(GUARD_SECONDS)
    if worker.is_alive():
        pytest.fail(f"no answer within {GUARD_SECONDS} s: checking the document hangs")
    if failure:
        raise failure[0]
    return answer[0]


@pytest.mark.parametrize("case", CASES)
def test_a_hostile_query_is_refused_before_execution(case: Hostile, tmp_path: Path) -> None:
    store = RecordingStore(SQLiteStore(tmp_path / "cdp.sqlite3"))
    settings = Settings(seed_fixtures=False, auth=False, **case.settings)
    services = Services(settings=settings, store=store, ingestion=IngestionPolicy())  # type: ignore[arg-type]
    response = _post(create_app(services=services), case.body)

    assert store.calls == [], f"the store was called: {store.calls}"
    assert not LEAKS.search(response.text), response.text[:2000]
    if case.status is not None:
        assert response.status_code == case.status, response.text[:2000]
    assert response.headers["content-type"].startswith(("application/json", "application/graphql-response+json"))
    errors = response.json()["errors"]
    assert errors and all(error.get("extensions", {}).get("code") for error in errors), errors
    if case.codes:
        assert {error["extensions"]["code"] for error in errors} == case.codes, errors
    assert case.says.lower() in errors[0]["message"].lower(), errors
    if case.never_says:
        assert all(case.never_says not in error["message"] for error in errors), errors
    assert response.json().get("data") is None
