"""``python -m simulators``: the same as the ``hub-sim`` console script."""

from __future__ import annotations

from simulators.cli import app

app(prog_name="hub-sim")
