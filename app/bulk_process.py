"""Big request bodies (a batch of events) answered by a process of their own.

A batch's Python runs on the serving process's threads, and every thread of a process shares one
GIL: the event loop waits for it each time it wakes, however low the batch's threads are on the CPU
(app/thread_priority.py). One worker on one core, ingesting 1,000-event batches flat out, answered
the profile query at p99 1.96x its p99 alone; with the same batches ingested by another process on
the same core and file, 1.17x (bench/RESULTS.md#serving, 2026-12-05). So a serving process hands
each POST whose body is at least CDP_BULK_BYTES to its bulk process: the same application, listening
on a Unix socket in a private folder, started with the first such request (which is answered in the
serving process meanwhile, as is any while the bulk process is not there), and stopped with it.

The request goes as it came (its headers, its body), and the answer comes back as it was given:
authentication, limits, access logs and metrics are the bulk process's, as for any worker's
request. The serving process adds where the connection came from (`x-cdp-forwarded`), which only it
can reach the socket to say, and which the bulk process puts back in the request's scope. A bulk
process that stops while it holds a request cannot say what it stored: that request gets 503, and a
batch sent again answers DUPLICATE for the events that were stored (their messageId)."""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import multiprocessing
import os
import pickle
import shutil
import signal
import tempfile
import time
from collections.abc import AsyncIterator, Callable, MutableMapping
from pathlib import Path
from types import FrameType
from typing import TYPE_CHECKING, Any

import h11
from uvicorn.config import STARTUP_FAILURE

from app.graceful_shutdown import ASGIApp, Message, Receive, Send
from app.processes import stop_with_parent
from app.starting import json_answer

if TYPE_CHECKING:
    from app.settings import Settings

Scope = MutableMapping[str, Any]

FORWARDED = b"x-cdp-forwarded"  # "client-host client-port server-host server-port", set by the serving process
# Headers about one connection, not the request: the serving process's connection to the bulk one has its own.
HOP_BY_HOP = frozenset(
    {b"connection", b"keep-alive", b"proxy-connection", b"te", b"trailer", b"transfer-encoding", b"upgrade", b"expect"}
)
READ_BYTES = 65_536
READY_WAIT_S = 60.0  # the bulk process loads the application (~2 s) and starts it; past this it is started again
RESTART_AFTER_S = (1.0, 60.0)  # a bulk process that stopped is started again after 1 s, doubling up to 60 s
STOP_WAIT_S = 5.0  # past the graceful stop's own grace: then SIGKILL
LOST = (
    "The process ingesting this request stopped before it answered, so what it stored is unknown: send the "
    "batch again (events already stored answer DUPLICATE by their messageId)."
)

log = logging.getLogger("cdp")


class BulkForwarding:
    """ASGI middleware of a serving process: a POST whose body is at least `settings.bulk_bytes` goes
    to the bulk process (started with the first), everything else to `app`."""

    def __init__(self, app: ASGIApp, settings: Settings) -> None:
        self.app = app
        self._threshold = settings.bulk_bytes
        self._max_body = settings.max_body_bytes
        self.bulk = BulkProcess(settings)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan":
            await self.app(scope, receive, self._stopping_after(send))
            return
        size = _content_length(scope) if scope["type"] == "http" and scope["method"] == "POST" else None
        bulk = size is not None and self._threshold <= size <= self._max_body  # bigger: the app says 413
        if not bulk or not self.bulk.ready():
            if bulk:
                self.bulk.wanted()
            await self.app(scope, receive, send)
            return
        body = await _body(receive)
        if body is None:  # the client went away while sending it
            return
        if not await self.bulk.forward(scope, body, send):  # not reached: answered here
            await self.app(scope, _replay(body, receive), send)

    def _stopping_after(self, send: Send) -> Send:
        async def reply(message: Message) -> None:
            if message["type"] in ("lifespan.shutdown.complete", "lifespan.shutdown.failed"):
                await self.bulk.stop()
            await send(message)

        return reply


