"""Command line: `python -m app serve` runs the server, `python -m app load fixtures/` loads data."""

from __future__ import annotations

import asyncio
import logging
import os
import shutil
from collections.abc import Awaitable, Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING

import typer
from pydantic import ValidationError
from rich.console import Console
from rich.text import Text

from app import tracing
from app.command_line import app_command
from app.domain.errors import DomainError, StoreUnavailable
from app.observability.logs import configure as configure_logs
from app.os_errors import in_one_line
from app.settings import Settings, invalid_settings

if TYPE_CHECKING:  # `serve` listens before the services and the store are imported (app/starting.py)
    from app.services.ports import ProfileStore

# Help and errors as plain text at the terminal's width, or a wide one where there is no terminal (a
# pipe, a log): rich's boxes wrapped at 80 columns there, and its tracebacks hid the one useful line.
WIDTH_WITHOUT_TERMINAL = 200


def _commands(about: str) -> typer.Typer:
    return typer.Typer(
        help=about,
        no_args_is_help=True,
        add_completion=False,
        rich_markup_mode=None,
        pretty_exceptions_enable=False,
        context_settings={
            "max_content_width": WIDTH_WITHOUT_TERMINAL,
            "terminal_width": shutil.get_terminal_size((WIDTH_WITHOUT_TERMINAL, 24)).columns,
        },
    )


cli = _commands("Customer data platform core.")
# Messages are never wrapped (the terminal does it), and never read as markup: they hold what users
# typed (a key id, a path, a data file's text), where "[/]" was a MarkupError traceback and "[bold]"
# vanished from the message. Styles are given as styles.
console = Console(stderr=True, soft_wrap=True, markup=False)


@contextmanager
def _said_in_one_line(then: str | None = None) -> Iterator[None]:
    """A domain error raised within (a file that is no store, a MongoDB not reachable, a refused input),
    or a file the system refused (a folder it may not write in), is its message on stderr and exit
    status 1, never a traceback; `then`, what to do next, follows a store that failed. A store's
    failure says its driver's reason too: "could not complete a batch (OperationalError)" hid "database
    or disk is full" (an API client is told no more; here the operator reads it)."""
    try:
        yield
    except DomainError as exc:
        console.print(exc.message + _driver_said(exc), style="red", highlight=False)
        if then is not None and isinstance(exc, StoreUnavailable):
            console.print(then, highlight=False)
        raise typer.Exit(1) from None
    except OSError as exc:  # a backup into, or a restore in, a folder this user may not write in
        console.print(in_one_line(exc), style="red", highlight=False)
        raise typer.Exit(1) from None


def _driver_said(exc: DomainError) -> str:
    cause = exc.__cause__
    if not isinstance(exc, StoreUnavailable) or cause is None:
        return ""
    said = in_one_line(cause) if isinstance(cause, OSError) else next(iter(str(cause).splitlines()), "")
    return f": {said}" if said else ""


def _settings(**options: object) -> Settings:
    """The settings, command-line options over the environment, validated together; a bad one is a
    line on stderr and exit status 2, before anything is opened or written."""
    given = {name: value for name, value in options.items() if value is not None}
    try:
        return Settings(**given)  # type: ignore[arg-type]
    except ValidationError as exc:
        console.print(invalid_settings(exc, {name: f"--{name}" for name in given}), style="red", highlight=False)
        raise typer.Exit(2) from None
    except UnicodeDecodeError:  # a .env saved in UTF-16 (as some Windows editors do): a traceback before
        console.print("bad settings file .env: it is not UTF-8 text; save it as UTF-8", style="red", highlight=False)
        raise typer.Exit(2) from None


