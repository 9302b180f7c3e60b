"""The server as a user runs it: a real process, seeded on first start, durable across restarts."""

from __future__ import annotations

import json
from pathlib import Path

import httpx

from tests.server_process import ready, running_server

EMMA_QUERY = """{ profileByIdentifier(type: "email", value: "emma.martin@example.com") {
  firstName stats { orders } interactions(first: 2) { edges { node { type } } } } }"""


def _write_fixtures(directory: Path) -> None:
    directory.mkdir()
    (directory / "products.jsonl").write_text(json.dumps({"_id": "sku-1", "name": "Hat", "price": 9.5}) + "\n")
    (directory / "profiles.jsonl").write_text(
        json.dumps(
            {
                "_id": "crm-1",
                "identifiers": [{"type": "email", "value": "Emma.Martin@Example.com"}],
                "firstName": "Emma",
            }
        )
        + "\n"
    )
    events = [
        {
            "_id": f"evt-{n}",
            "messageId": f"evt-{n}",
            "type": "order_completed",
            "channel": "store",
            "timestamp": {"$date": f"2026-03-0{n + 1}T10:00:00.000Z"},
            "identifiers": [{"type": "email", "value": "emma.martin@example.com"}],
            "properties": {"orderId": f"o{n}", "total": 10},
        }
        for n in range(3)
    ]
    (directory / "events.jsonl").write_text("".join(json.dumps(e) + "\n" for e in events))


def _post(url: str, query: str, key: str | None) -> dict:  # type: ignore[type-arg]
    headers = {"authorization": f"Bearer {key}"} if key else {}
    response = httpx.post(f"{url}/graphql", json={"query": query}, headers=headers, timeout=10)
    assert response.status_code == 200, response.text
    return response.json()  # type: ignore[no-any-return]


def test_first_start_seeds_the_embedded_store_and_data_survives_a_restart(tmp_path: Path) -> None:
    fixtures = tmp_path / "fixtures"
    _write_fixtures(fixtures)
    env = {"CDP_DATABASE_URL": f"sqlite:///{tmp_path}/cdp.sqlite3", "CDP_FIXTURES_DIR": str(fixtures)}
    with running_server(env) as url:
        assert ready(url) == {"status": "ready", "store": "sqlite"}
        # Development on loopback: a local all-scopes key, kept beside the database (owner-only).
        key_file = tmp_path / "dev-api-key"
        key = key_file.read_text().strip()
        assert key.startswith("cdp_") and key_file.stat().st_mode & 0o077 == 0
        refused = httpx.post(f"{url}/graphql", json={"query": EMMA_QUERY}, timeout=10)
        assert refused.status_code == 401  # without a key, refused before the request is read
        assert refused.json()["errors"][0]["extensions"]["code"] == "UNAUTHENTICATED"
        body = _post(url, EMMA_QUERY, key)
        assert body["data"]["profileByIdentifier"]["firstName"] == "Emma"
        assert body["data"]["profileByIdentifier"]["stats"]["orders"] == 3
        emma = '{type: "email", value: "emma.martin@example.com"}'
        upsert = f'upsertProfile(input: {{identifiers: [{emma}], lastName: "Martin"}})'
        _post(url, f"mutation {{ {upsert} {{ id }} }}", key)

    # Second start: the store is not empty, so nothing is loaded again; what was written is still there.
    (fixtures / "events.jsonl").write_text("")
    with running_server(env) as url:
        # The same key still works after a restart.
        assert (tmp_path / "dev-api-key").read_text().strip() == key
        query = EMMA_QUERY.replace("firstName", "firstName lastName")
        profile = _post(url, query, key)["data"]["profileByIdentifier"]
        assert (profile["lastName"], profile["stats"]["orders"]) == ("Martin", 3)
        assert [e["node"]["type"] for e in profile["interactions"]["edges"]] == ["order_completed"] * 2


def test_the_playground_page_is_served_with_local_assets(tmp_path: Path) -> None:
    env = {"CDP_DATABASE_URL": f"sqlite:///{tmp_path}/cdp.sqlite3", "CDP_SEED_FIXTURES": "false"}
    with running_server(env) as url:
        page = httpx.get(f"{url}/graphql", headers={"Accept": "text/html"})
        assert page.status_code == 200 and "graphiql" in page.text.lower()
        assert "unpkg" not in page.text and "jsdelivr" not in page.text
        script = httpx.get(f"{url}/playground-assets/graphiql.min.js")
        assert script.status_code == 200 and len(script.content) > 100_000
