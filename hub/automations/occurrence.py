"""What happened that automations may react to, as the bridge and the scheduler hand it over."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any


@dataclass(frozen=True)
class Occurrence:
    """Something that happened that automations may react to."""

    trigger: str
    venue: str
    device_id: str | None  # None for a scheduled occurrence: it happens to a guest
    guest_id: str | None
    at: datetime
    reason: str | None = None
    readings: dict[str, Any] | None = None  # a telemetry event's readings, as reported
    reported_at: datetime | None = None  # when the device says it happened
    telemetry_id: int | None = None  # the reading's row, so counters stop at it
    event_row_id: int | None = None  # the tap's journey row, so counters stop at it
    purchase: dict[str, Any] | None = None  # an approved payment: merchant_id, amount, currency
    schedule: str | None = None  # the 'HH:MM' of the schedule rule that fired...
    rule_id: str | None = None  # ...and which: a scheduled occurrence is for that rule only

