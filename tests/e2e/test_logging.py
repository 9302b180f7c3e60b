"""Structured logs: a server in JSON mode writes nothing but JSON objects, one a line, and every line
written while a request is served carries that request's id, the masked-error line included (with
the errorId the client was given); a WebSocket connection has one id, in its handshake and its lines."""

from __future__ import annotations

import asyncio
import io
import json
import logging
import signal
import sqlite3
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, cast

import httpx
import uvicorn
from websockets.asyncio.client import connect
from websockets.typing import Subprotocol

from app.bootstrap import Services
from app.domain.events import RawIdentifier
from app.main import create_app
from app.observability.logs import JsonFormatter, TextFormatter, WithoutQueryStrings, configure
from app.services import profiles
from app.services.ingestion import IngestionPolicy
from app.settings import Settings
from app.store.sqlite.store import SQLiteStore
from tests.server_process import free_port, start_server


class _BrokenReads:
    """The store, with profile reads failing the way a bug would: not a domain error, so masked."""

    def __init__(self, inner: SQLiteStore) -> None:
        self._inner = inner

    async def get_profile(self, profile_id: str) -> None:
        raise RuntimeError(f"secret database detail about {profile_id}")

    def __getattr__(self, name: str) -> Any:
        return getattr(self._inner, name)


@contextmanager
def _captured_lines(name: str = "cdp") -> Iterator[io.StringIO]:
    """What logger `name` writes meanwhile, at INFO and up, as the JSON formatter writes it."""
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(JsonFormatter())
    logger = logging.getLogger(name)
    level = logger.level
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    try:
        yield stream
    finally:
        logger.removeHandler(handler)
        logger.setLevel(level)


async def test_the_masked_error_line_carries_the_request_id_and_the_error_id(sqlite_store: SQLiteStore) -> None:
    services = Services(
        settings=Settings(seed_fixtures=False, auth=False),
        store=_BrokenReads(sqlite_store),  # type: ignore[arg-type]
        ingestion=IngestionPolicy(),
    )
    transport = httpx.ASGITransport(app=create_app(services=services))
    async with httpx.AsyncClient(transport=transport, base_url="http://t") as http:
        with _captured_lines() as stream:
            response = await http.post(
                "/graphql", json={"query": '{ profile(id: "p-1") { id } }'}, headers={"x-request-id": "req-masked-1"}
            )
    error = response.json()["errors"][0]
    assert error["message"] == "Internal server error" and "secret" not in response.text
    lines = [json.loads(line) for line in stream.getvalue().splitlines()]
    assert {line["requestId"] for line in lines} == {"req-masked-1"}
    [masked] = [line for line in lines if line["logger"] == "cdp.graphql"]
    assert masked["level"] == "error" and masked["errorId"] == error["extensions"]["errorId"]
    assert "RuntimeError: secret database detail about p-1" in masked["exception"]
    [access] = [line for line in lines if line["logger"] == "cdp.access"]
    assert (access["path"], access["status"]) == ("/graphql", 200)


async def test_a_websocket_connection_has_one_id_in_its_handshake_and_its_log_lines(sqlite_store: SQLiteStore) -> None:
    services = Services(
        settings=Settings(seed_fixtures=False, auth=False), store=sqlite_store, ingestion=IngestionPolicy()
    )
    port = free_port()
    # log_config=None: uvicorn leaves the logging set-up alone; the capture below sets uvicorn.error to INFO.
    config = uvicorn.Config(create_app(services=services), host="127.0.0.1", port=port, lifespan="off", log_config=None)
    server = uvicorn.Server(config)
    with _captured_lines("uvicorn.error") as stream:
        task = asyncio.create_task(server.serve())
        try:
            while not server.started:
                await asyncio.sleep(0.05)
            ws = await connect(
                f"ws://127.0.0.1:{port}/graphql",
                subprotocols=[Subprotocol("graphql-transport-ws")],
                additional_headers={"X-Request-Id": "ws-conn-9"},
            )
            await ws.close()
        finally:
            server.should_exit = True
            await task
    assert ws.response is not None and ws.response.headers["x-request-id"] == "ws-conn-9"
    accepted = [json.loads(line) for line in stream.getvalue().splitlines() if "[accepted]" in line]
    assert [line["requestId"] for line in accepted] == ["ws-conn-9"]


