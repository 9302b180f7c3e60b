"""Serving on every core: CDP_WORKERS server processes share the listening socket, each with its own
event loop, its own store connections and the same graceful stop (app/graceful_shutdown.py).

uvicorn's own supervisor (`uvicorn.supervisors.Multiprocess`) runs the workers: it binds the socket
once, starts the workers (spawned, not forked: nothing of the parent's threads or connections is
inherited), answers SIGTERM and SIGINT by stopping each worker with SIGTERM and waiting for it,
replaces a worker that dies or stops answering its health checks, restarts them one by one on SIGHUP,
and adds or removes one on SIGTTIN / SIGTTOU. Each worker builds its application and a GracefulServer
itself, so every worker says goodbye to its WebSocket clients (1001) and lets its requests finish
before it stops, exactly as a single process does; each listens before its application is loaded
(app/starting.py), and tells the supervisor it is ready once that application has started.

What the processes share goes through the store, the file system or shared memory: segment changes
reach every process's subscribers through the store's feed of committed changes
(app/services/segment_watch.py), new connections go to the worker holding the fewest by counts the
workers share (app/accept_balance.py), the store's schema is prepared (app/main.py), the demo data
and the development key are made, each by one process at a time under a lock (app/process_lock.py),
and revoked keys are looked for by each process (app/services/key_revocations.py). The supervisor
itself opens nothing: it would hold the workers back by the store's import (~0.5 s).

Each worker, and a single process, hands big request bodies (batches of events) to a bulk process of
its own (app/bulk_process.py), so that a batch's Python never holds the GIL its reads wait for."""

from __future__ import annotations

import errno
import os
import pickle
import shutil
import socket
import sys
import tempfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

import uvicorn
from uvicorn.config import STARTUP_FAILURE
from uvicorn.supervisors import multiprocess

from app.accept_balance import Balance, BalancedServer, ConnectionTable
from app.bounded_http import BoundedHttpToolsProtocol, head_bytes
from app.collector import tune_for_serving
from app.graceful_shutdown import ASGIApp, GracefulServer, OpenWebSockets
from app.observability.logs import configure as configure_logs
from app.processes import is_alive, stop_with_parent
from app.starting import Starting

if TYPE_CHECKING:  # a worker imports it on its loading thread (~0.5 s), after it listens
    from app.settings import Settings

METRICS_DIR = "PROMETHEUS_MULTIPROC_DIR"  # metrics.SHARED_DIR, named here: the supervisor imports no metrics
METRICS_PREFIX = "cdp-metrics-"  # then the supervisor's pid


def serve(settings: Settings) -> bool:
    """Serve until SIGTERM or SIGINT, in `settings.workers` processes; False when it could not start
    (the port taken, or the application failing to start)."""
    if settings.workers == 1:
        server, starting = build_server(settings)
        try:
            server.run()
        except SystemExit as stopped:  # uvicorn logged why (the port is taken, …) and exits
            if stopped.code != STARTUP_FAILURE:
                raise
            return False
        return server.started and not starting.failed
    config = _SupervisorConfig(settings)
    try:
        listening = config.bind_socket()
    except SystemExit:  # uvicorn logged why (the port is taken, …)
        return False
    supervisor = multiprocess.Multiprocess(config, sockets=[listening])
    with _shared_metrics(), _workers_are(_Worker):
        supervisor.run()
    return not any(worker.exitcode == STARTUP_FAILURE for worker in supervisor.processes)


def port_in_use(host: str, port: int) -> bool:
    """Whether another process listens on `host`:`port` (bound as uvicorn binds it): what a start that
    failed most often means, said in words a newcomer can act on."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind((host, port))
        except OSError as refused:
            return refused.errno == errno.EADDRINUSE
    return False


def build_server(
    settings: Settings,
    *,
    uds: str | None = None,
    outer: Callable[[ASGIApp], ASGIApp] | None = None,
    batches_only: bool = False,
) -> tuple[GracefulServer, Starting]:
    """One process's server, listening at once (app/starting.py): the application is imported and
    built on a thread while the server runs, and its WebSockets are handed to the server then. With
    `uds`, on that Unix socket instead of the settings' address; `outer` wraps what uvicorn serves;
    `batches_only`: a bulk process's, whose collector is tuned for batches (app/collector.py)."""
    options = _server_options(settings)
    if uds is not None:
        options = {**options, "uds": uds}
    return _build(options, lambda: settings, outer=outer, batches_only=batches_only)


def _server_options(settings: Settings) -> dict[str, Any]:
    return {
        "host": settings.host,
        "port": settings.port,
        "log_level": settings.log_level,
        "log_config": None,  # uvicorn logs through our handlers; our middleware writes the access lines
        "access_log": False,
        "lifespan": "on",
        "timeout_graceful_shutdown": settings.shutdown_grace_seconds,
        # A request's head bounded in size (431) and time (408): see app/bounded_http.py.
        "http": BoundedHttpToolsProtocol,
        "h11_max_incomplete_event_size": head_bytes(settings.max_query_length),
        # A WebSocket frame is held to the HTTP body limit; uvicorn refuses bigger ones before reading them.
        "ws_max_size": settings.max_body_bytes,
        "ws_per_message_deflate": settings.ws_compression,
    }


