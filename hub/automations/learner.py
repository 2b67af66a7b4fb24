"""What a guest's hand teaches: commands it undid are marked, and manual thermostat
changes, consistent a few times, become the guest's preferred temperature."""

from __future__ import annotations

from datetime import datetime

from sqlmodel import Session

from hub.automations.learning import OVERRIDE_WINDOW, is_override, learned_temperature
from hub.automations.occurrence import Occurrence
from hub.models import DeviceKind, GuestPreferences
from hub.store import automations as store


def learn_from(session: Session, occurrence: Occurrence) -> None:
    """A guest's manual thermostat changes, consistent a few times, become their preference.

    Only for guests staying in that room who consent to personalization.
    """
    readings = occurrence.readings or {}
    if occurrence.trigger != "telemetry" or readings.get("manual") is not True:
        return
    mark_overrides(session, occurrence)
    device = store.device(session=session, device_id=occurrence.device_id) \
        if occurrence.device_id else None
    if device is None or device.kind is not DeviceKind.THERMOSTAT or device.zone_id is None:
        return
    for stay in store.room_stays_at(session=session, at=occurrence.at):
        if device.zone_id not in stay.zone_ids:
            continue
        consent = store.consent(session=session, guest_id=stay.guest_id,
                                purpose="personalization")
        if consent is None or not consent.granted:
            continue
        setpoints = _manual_setpoints(session, device.id, since=stay.valid_from)
        prefs = store.preferences(session=session, guest_id=stay.guest_id) or \
            GuestPreferences(guest_id=stay.guest_id)
        learned = learned_temperature(prefs.room_temperature_c, setpoints)
        if learned is not None:
            prefs.room_temperature_c = learned
            prefs.updated_at = occurrence.at
            session.add(prefs)


def _manual_setpoints(session: Session, device_id: str, *, since: datetime) -> list[float]:
    """The setpoints a guest chose by hand, oldest first: one per change of the dial.

    A thermostat keeps reporting ``manual: true`` with the same setpoint until the next
    command (each tick of its temperature): those repeats are one change, not several.
    """
    rows = store.readings_since(session=session, device_id=device_id, since=since, limit=50)
    values: list[float] = []
    before: tuple[bool, float] | None = None
    for row in reversed(rows):
        readings = row.data.get("readings", {})
        setpoint = readings.get("setpoint_c")
        if isinstance(setpoint, bool) or not isinstance(setpoint, int | float):
            continue
        now = (readings.get("manual") is True, float(setpoint))
        if now[0] and now != before:
            values.append(now[1])
        before = now
    return values


def mark_overrides(session: Session, occurrence: Occurrence) -> int:
    """Mark the automation commands a guest's manual change undid within ten minutes.

    Only the latest command of each kind counts: an earlier one was already superseded.
    """
    readings = occurrence.readings or {}
    runs = store.sent_runs_since(session=session, device_id=occurrence.device_id,
                                 since=occurrence.at - OVERRIDE_WINDOW)
    seen: set[str | None] = set()
    marked = 0
    for run in runs:
        if run.name in seen:
            continue
        seen.add(run.name)
        if run.overridden_at is None and run.sent_at is not None and is_override(
                run.name, run.params, readings, sent_at=run.sent_at, now=occurrence.at):
            run.overridden_at = occurrence.at
            session.add(run)
            marked += 1
    return marked