def test_a_server_in_json_mode_writes_only_json_lines_and_each_request_line_names_its_request(
    tmp_path: Path,
) -> None:
    port = free_port()
    env = {
        "CDP_DATABASE_URL": f"sqlite:///{tmp_path}/cdp.sqlite3",
        "CDP_SEED_FIXTURES": "false",
        "CDP_AUTH": "off",
        "CDP_LOG_FORMAT": "json",
    }
    output = tmp_path / "server.log"
    with output.open("w") as sink:
        process = start_server(env, port, output=sink, timeout=30)
    try:
        url = f"http://127.0.0.1:{port}"
        given = httpx.post(
            f"{url}/graphql", json={"query": "{ segments { id } }"}, headers={"x-request-id": "req-from-client-7"}
        )
        made = httpx.post(f"{url}/graphql", json={"query": "{ segments { id } }"})
        assert given.status_code == made.status_code == 200
    finally:
        process.send_signal(signal.SIGTERM)
        process.wait(timeout=20)

    text = output.read_text()
    lines = [json.loads(line) for line in text.splitlines()]  # every line parses, the start banner included
    assert all({"time", "level", "logger", "message"} <= set(line) for line in lines)
    requests = [
        (line.get("requestId"), line["path"], line["status"]) for line in lines if line["logger"] == "cdp.access"
    ]
    assert ("req-from-client-7", "/graphql", 200) in requests
    assert (made.headers["x-request-id"], "/graphql", 200) in requests
    assert given.headers["x-request-id"] == "req-from-client-7"
    assert any(line["message"].startswith("CDP core on http://127.0.0.1:") for line in lines)
    assert any(line["message"] == "Shutting down" for line in lines)


def test_a_text_log_line_cannot_be_forged_by_a_request_path() -> None:
    """Found by an audit: the access line writes the URL-decoded path, so `/graphql%0a2026-… ERROR …`
    wrote a second log line, forged, without a key (text format, the default outside production)."""
    record = logging.LogRecord(
        "cdp.access", logging.INFO, __file__, 1, "%s %s %d", ("GET", "/x\n2026 ERROR forged\r\x1b[2J", 404), None
    )
    line = TextFormatter("%(levelname)s %(name)s: %(message)s").format(record)
    assert line == "INFO cdp.access: GET /x\\n2026 ERROR forged\\r\\x1b[2J 404"