def _build(
    options: dict[str, Any],
    settings: Callable[[], Settings],
    server_class: Callable[[uvicorn.Config, OpenWebSockets], GracefulServer] = (
        lambda config, websockets: GracefulServer(config, websockets=websockets)
    ),
    outer: Callable[[ASGIApp], ASGIApp] | None = None,
    *,
    batches_only: bool = False,
) -> tuple[GracefulServer, Starting]:
    def load() -> ASGIApp:
        from app.main import create_app

        wanted = settings()
        app = create_app(wanted)
        server.websockets = app.state.open_websockets
        if wanted.bulk_bytes:  # big bodies (batches of events) answered by a process of their own
            from app.bulk_process import BulkForwarding

            return BulkForwarding(app, wanted)
        return app

    def stop() -> None:
        server.should_exit = True

    # tune_for_serving once it is built: what exists then lives as long as the process.
    starting = Starting(load, loaded=lambda: tune_for_serving(batches_only=batches_only), stop=stop)
    served: ASGIApp = starting if outer is None else outer(starting)
    server = server_class(uvicorn.Config(lambda: served, factory=True, **options), OpenWebSockets())
    return server, starting


class _SupervisorConfig(uvicorn.Config):
    """What the supervisor needs (where to listen, how many workers), carrying what each worker
    builds its own server from: plain options, and the settings pickled, so that a worker unpickles
    this (and listens) without importing them. The import string names the same application for
    anything of uvicorn's that would load it by itself."""

    def __init__(self, settings: Settings) -> None:
        super().__init__(
            "app.main:create_app",
            factory=True,
            host=settings.host,
            port=settings.port,
            workers=settings.workers,
            log_level=settings.log_level,
            log_config=None,
        )
        self.server_options = _server_options(settings)
        self.log_style = settings.log_style
        self.settings = pickle.dumps(settings)
        self.supervisor = os.getpid()
        # Room for workers added (SIGTTIN) and replacements (app/accept_balance.py).
        self.connections = ConnectionTable(slots=2 * settings.workers + 8)


class _Worker(multiprocess.Process):
    """One worker process of uvicorn's supervisor, running a GracefulServer (uvicorn's runs a plain Server)."""

    _starting: Starting | None = None

    def target(self, sockets: list[socket.socket] | None = None) -> None:  # runs in the worker process
        config = self.config
        assert isinstance(config, _SupervisorConfig)
        stop_with_parent(config.supervisor)
        configure_logs(config.server_options["log_level"], config.log_style)
        # Before the health-check thread that uvicorn starts next asks for it (it builds one otherwise).
        # Connections spread over the workers by how many each holds (app/accept_balance.py).
        balance = Balance.joined(config.connections)
        self._server, self._starting = _build(
            config.server_options,
            lambda: pickle.loads(config.settings),
            lambda server_config, websockets: BalancedServer(
                server_config, websockets=websockets, balance=balance, loaded=self._application_started
            ),
        )
        try:
            super().target(sockets)
        finally:
            if balance is not None:
                balance.leave()
        if self._starting.failed:  # the supervisor stops rather than restarting it
            sys.exit(STARTUP_FAILURE)

    def _application_started(self) -> bool:
        return self._starting is not None and self._starting.app is not None

    def pong(self) -> None:
        # Ready for the supervisor once the application has started, not when the stand-in listens:
        # a restart (SIGHUP) retires an old worker only when its replacement really serves.
        self.child_conn.recv()
        self.child_conn.send(self.server.started and self._application_started())


@contextmanager
def _shared_metrics() -> Iterator[None]:
    """A folder for the workers' metric values, named in the variable prometheus_client reads in each
    worker (app/observability/metrics.py): any worker's /metrics then answers for all of them. A new
    folder each run (a previous run's counts would add up), removed at the end, and those of
    supervisors killed before they could remove theirs at the next start; one the operator named
    already is theirs."""
    if METRICS_DIR in os.environ:
        yield
        return
    for left in Path(tempfile.gettempdir()).glob(f"{METRICS_PREFIX}*-*"):
        owner = left.name.removeprefix(METRICS_PREFIX).split("-")[0]
        if owner.isdigit() and not is_alive(int(owner)):
            shutil.rmtree(left, ignore_errors=True)
    folder = tempfile.mkdtemp(prefix=f"{METRICS_PREFIX}{os.getpid()}-")
    os.environ[METRICS_DIR] = folder
    try:
        yield
    finally:
        del os.environ[METRICS_DIR]
        shutil.rmtree(folder, ignore_errors=True)


@contextmanager
def _workers_are(kind: type[multiprocess.Process]) -> Iterator[None]:
    # uvicorn's supervisor creates its workers as `Process(config, sockets)` in four places (start,
    # replacing a dead one, SIGHUP, SIGTTIN) and has no hook for the class: its module's name is
    # pointed at ours while it runs. This process does nothing else meanwhile (it only supervises).
    original = multiprocess.Process
    setattr(multiprocess, "Process", kind)  # noqa: B010 - mypy refuses assigning to a class name
    try:
        yield
    finally:
        setattr(multiprocess, "Process", original)  # noqa: B010
