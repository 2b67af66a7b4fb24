"""The facts an automation looks at, gathered from the database for one occurrence."""

from __future__ import annotations

from datetime import datetime, timedelta

import sqlalchemy as sa
from sqlmodel import Session, col, select

from hub.automation_runner import Occurrence
from hub.automations import Facts, learned_temperature
from hub.models import (
    Consent,
    Device,
    DeviceKind,
    Entitlement,
    EntitlementKind,
    Event,
    Guest,
    GuestPreferences,
    Telemetry,
    Zone,
)

ROOM_APPLIANCES = (DeviceKind.THERMOSTAT, DeviceKind.LIGHT, DeviceKind.DISPLAY)
STUCK_WINDOW = timedelta(minutes=2)


def load_facts(session: Session, occurrence: Occurrence) -> Facts | None:
    """Everything rules may look at; None when the device is gone."""
    device = session.get(Device, occurrence.device_id)
    if device is None:
        return None
    zone = session.get(Zone, device.zone_id) if device.zone_id else None
    guest = session.get(Guest, occurrence.guest_id) if occurrence.guest_id else None
    prefs = session.get(GuestPreferences, guest.id) if guest else None
    consents = frozenset(
        c.purpose for c in session.exec(select(Consent).where(
            Consent.guest_id == (guest.id if guest else ""), col(Consent.granted).is_(True)))
    )
    room_devices = {}
    if zone is not None:
        for appliance in session.exec(select(Device).where(Device.zone_id == zone.id)).all():
            if appliance.kind in ROOM_APPLIANCES:
                room_devices[appliance.kind.value] = appliance.id
    return Facts(
        trigger=occurrence.trigger,  # type: ignore[arg-type]
        now=occurrence.at,
        guest={"id": guest.id, "name": guest.name,
               "display_name": (prefs and prefs.display_name) or guest.display_name
               or guest.name} if guest else {},
        prefs=prefs.model_dump(exclude={"guest_id", "updated_at"}) if prefs else {},
        consents=consents,
        zone={"id": zone.id, "kind": zone.kind.value} if zone else {},
        device={"id": device.id, "kind": device.kind.value},
        event={"reason": occurrence.reason},
        reading={"value": occurrence.reading} if occurrence.reading is not None else {},
        counters=_counters(session, occurrence, zone),
        room_devices=room_devices,
    )


def _counters(session: Session, occurrence: Occurrence, zone: Zone | None) -> dict[str, int]:
    counters: dict[str, int] = {}
    since = occurrence.at - STUCK_WINDOW
    counters["recent_denials"] = _count(session, Event.device_id == occurrence.device_id,
                                        Event.outcome == "deny",
                                        col(Event.decided_at) >= since)
    if occurrence.guest_id is None or zone is None:
        return counters
    stay = session.exec(select(Entitlement).where(
        Entitlement.guest_id == occurrence.guest_id, Entitlement.kind == EntitlementKind.ROOM,
        col(Entitlement.valid_from) <= occurrence.at,
        col(Entitlement.valid_until) > occurrence.at)).first()
    start = stay.valid_from if stay else occurrence.at
    counters["entries"] = _count(session, Event.guest_id == occurrence.guest_id,
                                 Event.zone_id == zone.id, Event.outcome == "allow",
                                 col(Event.decided_at) >= start)
    counters["visits"] = _count(session, Event.guest_id == occurrence.guest_id,
                                Event.outcome == "allow")
    return counters


def _count(session: Session, *where: object) -> int:
    stmt = sa.select(sa.func.count()).select_from(Event).where(*where)  # type: ignore[arg-type]
    return int(session.execute(stmt).scalar_one())


def learn_from(session: Session, occurrence: Occurrence) -> None:
    """A guest's manual thermostat changes, consistent a few times, become their preference.

    Only for guests staying in that room who consent to personalization.
    """
    readings = occurrence.readings or {}
    if occurrence.trigger != "telemetry" or readings.get("manual") is not True:
        return
    device = session.get(Device, occurrence.device_id)
    if device is None or device.kind is not DeviceKind.THERMOSTAT or device.zone_id is None:
        return
    for stay in session.exec(select(Entitlement).where(
            Entitlement.kind == EntitlementKind.ROOM, col(Entitlement.valid_from) <= occurrence.at,
            col(Entitlement.valid_until) > occurrence.at)).all():
        if device.zone_id not in stay.zone_ids:
            continue
        consent = session.get(Consent, (stay.guest_id, "personalization"))
        if consent is None or not consent.granted:
            continue
        setpoints = _manual_setpoints(session, device.id, since=stay.valid_from)
        prefs = session.get(GuestPreferences, stay.guest_id) or GuestPreferences(
            guest_id=stay.guest_id)
        learned = learned_temperature(prefs.room_temperature_c, setpoints)
        if learned is not None:
            prefs.room_temperature_c = learned
            prefs.updated_at = occurrence.at
            session.add(prefs)


def _manual_setpoints(session: Session, device_id: str, *, since: datetime) -> list[float]:
    rows = session.exec(select(Telemetry).where(
        Telemetry.device_id == device_id, Telemetry.kind == "telemetry",
        col(Telemetry.received_at) >= since).order_by(col(Telemetry.id).desc()).limit(20)).all()
    values = []
    for row in reversed(rows):
        readings = row.data.get("readings", {})
        if readings.get("manual") is True and isinstance(readings.get("setpoint_c"), int | float):
            values.append(float(readings["setpoint_c"]))
    return values
