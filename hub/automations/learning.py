"""Learning from the guest's hand: a preferred temperature, an undone command. Pure."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import datetime, timedelta
from typing import Any

# The room temperatures a guest may prefer (as the profile API allows).
PREFERRED_MIN_C, PREFERRED_MAX_C = 16.0, 28.0
PLAUSIBLE_MIN_C, PLAUSIBLE_MAX_C = -50.0, 100.0  # outside: a broken or lying device


def learned_temperature(preferred: float | None, manual_setpoints: Sequence[float], *,
                        times: int = 3) -> float | None:
    """The new preferred temperature when a guest's last ``times`` manual changes all went
    the same way from it (all warmer, or all cooler); None when nothing is to be learned.

    Like a learning thermostat: automatic, with the guest's hand as the override it learns
    from. The new preference is the mean of those changes, to the half degree, within
    what a guest may prefer (16-28 °C); readings no thermostat could mean (not a number,
    -50 or 100 °C) are ignored.
    """
    recent = [s for s in manual_setpoints if PLAUSIBLE_MIN_C <= s <= PLAUSIBLE_MAX_C][-times:]
    if len(recent) < times:
        return None
    if preferred is None:
        preferred = recent[0]
    if all(s > preferred for s in recent) or all(s < preferred for s in recent):
        learned = min(max(round(sum(recent) / len(recent) * 2) / 2, PREFERRED_MIN_C),
                      PREFERRED_MAX_C)
        return learned if learned != preferred else None
    return None


OVERRIDE_WINDOW = timedelta(minutes=10)
# What an appliance reports for the value a command set: command -> (param, reading).
_SETS = {"set_temperature": ("celsius", "setpoint_c"), "set_scene": ("scene", "scene")}


def is_override(name: str | None, params: Mapping[str, Any], readings: Mapping[str, Any],
                *, sent_at: datetime, now: datetime) -> bool:
    """Whether a manual change (``readings`` with ``manual: true``) undoes a command an
    automation sent at ``sent_at``: the same setting, another value, within ten minutes."""
    if readings.get("manual") is not True or name not in _SETS:
        return False
    if not timedelta(0) <= now - sent_at <= OVERRIDE_WINDOW:
        return False
    param, reading = _SETS[name]
    return reading in readings and readings[reading] != params.get(param)

