"""Every option of every ``hub`` command says in ``--help`` what it is for."""

from __future__ import annotations

import typer
from typer.testing import CliRunner

from hub.cli import app
from tests.utils.cli_help import problems


def test_every_option_and_argument_is_described() -> None:
    assert problems(app, "hub") == []


def test_the_walk_finds_an_undescribed_option() -> None:
    bare = typer.Typer()

    @bare.command()
    def go(data_dir: str = typer.Option("x", help="[env HUB_DATA_DIR]"),
           port: int = typer.Option(1, help="The port"), other: int = typer.Option(2)) -> None:
        """Go."""

    assert problems(bare, "bare") == [
        "bare --data-dir: Rich drops part of '[env HUB_DATA_DIR]': shows ''",
        "bare --other: no description ('')",
    ]


def test_hub_up_help_shows_the_variables() -> None:
    shown = CliRunner().invoke(app, ["up", "--help"], env={"COLUMNS": "250"}).output
    for variable in ("HUB_DATA_DIR", "HUB_MQTT_PORT", "HUB_MQTT_TLS_PORT", "HUB_HTTP_PORT",
                     "HUB_BROKER_URL"):
        assert variable in shown