@cli.command()
def serve(
    host: str = typer.Option(None, help="Interface to bind (default: CDP_HOST or 127.0.0.1)."),
    port: int = typer.Option(None, help="Port (default: CDP_PORT or 8000)."),
    workers: int = typer.Option(None, min=1, help="Server processes (default: CDP_WORKERS or one per CPU)."),
) -> None:
    """Serve GraphQL at http://HOST:PORT/graphql (the playground opens there in a browser)."""
    from app import workers as serving

    settings = _settings(host=host, port=port, workers=workers)
    if settings.database_url.startswith("mongodb://"):  # the store's import (~0.5 s) only where it can tell
        from app.store import database_url_problem

        if url_problem := database_url_problem(settings.database_url):
            console.print(f"bad setting CDP_DATABASE_URL: {url_problem}", style="red", highlight=False)
            raise typer.Exit(2)
    if problem := settings.binding_problem():
        console.print(f"refusing to start: {problem}", style="red")
        raise typer.Exit(2)
    if tracing_problem := tracing.problem():  # an OTEL_* variable tracing cannot start with (app/tracing.py)
        console.print(tracing_problem, style="red", highlight=False)
        raise typer.Exit(2)
    if serving.port_in_use(settings.host, settings.port):  # asked before: after a failed start, the
        # server's own socket may still be open, and every failure read as the port being taken
        console.print(
            f"port {settings.port} on {settings.host} is in use by another process: stop it, or serve on "
            f"another port (`{app_command(f'serve --port {settings.port + 1}')}`, or "
            f"CDP_PORT={settings.port + 1} make run)",
            style="red",
            highlight=False,
        )
        raise typer.Exit(3)
    configure_logs(settings.log_level, settings.log_style)
    where = f"http://{settings.host}:{settings.port}/graphql"
    processes = f"{settings.workers} worker process{'es' if settings.workers > 1 else ''}"
    if settings.log_style == "json":  # stderr carries only JSON lines then, for the log collector
        logging.getLogger("cdp").info("CDP core on %s (store: %s; %s)", where, _describe(settings), processes)
    else:
        console.print(Text("CDP core", style="bold"), f"on {where}  (store: {_describe(settings)}; {processes})")
    if not serving.serve(settings):  # as uvicorn.run does: the application did not start (the log says why)
        raise typer.Exit(3)


@cli.command()
def load(
    directory: Path = typer.Argument(Path("fixtures"), exists=True, file_okay=False),
    shift_dates: bool | None = typer.Option(
        None,
        "--shift-dates/--keep-dates",
        help="Move every date by whole days so that the newest event lands within the last day, as the "
        "server does for the demo data (the store keeps the shift: loading again moves them the same way). "
        "Default: shift the demo data set (CDP_FIXTURES_DIR), keep the dates of any other directory.",
    ),
) -> None:
    """Load products.jsonl, profiles.jsonl and events.jsonl from DIRECTORY into the configured store
    (segments follow, as for the API's writes).

    Then the profiles' computed traits, and the segments of DIRECTORY/segments.jsonl, defined and
    evaluated, as the server's first start does with the demo data."""
    from datetime import timedelta

    from app.bootstrap import connect
    from app.demo_segments import compute_traits_now, define_segments
    from app.domain import clock
    from app.services.fixtures import SEGMENTS_FILE, check_data_set, data_file, demo_shift, load_fixtures

    settings = _settings()
    with _said_in_one_line():
        check_data_set(directory)  # before the store is opened: a mistyped folder leaves no store behind
    if shift_dates is None:
        shift_dates = directory.resolve() == settings.fixtures_dir.resolve()

    async def run() -> None:
        with _said_in_one_line():
            services = await connect(settings)  # wired as the server is: segments hear of every write
        try:
            # A data file that is a folder; the store gone or full meanwhile (what is in stays: every
            # event is stored with its messageId in the batch that took it, which a rerun skips).
            with _said_in_one_line(then="what was loaded stays; run the same load again to finish it"):
                shift = await demo_shift(services.store, directory, clock.now()) if shift_dates else timedelta(0)
                if shift:
                    console.print(f"dates moved by {shift.days} days (the newest event within the last day)")
                with _progress_bar() as progress:
                    report = await load_fixtures(services.store, directory, services.ingestion, progress, shift=shift)
                    if data_file(directory, SEGMENTS_FILE) is not None:  # as the server's first start does
                        await compute_traits_now(services, progress)
                        segments = await define_segments(services, directory, progress, report)
                    else:
                        segments = 0
        finally:
            await services.close()
        console.print(
            f"loaded {report.products} products, {report.profiles} profiles, {report.events_accepted} events "
            f"({report.events_duplicate} already present; rejected: {report.products_rejected} products, "
            f"{report.profiles_rejected} profiles, {report.events_rejected} events"
            + (f", {report.segments_rejected} segments" if report.segments_rejected else "")
            + ")"
            + (f", {segments} segments defined and evaluated" if segments else "")
            + f" into {_describe(settings)}"
        )
        for problem in report.problems:
            console.print(f"  {problem}", style="red", highlight=False)
        if report.problems_left_out:
            more = f"  … and {report.problems_left_out:,} more (the first {len(report.problems)} are above)"
            console.print(more, style="red", highlight=False)
        if report.products_rejected or report.profiles_rejected or report.events_rejected or report.segments_rejected:
            raise typer.Exit(1)

    try:
        asyncio.run(run())
    except KeyboardInterrupt:
        # Every event is stored with its messageId in the batch that took it: a rerun skips them.
        console.print("interrupted: what was loaded stays; run the same load again to finish it")
        raise typer.Exit(130) from None