class BulkProcess:
    """The bulk process of one serving process: started when first wanted, started again if it
    stops, stopped with its serving process (and, on Linux, by the kernel if that one is killed)."""

    def __init__(self, settings: Settings) -> None:
        self._settings = settings.model_copy(update={"bulk_bytes": 0, "workers": 1, "seed_fixtures": False})
        self._folder: Path | None = None
        self._ready = False
        self._keeping: asyncio.Task[None] | None = None
        self._stopping = False

    @property
    def socket_path(self) -> Path | None:
        return None if self._folder is None else self._folder / "bulk.sock"

    def ready(self) -> bool:
        return self._ready

    def wanted(self) -> None:
        """Starts it (on the event loop's thread: the kernel's stop-with-parent follows the thread
        that started it), unless it runs, is starting, or the server is stopping."""
        if self._keeping is None and not self._stopping:
            self._keeping = asyncio.create_task(self._keep_running(), name="bulk-process")

    async def forward(self, scope: Scope, body: bytes, send: Send) -> bool:
        """The bulk process's answer to the request, sent; False when it could not be reached (nothing
        was sent to it)."""
        path = self.socket_path
        if path is None:
            return False
        try:
            reader, writer = await asyncio.open_unix_connection(path)
        except OSError:  # it stopped: _keep_running starts it again
            return False
        started = False
        try:
            async for message in _exchange(reader, writer, *_request(scope, body)):
                started = started or message["type"] == "http.response.start"
                await send(message)
        except (OSError, h11.ProtocolError, EOFError) as lost:
            log.warning("the bulk process did not answer a request: %r", lost)
            if started:  # part of the answer went out: the client's connection is closed by the server
                raise
            await json_answer(send, 503, {"errors": [{"message": LOST, "extensions": {"code": "SERVICE_UNAVAILABLE"}}]})
        finally:
            writer.close()
            with contextlib.suppress(OSError):
                await writer.wait_closed()
        return True

    async def stop(self) -> None:
        self._stopping = True
        self._ready = False
        if self._keeping is not None:
            self._keeping.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._keeping
        if self._folder is not None:
            shutil.rmtree(self._folder, ignore_errors=True)

    async def _keep_running(self) -> None:
        pause = RESTART_AFTER_S[0]
        while not self._stopping:
            began = time.monotonic()
            try:
                process = self._start()
            except Exception:  # e.g. no process may be started: it is tried again, as after a stop
                log.exception("the bulk process could not be started: batches are ingested here meanwhile")
            else:
                try:
                    await self._until_ready(process)
                    await asyncio.to_thread(process.join)
                    log.warning("the bulk process stopped (exit status %s): batches are ingested here meanwhile",
                                process.exitcode)  # fmt: skip
                finally:  # also when the server stops: SIGTERM, SIGKILL past the grace
                    self._ready = False
                    await _ended(process, self._settings.shutdown_grace_seconds + STOP_WAIT_S)
            if time.monotonic() - began > RESTART_AFTER_S[1]:  # it ran a while: a new failure, not the same one
                pause = RESTART_AFTER_S[0]
            await asyncio.sleep(pause)
            pause = min(2 * pause, RESTART_AFTER_S[1])

    def _start(self) -> multiprocessing.process.BaseProcess:
        if self._folder is None:
            self._folder = Path(tempfile.mkdtemp(prefix="cdp-bulk-"))  # 0700: this user's processes only
        path = self.socket_path
        assert path is not None
        path.unlink(missing_ok=True)
        process = multiprocessing.get_context("spawn").Process(
            target=serve_bulk,
            args=(pickle.dumps(self._settings), str(path), os.getpid(), self._metrics_folder()),
            name="cdp-bulk",
        )
        process.start()
        log.info("bulk process %s starting (CDP_BULK_BYTES): big request bodies are answered there", process.pid)
        return process

    def _metrics_folder(self) -> str | None:
        """Where the bulk process keeps its metric values: with the workers' (the folder they share,
        inherited), or, beside one serving process, in a folder its /metrics adds in."""
        from app.observability.metrics import count_bulk_process, shared_dir

        if shared_dir() is not None or self._folder is None:
            return None
        folder = self._folder / "metrics"
        folder.mkdir(exist_ok=True)
        count_bulk_process(str(folder))
        return str(folder)

    async def _until_ready(self, process: multiprocessing.process.BaseProcess) -> None:
        path = self.socket_path
        assert path is not None
        deadline = time.monotonic() + READY_WAIT_S
        while process.is_alive() and time.monotonic() < deadline:
            if await _started(path):
                self._ready = True
                log.info("bulk process %s ready", process.pid)
                return
            await asyncio.sleep(0.1)
        if process.is_alive():
            log.warning("the bulk process did not start within %.0f s: stopping it", READY_WAIT_S)
            process.terminate()


