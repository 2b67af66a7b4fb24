"""Every option of every ``hub-sim`` command says in ``--help`` what it is for."""

from __future__ import annotations

from simulators.cli import app
from tests.utils.cli_help import problems


def test_every_option_and_argument_is_described() -> None:
    assert problems(app, "hub-sim") == []
