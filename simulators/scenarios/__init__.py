"""Scripted journeys played against a running hub.

To add a scenario: write ``def my_scenario(run: Run) -> None`` in a module of
this package (its docstring is the command's help) and add it to ``SCENARIOS``;
``hub-sim scenario <name>`` picks it up.
"""

from __future__ import annotations

from collections.abc import Callable

from simulators.scenarios.intruder import intruder
from simulators.scenarios.park_day import park_day
from simulators.scenarios.resort_spend import resort_spend
from simulators.scenarios.room_welcome import room_welcome
from simulators.scenarios.runner import Run

Scenario = Callable[[Run], None]

SCENARIOS: dict[str, Scenario] = {
    "park-day": park_day,
    "resort-spend": resort_spend,
    "intruder": intruder,
    "room-welcome": room_welcome,
}

__all__ = ["SCENARIOS", "Run", "Scenario"]
