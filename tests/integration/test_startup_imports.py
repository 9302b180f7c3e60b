"""What a server on the embedded store loads: not PyMongo (~60 ms and ~6 MB of each process's start,
and of each bulk process's), which only a MongoDB store needs (app/store/retrying.py)."""

from __future__ import annotations

import json
from pathlib import Path

from tests.faults import run_script

SERVE_ONE_QUERY = """
import asyncio, json, sys
import httpx
from app.main import create_app
from app.settings import Settings

async def main():
    app = create_app(Settings(database_url=f"sqlite:///{sys.argv[1]}", seed_fixtures=False, auth=False))
    async with app.router.lifespan_context(app):
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://test") as http:
            response = await http.post("/graphql", json={"query": "{ segments { id } }"})
    loaded = sorted(name for name in sys.modules if name.split(".")[0] in ("pymongo", "bson", "motor"))
    print(json.dumps({"status": response.status_code, "loaded": loaded}))

asyncio.run(main())
"""


def test_a_server_on_the_embedded_store_never_loads_pymongo(tmp_path: Path) -> None:
    done = run_script(SERVE_ONE_QUERY, str(tmp_path / "cdp.sqlite3"))
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout.strip().splitlines()[-1]) == {"status": 200, "loaded": []}