keys = _commands("API keys: create, list, revoke (only hashes are stored).")
cli.add_typer(keys, name="keys")


def _with_store(work: Callable[[ProfileStore], Awaitable[None]], *, create: bool = False) -> None:
    """Run `work` on the configured store. Only `create` may make an embedded store that is not there:
    listing or revoking keys in a mistyped path would otherwise leave an empty store behind and say
    nothing is in it."""
    from app.store import open_store

    settings = _settings()
    embedded = settings.embedded_file()
    if not create and embedded is not None and not embedded.exists():
        console.print(
            f"no store at {embedded} (CDP_DATABASE_URL={settings.database_url}): "
            f"check the path, or start the server or `{app_command('load')}` there first",
            style="red",
            highlight=False,
        )
        raise typer.Exit(1)

    async def run() -> None:
        try:
            with _said_in_one_line():  # a file that is no store, a MongoDB not reachable
                store = await open_store(settings.database_url, mongodb_database=settings.mongodb_database)
        except ValueError as exc:  # a URL the driver cannot read (pymongo says why)
            console.print(f"bad setting CDP_DATABASE_URL: {exc}", style="red", highlight=False)
            raise typer.Exit(2) from None
        try:
            with _said_in_one_line():
                await work(store)
        finally:
            await store.close()

    asyncio.run(run())


@keys.command("create")
def create_key(
    name: str = typer.Argument(..., help="Who or what uses the key (shown in audit logs as key:NAME)."),
    scope: list[str] = typer.Option(..., "--scope", "-s", help="Repeat for each scope, e.g. -s read:profiles."),
) -> None:
    """Create a key and print its token once: it is stored hashed and cannot be shown again."""
    from app.services import api_keys

    async def work(store: ProfileStore) -> None:
        key, token = await api_keys.create_key(store, name, scope)
        console.print(f"created key {key.id} ({key.name}) with {', '.join(key.scopes)}; its token, shown once:")
        print(token)  # alone on stdout, for scripts: TOKEN=$(python -m app keys create …)

    _with_store(work, create=True)  # the first key may come before the server's first start


@keys.command("list")
def list_keys() -> None:
    """Keys with their scopes and state (never their secrets)."""

    async def work(store: ProfileStore) -> None:
        for key in await store.list_api_keys():
            state = f"revoked {key.revoked_at.isoformat()}" if key.revoked_at else "active"
            print(f"{key.id}  {key.name:<24} {state:<34} {' '.join(key.scopes)}")

    _with_store(work)


@keys.command("revoke")
def revoke_key(
    key_id: str = typer.Argument(..., help="The key's id, as `keys list` shows it (or the key itself, cdp_<id>_…)."),
) -> None:
    """Revoke a key: requests with it are refused from now on."""
    from app.domain.access import TOKEN_PREFIX, split_token
    from app.services import api_keys

    # The help said `cdp_<id>_…`, and `cdp_<id>` was "no active key": the id, however it is given.
    parts = split_token(key_id)
    named = parts[0] if parts else key_id.removeprefix(f"{TOKEN_PREFIX}_")

    async def work(store: ProfileStore) -> None:
        await api_keys.revoke_key(store, named)
        console.print(f"revoked key {named}")

    _with_store(work)


traits = _commands("Computed traits: RFM, engagement, preferences, next order.")
cli.add_typer(traits, name="traits")


@traits.command("recompute")
def recompute_traits(
    restart: bool = typer.Option(False, help="Start over even if an interrupted job could be resumed."),
) -> None:
    """Recompute every profile's computed traits, with progress; an interrupted run resumes where it stopped."""
    from app.bootstrap import Services, ingestion_policy
    from app.services import traits as job

    async def work(store: ProfileStore) -> None:
        settings = _settings()
        services = Services(settings=settings, store=store, ingestion=ingestion_policy(settings))
        with _progress_bar() as progress:
            result = await job.recompute_traits(
                store,
                progress=progress,
                restart=restart,
                changes=services.changes,  # segments reading rfm.* or computed.* follow
            )
        b = result.boundaries
        console.print(
            f"job {result.job_id}{' (resumed)' if result.resumed else ''}: traits of {result.processed} profiles "
            f"in {result.duration_seconds:.1f} s; {b.customers} customers, RFM cuts for scores 2-5: recency days "
            f"{list(b.recency.cuts)}, orders {list(b.frequency.cuts)}, net spend {_amounts(b.monetary_amounts())}",
            highlight=False,
        )

    _with_store(work)


