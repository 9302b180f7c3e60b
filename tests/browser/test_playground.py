"""Browser check of the offline GraphiQL playground served by the real server.

Starts ``python -m app serve`` on a free port (fresh SQLite file, no fixtures), opens
``/graphql`` in headless Chromium driven over the DevTools protocol, and checks that GraphiQL
rendered, that a query typed into the editor runs, and that the page fetched nothing from any
host but the server itself (all assets are vendored). Leaves a screenshot in
``tests/artifacts/playground.png`` (gitignored).

With keys on, a second check types a key into the Headers tab, runs a subscription, makes a
change over HTTP and sees the event in the result pane; after a reload the Headers tab still
holds the key (``tests/artifacts/playground-subscription.png``).
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import inspect
import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import httpx
import pytest
from websockets.asyncio.client import ClientConnection, connect

from app.settings import usable_cpus
from tests.server_process import wait_for_every_worker

pytestmark = pytest.mark.browser

CHROMIUM = Path("/usr/bin/chromium")
TESTS_DIR = Path(__file__).resolve().parents[1]
REPO_ROOT = TESTS_DIR.parent
SCREENSHOT = TESTS_DIR / "artifacts" / "playground.png"
SUBSCRIPTION_SCREENSHOT = TESTS_DIR / "artifacts" / "playground-subscription.png"
SERVER_HOST = "127.0.0.1"
SERVER_START_TIMEOUT = 30.0
BROWSER_START_TIMEOUT = 20.0
PAGE_TIMEOUT = 20.0

# No proxy, even if the environment sets one: every request here goes to 127.0.0.1.
_LOCAL_HTTP = urllib.request.build_opener(urllib.request.ProxyHandler({}))

# websockets >= 15 honours proxy environment variables unless told otherwise; older ones never do.
_NO_PROXY: dict[str, Any] = {"proxy": None} if "proxy" in inspect.signature(connect).parameters else {}

# CodeMirror 5 instances behind GraphiQL's query and response editors.
QUERY_EDITOR = "document.querySelector('.graphiql-query-editor .CodeMirror').CodeMirror"
RESULT_TEXT = (
    "(() => { const el = document.querySelector('.graphiql-response .CodeMirror');"
    " return el && el.CodeMirror ? el.CodeMirror.getValue() : ''; })()"
)
# The Headers tab's button, and its editor (the one of the two editor tools, variables and headers,
# that shows once that button was clicked).
HEADERS_TAB = "document.querySelector('.graphiql-editor-tools button[data-name=\"headers\"]')"
_SHOWN_TOOL = "document.querySelector('.graphiql-editor-tool .graphiql-editor:not(.hidden) .CodeMirror')"
HEADERS_EDITOR = f"{_SHOWN_TOOL}.CodeMirror"
HEADERS_TEXT = (
    f"(() => {{ const el = {_SHOWN_TOOL}; return el && el.CodeMirror ? el.CodeMirror.getValue() : null; }})()"
)
# GraphiQL parses the query editor's text after a short debounce and stores the result on the
# editor (`documentAST`, `operationName`); the execute button sends what was parsed last, so a
# click right after `setValue` would run the previous text. Wait until the parse caught up.
QUERY_PARSED = (
    f"(() => {{ const cm = {QUERY_EDITOR}; const ast = cm.documentAST;"
    " return !!(ast && ast.loc && ast.loc.source.body === cm.getValue()); })()"
)


# --- processes -------------------------------------------------------------------------------


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((SERVER_HOST, 0))
        port: int = sock.getsockname()[1]
        return port


def _stop(process: subprocess.Popen[bytes]) -> None:
    """Stop ``process`` and everything it started (it leads its own session / process group)."""
    if process.poll() is None:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGTERM)
        try:
            process.wait(timeout=5)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(process.pid, signal.SIGKILL)
            process.wait(timeout=5)
    else:
        # The leader is gone; make sure no child (renderer, worker) is left behind.
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(process.pid, signal.SIGKILL)


def _tail(path: Path, limit: int = 4000) -> str:
    text = path.read_text(errors="replace") if path.exists() else ""
    return text[-limit:] or "(empty)"


def _get(url: str, timeout: float = 2.0) -> tuple[int, bytes]:
    try:
        with _LOCAL_HTTP.open(url, timeout=timeout) as response:
            return int(response.status), bytes(response.read())
    except urllib.error.HTTPError as error:
        return error.code, b""


@contextlib.contextmanager
def _serving(tmp_path: Path, env_overrides: dict[str, str]) -> Iterator[str]:
    """The base URL of a freshly started ``python -m app serve``; the server is killed afterwards."""
    port = _free_port()
    env = {
        **os.environ,
        "CDP_DATABASE_URL": f"sqlite:///{tmp_path}/cdp.sqlite3",
        "CDP_SEED_FIXTURES": "false",
        "PYTHONUNBUFFERED": "1",
        **env_overrides,
    }
    command = [sys.executable, "-m", "app", "serve", "--host", SERVER_HOST, "--port", str(port)]
    stdout_path, stderr_path = tmp_path / "server.stdout", tmp_path / "server.stderr"
    with stdout_path.open("wb") as stdout, stderr_path.open("wb") as stderr:
        process = subprocess.Popen(
            command, cwd=REPO_ROOT, env=env, stdout=stdout, stderr=stderr, start_new_session=True
        )
    base_url = f"http://{SERVER_HOST}:{port}"
    try:
        deadline = time.monotonic() + SERVER_START_TIMEOUT
        last_error = "no answer yet"
        while True:
            if process.poll() is not None:
                pytest.fail(
                    f"`{' '.join(command)}` exited with status {process.returncode} before "
                    f"/healthz answered; server stderr:\n{_tail(stderr_path)}"
                )
            try:
                status, body = _get(f"{base_url}/healthz", timeout=1.0)
            except OSError as error:  # refused / reset / timed out while it starts
                last_error = repr(error)
            else:
                if status == 200 and b'"starting"' not in body:  # the application, not app/starting.py
                    break
                last_error = f"HTTP {status}"
            if time.monotonic() > deadline:
                pytest.fail(
                    f"GET {base_url}/healthz did not return 200 within {SERVER_START_TIMEOUT:.0f} s "
                    f"(last: {last_error}); server stderr:\n{_tail(stderr_path)}"
                )
            time.sleep(0.1)
        # Every worker's application, not the first one's only: a page's scripts fetched from a
        # worker still loading it wait up to 10 s, then get 503 (app/starting.py): GraphiQL missing.
        workers = int(env.get("CDP_WORKERS") or usable_cpus())
        wait_for_every_worker(port, workers, timeout=deadline - time.monotonic())
        yield base_url
    finally:
        _stop(process)


@pytest.fixture
def server_url(tmp_path: Path) -> Iterator[str]:
    """A server with keys off (loopback only): the playground itself is under test, not the keys."""
    with _serving(tmp_path, {"CDP_AUTH": "off"}) as url:
        yield url


@pytest.fixture
def keyed_server_url(tmp_path: Path) -> Iterator[str]:
    """A server with keys on (the default); its development key is in ``tmp_path / "dev-api-key"``."""
    with _serving(tmp_path, {"CDP_AUTH": "true", "CDP_ENVIRONMENT": "development"}) as url:
        yield url


@pytest.fixture
def devtools_url(tmp_path: Path) -> Iterator[str]:
    """The DevTools HTTP endpoint of a fresh headless Chromium; the browser is killed afterwards."""
    if not CHROMIUM.exists():
        pytest.skip("chromium is not installed: apt-get install chromium")
    profile = tmp_path / "chromium-profile"
    profile.mkdir()
    command = [
        str(CHROMIUM),
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-quic",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        f"--user-data-dir={profile}",
        "--no-proxy-server",
        "--window-size=1280,900",
        "--remote-debugging-port=0",  # Chromium picks a port and writes it to DevToolsActivePort
        "about:blank",
    ]
    stderr_path = tmp_path / "chromium.stderr"
    with stderr_path.open("wb") as stderr:
        process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=stderr, start_new_session=True)
    try:
        active_port = profile / "DevToolsActivePort"
        deadline = time.monotonic() + BROWSER_START_TIMEOUT
        while not (active_port.exists() and active_port.read_text().strip()):
            if process.poll() is not None:
                pytest.fail(f"chromium exited with status {process.returncode}:\n{_tail(stderr_path)}")
            if time.monotonic() > deadline:
                pytest.fail(f"chromium did not open its DevTools port:\n{_tail(stderr_path)}")
            time.sleep(0.05)
        port = int(active_port.read_text().split()[0])
        yield f"http://127.0.0.1:{port}"
    finally:
        _stop(process)


# --- DevTools protocol ------------------------------------------------------------------------


class DevTools:
    """A minimal Chrome DevTools protocol client for one page target."""

    def __init__(self, websocket: ClientConnection) -> None:
        self._websocket = websocket
        self._next_id = 0
        self._pending: dict[int, asyncio.Future[dict[str, Any]]] = {}
        self.events: list[dict[str, Any]] = []
        self._reader = asyncio.create_task(self._read())

    @classmethod
    @contextlib.asynccontextmanager
    async def open_page(cls, devtools_url: str) -> AsyncIterator[DevTools]:
        page_websocket_url = await asyncio.to_thread(_page_websocket_url, devtools_url)
        async with connect(page_websocket_url, max_size=None, **_NO_PROXY) as websocket:
            client = cls(websocket)
            try:
                yield client
            finally:
                client._reader.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await client._reader

    async def _read(self) -> None:
        try:
            async for raw in self._websocket:
                message: dict[str, Any] = json.loads(raw)
                if "id" in message:
                    future = self._pending.pop(message["id"], None)
                    if future is not None and not future.done():
                        future.set_result(message)
                else:
                    self.events.append(message)
        finally:
            for future in self._pending.values():
                if not future.done():
                    future.set_exception(ConnectionError("DevTools connection closed"))

    async def send(self, method: str, params: dict[str, Any] | None = None) -> dict[str, Any]:
        self._next_id += 1
        message_id = self._next_id
        future: asyncio.Future[dict[str, Any]] = asyncio.get_running_loop().create_future()
        self._pending[message_id] = future
        await self._websocket.send(json.dumps({"id": message_id, "method": method, "params": params or {}}))
        reply = await asyncio.wait_for(future, timeout=PAGE_TIMEOUT)
        if "error" in reply:
            raise AssertionError(f"DevTools {method} failed: {reply['error']}")
        result: dict[str, Any] = reply.get("result", {})
        return result

    async def evaluate(self, expression: str) -> Any:
        result = await self.send("Runtime.evaluate", {"expression": expression, "returnByValue": True})
        if "exceptionDetails" in result:
            raise AssertionError(f"page script failed: {expression}\n{result['exceptionDetails']}")
        return result["result"].get("value")

    async def wait_for(self, expression: str, what: str, *, show: str | None = None) -> Any:
        """Poll ``expression`` until it is truthy and return its value.

        On timeout the error names ``what`` and, if given, the value of the ``show`` expression.
        """
        deadline = time.monotonic() + PAGE_TIMEOUT
        while True:
            value = await self.evaluate(expression)
            if value:
                return value
            if time.monotonic() > deadline:
                shown = f"; {show} = {await self.evaluate(show)!r}" if show else ""
                raise AssertionError(
                    f"timed out after {PAGE_TIMEOUT:.0f} s waiting for {what}{shown}; "
                    f"page errors: {self.page_errors() or 'none'}"
                )
            await asyncio.sleep(0.1)

    def params(self, method: str) -> list[dict[str, Any]]:
        return [event["params"] for event in self.events if event.get("method") == method]

    def page_errors(self) -> list[str]:
        errors = [
            str(params["exceptionDetails"].get("exception", {}).get("description") or params["exceptionDetails"])
            for params in self.params("Runtime.exceptionThrown")
        ]
        errors += [
            f"console.error: {[arg.get('value', arg.get('description')) for arg in params.get('args', [])]}"
            for params in self.params("Runtime.consoleAPICalled")
            if params.get("type") == "error"
        ]
        return errors

    async def screenshot(self, path: Path) -> None:
        shot = await self.send("Page.captureScreenshot", {"format": "png"})
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(base64.b64decode(shot["data"]))


def _page_websocket_url(devtools_url: str) -> str:
    deadline = time.monotonic() + BROWSER_START_TIMEOUT
    while True:
        with contextlib.suppress(OSError):
            status, body = _get(f"{devtools_url}/json/list")
            pages = [target for target in json.loads(body or b"[]") if target.get("type") == "page"]
            if status == 200 and pages:
                url: str = pages[0]["webSocketDebuggerUrl"]
                return url
        if time.monotonic() > deadline:
            raise AssertionError(f"chromium at {devtools_url} has no page target")
        time.sleep(0.1)


# --- the check --------------------------------------------------------------------------------


async def test_playground_renders_and_runs_a_query(devtools_url: str, server_url: str) -> None:
    async with DevTools.open_page(devtools_url) as page:
        await page.send("Network.enable")
        await page.send("Runtime.enable")
        await page.send("Page.enable")
        await page.send("Page.addScriptToEvaluateOnNewDocument", {"source": RECORD_CSP_VIOLATIONS})
        try:
            # A browser navigation sends `Accept: text/html,...`, which is what makes the server
            # answer GET /graphql with the playground page instead of a GraphQL response.
            navigation = await page.send("Page.navigate", {"url": f"{server_url}/graphql"})
            assert "errorText" not in navigation, f"navigation failed: {navigation}"

            await page.wait_for("!!document.querySelector('.graphiql-container')", "GraphiQL to render")
            await page.wait_for(
                "!!document.querySelector('.graphiql-query-editor .CodeMirror')?.CodeMirror",
                "the query editor",
            )
            await page.wait_for(QUERY_PARSED, "GraphiQL to parse the default query")
            default_query = await page.evaluate(f"{QUERY_EDITOR}.getValue()")
            assert "profileByIdentifier" in default_query, default_query

            await page.evaluate(f"{QUERY_EDITOR}.setValue('{{ __typename }}')")
            await page.wait_for(QUERY_PARSED, "GraphiQL to parse `{ __typename }`")
            await page.evaluate("document.querySelector('.graphiql-execute-button').click()")
            result = await page.wait_for(
                f"""(() => {{
                    const text = {RESULT_TEXT};
                    return text.includes('"__typename": "Query"') ? text : null;
                }})()""",
                'the result pane to show "__typename": "Query"',
                show=RESULT_TEXT,
            )
            assert json.loads(result) == {"data": {"__typename": "Query"}}
            assert await page.evaluate("window.cspViolations") == []  # everything it uses is allowed
            # A script injected into the page (an XSS) does not run: the key pasted there stays in it.
            await page.evaluate(INJECT_SCRIPT)
            assert await page.evaluate("window.injected === undefined && window.cspViolations.join()") == (
                "script-src-elem inline"
            )
        finally:
            # Also on failure: the screenshot is the quickest way to see what went wrong.
            with contextlib.suppress(Exception):
                await page.screenshot(SCREENSHOT)

        requested = [params["request"]["url"] for params in page.params("Network.requestWillBeSent")]
        requested += [params["url"] for params in page.params("Network.webSocketCreated")]
        foreign = [
            url
            for url in requested
            if urlsplit(url).scheme in {"http", "https", "ws", "wss"} and urlsplit(url).hostname != SERVER_HOST
        ]
        assert not foreign, f"the playground fetched from other hosts: {foreign}"
        assert f"{server_url}/playground-assets/graphiql.min.js" in requested, requested

        failed = [(params.get("type"), params.get("errorText")) for params in page.params("Network.loadingFailed")]
        assert not failed, f"requests failed: {failed}"
        exceptions = page.params("Runtime.exceptionThrown")
        assert not exceptions, f"uncaught errors in the page: {page.page_errors()}"


# Before any script of the page: the content security policy's refusals, as the page sees them.
RECORD_CSP_VIOLATIONS = """window.cspViolations = [];
document.addEventListener("securitypolicyviolation",
  (event) => window.cspViolations.push(event.violatedDirective + " " + event.blockedURI));"""
INJECT_SCRIPT = """(() => { const script = document.createElement("script");
  script.textContent = "window.injected = localStorage.length"; document.body.appendChild(script); })()"""

SUBSCRIPTION = "subscription { segmentMembershipChanged { change profileId segmentId } }"
BUYERS = """mutation { createSegment(input: {name: "Buyers",
  condition: {compare: {path: "stats.orders", op: "gte", value: 1}}}) { segment { id } } }"""
ORDER = """mutation($events: [EventInput!]!) { ingestEvents(events: $events) { accepted results { profileId } } }"""


async def _post(client: httpx.AsyncClient, key: str, query: str, variables: dict[str, Any] | None = None) -> Any:
    response = await client.post(
        "/graphql", json={"query": query, "variables": variables or {}}, headers={"authorization": f"Bearer {key}"}
    )
    assert response.status_code == 200, response.text
    body = response.json()
    assert "errors" not in body, body
    return body["data"]


async def _open_playground(page: DevTools, url: str) -> None:
    await page.wait_for("!!document.querySelector('.graphiql-container')", f"GraphiQL to render at {url}")
    await page.wait_for(f"!!{QUERY_EDITOR.removesuffix('.CodeMirror')}?.CodeMirror", "the query editor")
    await page.wait_for(f"!!{HEADERS_TAB}", "the Headers tab button")


async def _type_headers(page: DevTools, text: str) -> None:
    """Open the Headers tab, empty its editor and type ``text`` into it as keyboard input."""
    await page.evaluate(f"{HEADERS_TAB}.click()")
    await page.wait_for(f"{HEADERS_TEXT} !== null", "the headers editor to show")
    await page.evaluate(f"(() => {{ const cm = {HEADERS_EDITOR}; cm.setValue(''); cm.focus(); }})()")
    await page.send("Input.insertText", {"text": text})
    typed = json.dumps(text)
    await page.wait_for(
        f"{HEADERS_EDITOR}.getValue() === {typed}",
        f"the headers editor to hold {text}",
        show=f"{HEADERS_EDITOR}.getValue()",
    )


async def _run(page: DevTools, query: str) -> None:
    """Put ``query`` in the query editor and press the execute button."""
    await page.evaluate(f"{QUERY_EDITOR}.setValue({json.dumps(query)})")
    await page.wait_for(QUERY_PARSED, f"GraphiQL to parse {query}")
    await page.evaluate("document.querySelector('.graphiql-execute-button').click()")


def _introspections_with(page: DevTools, key: str) -> int:
    """The schema requests (GraphiQL's introspection over HTTP) the page sent with `key`."""
    return sum(
        1
        for params in page.params("Network.requestWillBeSent")
        if "IntrospectionQuery" in (params["request"].get("postData") or "")
        and params["request"].get("headers", {}).get("Authorization") == f"Bearer {key}"
    )


def _sent_frames(page: DevTools) -> list[dict[str, Any]]:
    """The graphql-transport-ws messages the page sent, in order."""
    frames = [params["response"]["payloadData"] for params in page.params("Network.webSocketFrameSent")]
    return [json.loads(frame) for frame in frames if frame.startswith("{")]


def _subscribes_sent(page: DevTools) -> int:
    return sum(frame.get("type") == "subscribe" for frame in _sent_frames(page))


async def _shows_a_change(
    page: DevTools, client: httpx.AsyncClient, key: str, tag: str, *, subscribes_before: int
) -> tuple[dict[str, Any], set[str]]:
    """Once the page sent its subscribe message (graphql-ws sends it after the connection_ack),
    order as new shoppers (each enters the Buyers segment) until the result pane shows a
    membership change; return it with the shoppers' profile ids.

    More than one order may be needed: a change made before the server registered the
    subscription is not delivered to it."""
    deadline = time.monotonic() + PAGE_TIMEOUT
    while _subscribes_sent(page) <= subscribes_before:
        if time.monotonic() > deadline:
            raise AssertionError(
                f"the page sent no subscribe message within {PAGE_TIMEOUT:.0f} s; frames sent: "
                f"{_sent_frames(page)}; result pane: {await page.evaluate(RESULT_TEXT)!r}"
            )
        await asyncio.sleep(0.1)
    profile_ids: set[str] = set()
    deadline = time.monotonic() + PAGE_TIMEOUT
    attempt = 0
    while True:
        attempt += 1
        event = {
            "messageId": f"{tag}-{attempt}",
            "type": "order_completed",
            "channel": "web",
            "timestamp": "2026-11-01T10:00:00Z",
            "identifiers": [{"type": "email", "value": f"{tag}-{attempt}@example.com"}],
            "properties": {"orderId": f"{tag}-{attempt}", "total": 10},
        }
        ingested = (await _post(client, key, ORDER, {"events": [event]}))["ingestEvents"]
        assert ingested["accepted"] == 1, ingested
        profile_ids.update(result["profileId"] for result in ingested["results"])
        for _ in range(20):  # up to ~2 s per order before the next one
            text = await page.evaluate(RESULT_TEXT)
            if "segmentMembershipChanged" in text:
                return json.loads(text), profile_ids
            await asyncio.sleep(0.1)
        if time.monotonic() > deadline:
            raise AssertionError(
                f"after {attempt} orders over {PAGE_TIMEOUT:.0f} s the result pane shows {text!r}; "
                f"frames sent: {_sent_frames(page)}; page errors: {page.page_errors() or 'none'}"
            )


async def test_playground_subscribes_with_the_key_in_the_headers_tab(
    devtools_url: str, keyed_server_url: str, tmp_path: Path
) -> None:
    key = (tmp_path / "dev-api-key").read_text().strip()
    async with (
        httpx.AsyncClient(base_url=keyed_server_url, trust_env=False, timeout=10) as client,
        DevTools.open_page(devtools_url) as page,
    ):
        segment_id = (await _post(client, key, BUYERS))["createSegment"]["segment"]["id"]
        await page.send("Network.enable")
        await page.send("Runtime.enable")
        await page.send("Page.enable")
        try:
            await page.send("Page.navigate", {"url": f"{keyed_server_url}/graphql"})
            await _open_playground(page, keyed_server_url)

            # A wrong key: the socket is refused (4403) and the playground says so at once,
            # instead of retrying for ~40 s.
            await _type_headers(page, '{"Authorization": "Bearer not-a-key"}')
            await _run(page, SUBSCRIPTION)
            refused = await page.wait_for(
                f"(() => {{ const text = {RESULT_TEXT}; return text.includes('4403') ? text : null; }})()",
                "the result pane to show that the key was refused (4403)",
                show=RESULT_TEXT,
            )
            assert "refused the key in the Headers tab" in refused, refused

            # The right key, typed after the page loaded: used by the next subscription, and the
            # schema is asked for again with it (docs and autocomplete stayed "Error fetching schema",
            # the page's first request for it refused, found by a newcomer's walkthrough).
            await _type_headers(page, json.dumps({"Authorization": f"Bearer {key}"}))
            deadline = time.monotonic() + 10
            while not _introspections_with(page, key) and time.monotonic() < deadline:
                await asyncio.sleep(0.1)
            assert _introspections_with(page, key), "no schema request with the key typed"
            subscribes = _subscribes_sent(page)
            await _run(page, SUBSCRIPTION)
            shown, shoppers = await _shows_a_change(page, client, key, "first", subscribes_before=subscribes)
            change = shown["data"]["segmentMembershipChanged"]
            assert change["change"] == "ENTERED" and change["segmentId"] == segment_id, shown
            assert change["profileId"] in shoppers, (change, shoppers)
            inits = [frame for frame in _sent_frames(page) if frame.get("type") == "connection_init"]
            assert [init.get("payload") for init in inits] == [
                {"Authorization": "Bearer not-a-key"},
                {"Authorization": f"Bearer {key}"},
            ], inits
            # The editors' text from its start in the screenshot, not where the typing ended.
            await page.evaluate(f"{HEADERS_EDITOR}.scrollTo(0, 0); {QUERY_EDITOR}.scrollTo(0, 0)")
            await page.screenshot(SUBSCRIPTION_SCREENSHOT)

            # Stop the subscription, reload: the Headers tab still holds the key, and subscribing
            # again works without typing it.
            await page.evaluate("document.querySelector('.graphiql-execute-button').click()")
            # GraphiQL writes the Headers tab to its storage a moment after the last keystroke: a
            # reload before that would find nothing kept.
            await page.wait_for(
                f"(localStorage.getItem('graphiql:headers') || '').includes({json.dumps(key)})",
                "GraphiQL to keep the Headers tab in localStorage",
                show="JSON.stringify(Object.keys(localStorage))",
            )
            await page.send("Page.reload")
            await _open_playground(page, keyed_server_url)
            await page.evaluate(f"{HEADERS_TAB}.click()")
            # GraphiQL fills the editor from its storage just after creating it: wait for the text.
            headers = await page.wait_for(
                HEADERS_TEXT, "the Headers tab to hold the key again after the reload", show=HEADERS_TEXT
            )
            assert json.loads(headers) == {"Authorization": f"Bearer {key}"}, headers
            subscribes = _subscribes_sent(page)
            await _run(page, SUBSCRIPTION)
            shown, shoppers = await _shows_a_change(page, client, key, "after-reload", subscribes_before=subscribes)
            assert shown["data"]["segmentMembershipChanged"]["profileId"] in shoppers, shown
        except BaseException:
            with contextlib.suppress(Exception):
                await page.screenshot(SUBSCRIPTION_SCREENSHOT)
            raise

        exceptions = page.params("Runtime.exceptionThrown")
        assert not exceptions, f"uncaught errors in the page: {page.page_errors()}"