async def test_handshake_headers_and_frames_are_never_logged_whatever_the_level(sqlite_store: SQLiteStore) -> None:
    """Found by audits: at CDP_LOG_LEVEL=debug the WebSocket library logged every handshake header (the
    Authorization key), the request line's query string, and the start and end of every frame
    (connection_init's key, a subscription's variables). Its level was set on its own logger, which
    uvicorn does not give it (it writes through `uvicorn.error`)."""
    services = Services(
        settings=Settings(seed_fixtures=False, auth=False), store=sqlite_store, ingestion=IngestionPolicy()
    )
    root, library = logging.getLogger(), logging.getLogger("websockets")
    kept = (root.handlers[:], root.level, library.level)
    # As the server has them (log_config=None): uvicorn's loggers write through the root's handler. A
    # test before this one in the process may have run uvicorn with its own logging set-up.
    uvicorn_loggers = [logging.getLogger(name) for name in ("uvicorn", "uvicorn.error")]
    kept_uvicorn = [(logger.handlers[:], logger.propagate, logger.level) for logger in uvicorn_loggers]
    for logger in uvicorn_loggers:
        logger.handlers[:], logger.propagate, logger.level = [], True, logging.NOTSET
    stream = io.StringIO()
    port = free_port()
    try:
        configure("debug", "json")
        cast(logging.StreamHandler, root.handlers[0]).setStream(stream)  # type: ignore[type-arg]
        config = uvicorn.Config(
            create_app(services=services), host="127.0.0.1", port=port, lifespan="off", log_config=None
        )
        server = uvicorn.Server(config)
        task = asyncio.create_task(server.serve())
        try:
            while not server.started:
                await asyncio.sleep(0.05)
            async with connect(
                f"ws://127.0.0.1:{port}/graphql?email=canary.query%40example.com",
                subprotocols=[Subprotocol("graphql-transport-ws")],
                additional_headers={"Authorization": "Bearer canary-header-secret"},
            ) as ws:
                await ws.send(json.dumps({"type": "connection_init", "payload": {"token": "canary-init-secret"}}))
                await asyncio.wait_for(ws.recv(), 5)
        finally:
            server.should_exit = True
            await task
    finally:
        root.handlers[:] = kept[0]
        root.setLevel(kept[1])
        library.setLevel(kept[2])
        for logger, (handlers, propagate, level) in zip(uvicorn_loggers, kept_uvicorn, strict=True):
            logger.handlers[:], logger.propagate = handlers, propagate
            logger.setLevel(level)
    written = stream.getvalue()
    assert "[accepted]" in written  # the server's own lines are there, at every level
    assert "canary" not in written, [line for line in written.splitlines() if "canary" in line]


def test_the_websocket_access_line_leaves_the_query_string_out() -> None:
    """Found by an audit: uvicorn's line for a WebSocket logged `/graphql?lookup=jane.doe%40example.com`;
    the HTTP access line logs the path alone."""
    record = logging.LogRecord(
        "uvicorn.error", logging.INFO, __file__, 1, '%s - "WebSocket %s" [accepted]',
        ("127.0.0.1:5", "/graphql?lookup=jane.doe%40example.com"), None,
    )  # fmt: skip
    assert WithoutQueryStrings().filter(record)
    assert record.getMessage() == '127.0.0.1:5 - "WebSocket /graphql" [accepted]'


async def test_a_stored_profile_that_no_longer_validates_is_logged_without_its_values(tmp_path: Path) -> None:
    """Found by an audit: the traceback of the internal error quoted pydantic's message, and with it the
    stored values (`input_value='yara.canary@leak.example'`, a birth date) into the logs."""
    store = SQLiteStore(tmp_path / "cdp.sqlite3")
    try:
        profile = await profiles.upsert_profile(
            store,
            [RawIdentifier("email", "yara.canary@leak.example")],
            {"first_name": "Yara", "birth_date": "1981-02-03"},
        )
        with sqlite3.connect(tmp_path / "cdp.sqlite3") as db:  # damaged, or read by a stricter version
            db.execute(
                "UPDATE profiles SET doc = json_set(doc, '$.identifiers[0].addedAt', 'yara.canary@leak.example', "
                "'$.birthDate', '1981-02-31'), revision = revision + 1 WHERE id = ?",
                (profile.id,),
            )
        services = Services(
            settings=Settings(seed_fixtures=False, auth=False), store=store, ingestion=IngestionPolicy()
        )
        transport = httpx.ASGITransport(app=create_app(services=services))
        async with httpx.AsyncClient(transport=transport, base_url="http://t") as http:
            with _captured_lines() as stream:
                response = await http.post("/graphql", json={"query": f'{{ profile(id: "{profile.id}") {{ id }} }}'})
    finally:
        await store.close()
    assert response.json()["errors"][0]["extensions"]["code"] == "INTERNAL_SERVER_ERROR"
    [logged] = [json.loads(line) for line in stream.getvalue().splitlines() if "exception" in json.loads(line)]
    assert "ValidationError" in logged["exception"]
    assert "canary" not in logged["exception"] and "1981-02-31" not in logged["exception"]