@cli.command("match-model")
def match_model() -> None:
    """Estimate a new version of the learned match model from the store's candidate pairs, now."""
    from app.services import match_model as job

    async def work(store: ProfileStore) -> None:
        model = await job.estimate_model(store)
        if model is None:
            console.print(f"fewer than {job.MIN_PAIRS} candidate pairs: nothing estimated, the rules scorer answers")
            return
        why = model.why_not_used()
        used = "in use" if why is None else f"not used ({why}): the rules scorer answers"
        console.print(
            f"{model.name} from {model.pairs_used} candidate pairs in {model.iterations} iterations, match share "
            f"{model.match_share:.3f}: {used}",
            highlight=False,
        )

    _with_store(work)


@cli.command()
def backup(destination: Path = typer.Argument(..., help="The file to write; it must not exist.")) -> None:
    """Copy the embedded store to DESTINATION, while the server runs: a consistent snapshot, checked."""
    import time

    from app.store.sqlite import backups

    database = _embedded_only(_settings(), "backup")
    started = time.perf_counter()
    with _said_in_one_line(), _progress_bar() as progress:
        made = backups.back_up(database, destination, progress)
    console.print(
        f"backed up {database} to {made.path} in {time.perf_counter() - started:.1f} s: {made.profiles} profiles, "
        f"{made.interactions} interactions, {made.bytes / 1e6:.1f} MB",
        highlight=False,
    )


@cli.command()
def restore(backup: Path = typer.Argument(..., help="A file made by `python -m app backup`.")) -> None:
    """Put BACKUP in the embedded store's place, the server stopped; people erased since the backup are
    erased from it again, consents withdrawn since are withdrawn in it, and the store it replaces is kept
    beside it."""
    from app.restoring import restore_backup

    database = _embedded_only(_settings(), "restore")
    with _said_in_one_line(), _progress_bar() as progress:
        done = asyncio.run(restore_backup(backup, database, progress))
    held, carried = done.backup, done.carried
    taken = f"taken {held.taken_at.isoformat()}" if held.taken_at else "not made by `backup`"
    split = f" ({carried.split} merges of the backup undone first, as they were here)" if carried.split else ""
    console.print(
        f"restored {backup} ({taken}: {held.profiles} profiles, {held.interactions} interactions) into {database}; "
        f"erasures made here since: {carried.receipts} receipts carried over, {carried.suppressions} identifiers "
        f"suppressed, {carried.erased} profiles of the backup erased again{split}; API keys revoked here since: "
        f"{done.revoked} revoked in it too; consents withdrawn here since: {done.withdrawn} withdrawn in it too"
        + (f"; the store it replaced is kept as {done.kept}" if done.kept else ""),
        highlight=False,
    )
    if done.kept is None:
        console.print(
            f"there was no store at {database} to carry erasures from: anyone erased after the backup was taken "
            "is in it again, so erase them again (deleteProfile) before serving it",
            style="yellow",
            highlight=False,
        )


@contextmanager
def _progress_bar() -> Iterator[Callable[[str, int, int], None]]:
    """A bar a stage on stderr, told (stage, done, total): a long job shows how far it is."""
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TaskID, TextColumn, TimeElapsedColumn

    with Progress(
        TextColumn("{task.description:>9}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(), console=console
    ) as bar:
        tasks: dict[str, TaskID] = {}

        def progress(stage: str, done: int, total: int) -> None:
            if stage not in tasks:
                tasks[stage] = bar.add_task(stage, total=total)
            bar.update(tasks[stage], completed=done, total=total)

        yield progress


def _embedded_only(settings: Settings, command: str) -> Path:
    database = settings.embedded_file()
    if database is None:
        console.print(
            f"`{command}` is for the embedded store; a MongoDB deployment is backed up and restored with "
            "mongodump/mongorestore or its provider's snapshots (see SECURITY.md)",
            style="red",
            highlight=False,
        )
        raise typer.Exit(1)
    return database


def _amounts(values: list[float | None]) -> str:
    """Currency units with cents, as the API's `monetary` (None: no customer scores that high)."""
    return "[" + ", ".join("None" if v is None else f"{v:.2f}" for v in values) + "]"


def _describe(settings: Settings) -> str:
    url = settings.database_url
    return "embedded " + url.removeprefix("sqlite:///") if url.startswith("sqlite") else "MongoDB"


if __name__ == "__main__":
    # Every file the server and its commands create (the store, its log and shared-memory files,
    # backups, the development key) is its user's alone: with the usual umask 022 the store and every
    # backup, everyone's customer data, were readable by any account of the machine.
    os.umask(0o077)
    cli()
