"""Command line: `python -m app serve` runs the server, `python -m app load fixtures/` loads data."""

from __future__ import annotations

import asyncio
import logging
from pathlib import Path

import typer
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TaskID, TextColumn, TimeElapsedColumn

from app.settings import Settings

cli = typer.Typer(add_completion=False, no_args_is_help=True, help="Customer data platform core.")
console = Console(stderr=True)


@cli.command()
def serve(
    host: str = typer.Option(None, help="Interface to bind (default: CDP_HOST or 127.0.0.1)."),
    port: int = typer.Option(None, help="Port (default: CDP_PORT or 8000)."),
) -> None:
    """Serve GraphQL at http://HOST:PORT/graphql (the playground opens there in a browser)."""
    import uvicorn

    from app.main import create_app

    settings = Settings()
    overrides = {k: v for k, v in (("host", host), ("port", port)) if v is not None}
    settings = settings.model_copy(update=overrides)
    logging.basicConfig(level=settings.log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    console.print(
        f"[bold]CDP core[/] on http://{settings.host}:{settings.port}/graphql  (store: {_describe(settings)})"
    )
    uvicorn.run(
        create_app(settings), host=settings.host, port=settings.port, log_level=settings.log_level, lifespan="on"
    )


@cli.command()
def load(directory: Path = typer.Argument(Path("fixtures"), exists=True, file_okay=False)) -> None:
    """Load products.jsonl, profiles.jsonl and events.jsonl from DIRECTORY into the configured store."""
    from app.services.fixtures import load_fixtures
    from app.services.ingestion import IngestionPolicy
    from app.store import open_store

    settings = Settings()
    policy = IngestionPolicy(max_batch_size=settings.max_batch_size, identity=settings.identity_policy())

    async def run() -> None:
        store = await open_store(settings.database_url, mongodb_database=settings.mongodb_database)
        try:
            with Progress(
                TextColumn("{task.description:>9}"),
                BarColumn(),
                MofNCompleteColumn(),
                TimeElapsedColumn(),
                console=console,
            ) as bar:
                tasks: dict[str, TaskID] = {}

                def progress(stage: str, done: int, total: int) -> None:
                    if stage not in tasks:
                        tasks[stage] = bar.add_task(stage, total=total)
                    bar.update(tasks[stage], completed=done)

                report = await load_fixtures(store, directory, policy, progress)
        except ValueError as exc:  # a line that is not JSON: the message names file and line
            console.print(f"[red]stopped: {exc}[/red]")
            raise typer.Exit(1) from None
        finally:
            await store.close()
        console.print(
            f"loaded {report.products} products, {report.profiles} profiles, {report.events_accepted} events "
            f"({report.events_duplicate} already present; rejected: {report.profiles_rejected} profiles, "
            f"{report.events_rejected} events) into {_describe(settings)}"
        )
        for problem in report.problems:
            console.print(f"[red]  {problem}[/red]", highlight=False)
        if report.profiles_rejected or report.events_rejected:
            raise typer.Exit(1)

    asyncio.run(run())


def _describe(settings: Settings) -> str:
    url = settings.database_url
    return "embedded " + url.removeprefix("sqlite:///") if url.startswith("sqlite") else "MongoDB"


if __name__ == "__main__":
    cli()
