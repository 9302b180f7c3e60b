"""Serving on every core: CDP_WORKERS server processes share the listening socket, each with its own
event loop, its own store connections and the same graceful stop (app/graceful_shutdown.py).

uvicorn's own supervisor (`uvicorn.supervisors.Multiprocess`) runs the workers: it binds the socket
once, starts the workers (spawned, not forked: nothing of the parent's threads or connections is
inherited), answers SIGTERM and SIGINT by stopping each worker with SIGTERM and waiting for it,
replaces a worker that dies or stops answering its health checks, restarts them one by one on SIGHUP,
and adds or removes one on SIGTTIN / SIGTTOU. Each worker builds its application and a GracefulServer
itself, so every worker says goodbye to its WebSocket clients (1001) and lets its requests finish
before it stops, exactly as a single process does.

What the processes share goes through the store or the file system: segment changes reach every
process's subscribers through the store's feed of committed changes (app/services/segment_watch.py),
the demo data and the development key are made once under a lock (app/process_lock.py), and revoked
keys are looked for by each process (app/services/key_revocations.py)."""

from __future__ import annotations

import asyncio
import ctypes
import os
import signal
import socket
from collections.abc import Iterator
from contextlib import contextmanager

import uvicorn
from starlette.applications import Starlette
from uvicorn.config import STARTUP_FAILURE
from uvicorn.supervisors import multiprocess

from app.graceful_shutdown import GracefulServer, OpenWebSockets
from app.observability.logs import configure as configure_logs
from app.settings import Settings

PR_SET_PDEATHSIG = 1  # prctl(2)


def serve(settings: Settings) -> bool:
    """Serve until SIGTERM or SIGINT, in `settings.workers` processes; False when it could not start
    (the port taken, or the application failing to start)."""
    if settings.workers == 1:
        server = build_server(settings)
        server.run()
        return server.started
    asyncio.run(_prepare_store(settings))
    config = _SupervisorConfig(settings)
    try:
        listening = config.bind_socket()
    except SystemExit:  # uvicorn logged why (the port is taken, …)
        return False
    supervisor = multiprocess.Multiprocess(config, sockets=[listening])
    with _workers_are(_Worker):
        supervisor.run()
    return not any(worker.exitcode == STARTUP_FAILURE for worker in supervisor.processes)


def build_server(settings: Settings) -> GracefulServer:
    """One process's server. The application is built when the server runs (in the worker process,
    while its health checks are already answered), and its WebSockets handed to the server then."""
    websockets = OpenWebSockets()

    def application() -> Starlette:
        from app.collector import tune_for_serving
        from app.main import create_app

        app = create_app(settings)
        server.websockets = app.state.open_websockets
        tune_for_serving()  # last: what exists now lives as long as the process
        return app

    config = uvicorn.Config(
        application,
        factory=True,
        host=settings.host,
        port=settings.port,
        log_level=settings.log_level,
        log_config=None,  # uvicorn logs through our handlers; our middleware writes the access lines
        access_log=False,
        lifespan="on",
        timeout_graceful_shutdown=settings.shutdown_grace_seconds,
        # A WebSocket frame is held to the HTTP body limit; uvicorn refuses bigger ones before reading them.
        ws_max_size=settings.max_body_bytes,
    )
    server = GracefulServer(config, websockets=websockets)
    return server


async def _prepare_store(settings: Settings) -> None:
    """Open the store once before the workers start: its schema is created or migrated (and the
    embedded file switched to WAL) by one process, not raced by all of them."""
    from app.store import open_store

    store = await open_store(settings.database_url, mongodb_database=settings.mongodb_database)
    await store.close()


class _SupervisorConfig(uvicorn.Config):
    """What the supervisor needs (where to listen, how many workers), carrying the settings that each
    worker builds its own server from. The import string names the same application for anything of
    uvicorn's that would load it by itself."""

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
        self.settings = settings
        self.supervisor = os.getpid()


def _stop_with(supervisor: int) -> None:
    """No worker outlives its supervisor, even one killed with SIGKILL (which can run no clean-up):
    on Linux the kernel sends this worker SIGTERM when its parent dies, and it stops gracefully as on
    any SIGTERM. Elsewhere this does nothing; the supervisor's own SIGTERM handling still applies."""
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(PR_SET_PDEATHSIG, signal.SIGTERM)
    except (OSError, AttributeError):
        return
    if os.getppid() != supervisor:  # it died before the request above took effect
        os.kill(os.getpid(), signal.SIGTERM)


class _Worker(multiprocess.Process):
    """One worker process of uvicorn's supervisor, running a GracefulServer (uvicorn's runs a plain Server)."""

    def target(self, sockets: list[socket.socket] | None = None) -> None:  # runs in the worker process
        assert isinstance(self.config, _SupervisorConfig)
        settings = self.config.settings
        _stop_with(self.config.supervisor)
        configure_logs(settings.log_level, settings.log_style)
        # Before the health-check thread that uvicorn starts next asks for it (it builds one otherwise).
        self._server = build_server(settings)
        super().target(sockets)


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