async def _ended(process: multiprocessing.process.BaseProcess, wait_s: float) -> None:
    """The process stopped: SIGTERM (a graceful stop), SIGKILL past `wait_s`."""
    if process.is_alive():
        process.terminate()
        await asyncio.to_thread(process.join, wait_s)
    if process.is_alive():
        process.kill()
        await asyncio.to_thread(process.join)


async def _started(path: Path) -> bool:
    """Whether the bulk process's application has started (its /healthz no longer says `starting`)."""
    try:
        reader, writer = await asyncio.open_unix_connection(path)
    except OSError:
        return False
    try:
        status, body = 0, b""
        async for message in _exchange(reader, writer, b"GET", b"/healthz", [(b"host", b"bulk")], b""):
            status = message.get("status", status)
            body += message.get("body", b"")
        return status == 200 and not json.loads(body).get("starting")
    except (OSError, h11.ProtocolError, EOFError, ValueError):
        return False
    finally:
        writer.close()


def serve_bulk(settings_blob: bytes, path: str, parent: int, metrics_folder: str | None = None) -> None:
    """The bulk process: the application on the Unix socket `path`, until SIGTERM (its serving
    process stopping) or its serving process's end. A terminal's Ctrl-C reaches the serving process
    only (a process group of its own; not a session, which Linux's autogroup scheduling would give an
    equal share of the CPU beside the serving process's reads): that one finishes what it forwarded,
    then stops this one."""
    os.setpgid(0, 0)
    # Before its server starts too; uvicorn stops on SIGTERM, then raises it again for this handler.
    signal.signal(signal.SIGTERM, _stopped(parent, Path(path).parent))
    stop_with_parent(parent)
    if metrics_folder is not None:  # read by prometheus_client when it is imported, with the application
        os.environ["PROMETHEUS_MULTIPROC_DIR"] = metrics_folder
    from app.observability.logs import configure as configure_logs
    from app.workers import build_server

    settings: Settings = pickle.loads(settings_blob)
    configure_logs(settings.log_level, settings.log_style)
    logging.getLogger("cdp").addFilter(_NotTheKeyAgain())
    server, starting = build_server(settings, uds=path, outer=ForwardedRequests, batches_only=True)
    server.run()
    if starting.failed:
        raise SystemExit(STARTUP_FAILURE)


def _stopped(parent: int, folder: Path) -> Callable[[int, FrameType | None], None]:
    """The bulk process's last act on SIGTERM: when its serving process is gone (killed: SIGKILL
    runs no clean-up), it removes the folder of its socket, which that process would have removed
    as it stopped; then it ends as SIGTERM ends a process."""

    def stopped(signum: int, _: FrameType | None) -> None:
        if os.getppid() != parent:
            shutil.rmtree(folder, ignore_errors=True)
        signal.signal(signum, signal.SIG_DFL)
        signal.raise_signal(signum)

    return stopped


