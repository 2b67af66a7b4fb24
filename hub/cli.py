"""The ``hub`` command: run the hub and administer it."""

from __future__ import annotations

import json
import logging
import shutil
import sys
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.logging import RichHandler

from hub.config import Settings

app = typer.Typer(help="The venue hub: one identity for a guest, many touch points.",
                  no_args_is_help=True)
console = Console()


def _settings(**overrides: Any) -> Settings:
    try:
        return Settings(**{k: v for k, v in overrides.items() if v is not None})
    except ValueError as exc:
        console.print(f"[red]bad configuration:[/red] {exc}")
        raise typer.Exit(2) from None


def _banner(settings: Settings, demo: dict[str, object] | None) -> None:
    host, port = settings.mqtt_address
    api = f"http://{settings.http_host}:{settings.http_port}"
    broker = f"mqtt://{host}:{port}"
    console.print(f"[bold green]hub up[/bold green]  REST {api}/api/v1  docs {api}/docs  "
                  f"MQTT {broker} ({'embedded' if settings.embedded_broker else 'external'})  "
                  f"data {settings.data_dir}")
    # Show the simulator as the user can run it: bare when on PATH, else by its full path.
    sim = "hub-sim" if shutil.which("hub-sim") else str(Path(sys.executable).parent / "hub-sim")
    if demo is not None:
        console.print(
            f"[bold]demo venue[/bold] {demo['venue']}: park gates, {demo['rooms']} hotel rooms, "
            f"{demo['guests']} guests ({demo['created']} rows created)\n"
            "Try, in another shell:\n"
            f"  {sim} tap --device gate-park-in-1 --credential 04A10000000001   # Charlie's band\n"
            f"  {sim} tap --device lock-101 --credential pk-guest-01            # phone key\n"
            f"  {sim} scenario park-day\n"
            f"  {sim} scenario resort-spend\n"
            f"  {sim} load --rate 200 --duration 20\n"
            f"  curl '{api}/api/v1/events?limit=5'\n"
            f"  mosquitto_sub -h {host} -p {port} -t 'venuehub/v1/#' -v"
        )


@app.command()
def up(
    demo: Annotated[bool, typer.Option(help="Seed the demo venue (idempotent)")] = False,
    data_dir: Annotated[Path | None, typer.Option(help="[env HUB_DATA_DIR]")] = None,
    database_url: Annotated[str | None, typer.Option(help="[env HUB_DATABASE_URL]")] = None,
    broker: Annotated[str | None, typer.Option(
        help="External broker mqtt://host:port; none starts the embedded one [env HUB_BROKER_URL]")]
    = None,
    mqtt_host: Annotated[str | None, typer.Option(help="Embedded broker address [env HUB_MQTT_HOST]")]
    = None,
    mqtt_port: Annotated[int | None, typer.Option(help="[env HUB_MQTT_PORT]")] = None,
    http_host: Annotated[str | None, typer.Option(help="[env HUB_HTTP_HOST]")] = None,
    http_port: Annotated[int | None, typer.Option(help="[env HUB_HTTP_PORT]")] = None,
    log_level: Annotated[str | None, typer.Option(help="[env HUB_LOG_LEVEL]")] = None,
) -> None:
    """Run the hub: embedded broker (unless --broker), MQTT bridge and REST API."""
    from hub.server import run

    settings = _settings(data_dir=data_dir, database_url=database_url, broker_url=broker,
                         mqtt_host=mqtt_host, mqtt_port=mqtt_port, http_host=http_host,
                         http_port=http_port, log_level=log_level)
    logging.basicConfig(level=settings.log_level.upper(), format="%(name)s: %(message)s",
                        handlers=[RichHandler(console=console, show_path=False)])
    logging.getLogger("amqtt").setLevel(logging.WARNING)
    logging.getLogger("transitions").setLevel(logging.WARNING)
    try:
        run(settings, demo=demo, announce=_banner)
    except OSError as exc:
        console.print(f"[red]cannot start:[/red] {exc}")
        raise typer.Exit(1) from None


@app.command()
def init(data_dir: Annotated[Path | None, typer.Option(help="[env HUB_DATA_DIR]")] = None,
         database_url: Annotated[str | None, typer.Option()] = None) -> None:
    """Create the data directory, the secrets (0600) and the database tables."""
    from hub.db import create_db_engine, init_db
    from hub.secrets import load_or_create

    settings = _settings(data_dir=data_dir, database_url=database_url)
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    load_or_create(settings.data_dir)
    init_db(create_db_engine(settings.database))
    console.print(f"initialised {settings.database}; secrets in {settings.data_dir / 'secrets'}"
                  " (mode 0600)")


ledger_app = typer.Typer(help="The double-entry ledger.", no_args_is_help=True)
app.add_typer(ledger_app, name="ledger")


@ledger_app.command("verify")
def ledger_verify(
    data_dir: Annotated[Path | None, typer.Option(help="[env HUB_DATA_DIR]")] = None,
    database_url: Annotated[str | None, typer.Option(help="[env HUB_DATABASE_URL]")] = None,
) -> None:
    """Check every ledger invariant; exit 1 and list them when any is broken."""
    from sqlmodel import Session

    from hub import ledger
    from hub.db import create_db_engine

    settings = _settings(data_dir=data_dir, database_url=database_url)
    if settings.database.startswith("sqlite") and not (settings.data_dir / "hub.db").exists() \
            and settings.database_url is None:
        console.print(f"[red]no database at {settings.data_dir / 'hub.db'}[/red]")
        raise typer.Exit(2)
    engine = create_db_engine(settings.database)
    with Session(engine) as session:
        problems = ledger.verify(session)
        counts = ledger.counts(session)
    engine.dispose()
    for problem in problems:
        console.print(f"[red]✗[/red] {problem}")
    if problems:
        console.print(f"[bold red]{len(problems)} ledger invariant(s) broken[/bold red]")
        raise typer.Exit(1)
    console.print(f"[green]ledger OK[/green]: {counts['transactions']} transactions, "
                  f"{counts['postings']} postings, {counts['accounts']} accounts balance")


@app.command()
def openapi() -> None:
    """Print the REST API's OpenAPI document (JSON)."""
    import sqlalchemy as sa

    from hub.api.main import create_app

    api = create_app(engine=sa.create_engine("sqlite://"), settings=Settings())
    typer.echo(json.dumps(api.openapi(), indent=2))