class ForwardedRequests:
    """ASGI middleware of the bulk process. A request's client and server addresses are put back as
    its serving process saw them (only that process can reach the socket). Its body is read whole
    before the application sees it: an answer given before the body is read (401 for a missing key)
    and the connection closed with the body unread reset that connection, and the serving process
    lost the answer (it said 503 instead)."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        for name, value in scope["headers"]:
            if name == FORWARDED:
                scope["client"], scope["server"] = _addresses(value)
                break
        body = await _body(receive)
        if body is not None:  # else the serving process went away: nobody to answer
            await self.app(scope, _replay(body, receive), send)


class _NotTheKeyAgain(logging.Filter):
    """The serving process announced the development key (app/bootstrap.py): its bulk process, which
    starts the same application, does not say it again."""

    def filter(self, record: logging.LogRecord) -> bool:
        return not str(record.msg).startswith("development API key")


def _addresses(value: bytes) -> tuple[tuple[str, int] | None, tuple[str, int] | None]:
    parts = value.decode("latin-1").split(" ")
    pairs = [(parts[index], int(parts[index + 1])) if parts[index] != "-" else None for index in (0, 2)]
    return pairs[0], pairs[1]


def _address_text(endpoint: Any) -> str:
    if isinstance(endpoint, list | tuple) and len(endpoint) == 2:
        return f"{endpoint[0]} {int(endpoint[1])}"
    return "- 0"


def _content_length(scope: Scope) -> int | None:
    for name, value in scope["headers"]:
        if name == b"content-length":
            return int(value) if value.isdigit() else None
    return None


async def _body(receive: Receive) -> bytes | None:
    chunks = []
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            return None
        chunks.append(message.get("body", b""))
        if not message.get("more_body", False):
            return b"".join(chunks)


def _replay(body: bytes, receive: Receive) -> Receive:
    """A receive that gives the body read already, then what the connection's own `receive` says."""
    sent = False

    async def replayed() -> Message:
        nonlocal sent
        if not sent:
            sent = True
            return {"type": "http.request", "body": body, "more_body": False}
        return await receive()

    return replayed


def _request(scope: Scope, body: bytes) -> tuple[bytes, bytes, list[tuple[bytes, bytes]], bytes]:
    """The method, target, headers and body that forward the request `scope` and `body` came as."""
    headers = [(name, value) for name, value in scope["headers"]
               if name not in HOP_BY_HOP and name != FORWARDED and name != b"content-length"]  # fmt: skip
    headers.append((FORWARDED, f"{_address_text(scope.get('client'))} {_address_text(scope.get('server'))}".encode()))
    target = scope.get("raw_path") or scope["path"].encode()
    if scope.get("query_string"):
        target += b"?" + scope["query_string"]
    return scope["method"].encode(), target, headers, body


async def _exchange(
    reader: asyncio.StreamReader,
    writer: asyncio.StreamWriter,
    method: bytes,
    target: bytes,
    headers: list[tuple[bytes, bytes]],
    body: bytes,
) -> AsyncIterator[Message]:
    """Sends the request on a connection used for it alone; yields the answer as ASGI messages."""
    http = h11.Connection(h11.CLIENT)
    headers = [*headers, (b"content-length", str(len(body)).encode()), (b"connection", b"close")]
    writer.write(http.send(h11.Request(method=method, target=target, headers=headers)))
    writer.write(http.send(h11.Data(data=body)) + http.send(h11.EndOfMessage()))
    await writer.drain()
    while True:
        event = http.next_event()
        if event is h11.NEED_DATA:
            data = await reader.read(READ_BYTES)
            http.receive_data(data)  # b"": the connection closed, which h11 judges (complete or cut)
            continue
        if isinstance(event, h11.Response):
            kept = [(name, value) for name, value in event.headers if name not in HOP_BY_HOP]
            yield {"type": "http.response.start", "status": event.status_code, "headers": kept}
        elif isinstance(event, h11.Data):
            yield {"type": "http.response.body", "body": bytes(event.data), "more_body": True}
        elif isinstance(event, h11.EndOfMessage):
            yield {"type": "http.response.body", "body": b"", "more_body": False}
            return
        elif isinstance(event, h11.ConnectionClosed):
            raise EOFError("the bulk process closed the connection before it answered")
