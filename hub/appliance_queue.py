"""Commands for appliances that are offline: kept in the database, sent when they are back.

A command an automation sends to a device the hub knows to be offline is stored as a
queued :class:`~hub.models.AutomationRun`; when the device says it is online again
(its status message, or a heartbeat) the queued commands go out in the order they were
made, inside the transaction that marks them sent. One older than the queue's time to
live is not sent (a greeting hours late is worse than none): it is marked expired and
reported to staff. Nothing is dropped silently.
"""

from __future__ import annotations

from datetime import datetime, timedelta

from sqlmodel import Session

from devices.contract import Command, encode
from devices.topics import Channel, device_topic, staff_topic
from hub.models import (
    AutomationRun,
    Device,
    DeviceKind,
    RunStatus,
    Zone,
    ZoneKind,
)
from hub.notices import staff_alert
from hub.store import guests, rows, runs
from hub.store import privacy as privacy_store


def command_message(venue: str, run: AutomationRun, *, issued_at: datetime) -> tuple[str, bytes]:
    """The MQTT message that carries a command run to its device."""
    assert run.device_id is not None and run.command_id is not None
    command = Command(command_id=run.command_id, name=run.name or "show",
                      params=dict(run.params), issued_at=issued_at)
    return device_topic(venue, run.device_id, Channel.COMMANDS), encode(command)


def expired_alert(venue: str, run: AutomationRun, *, device_id: str,
                  now: datetime) -> tuple[str, bytes]:
    """The staff alert saying that a queued command expired unsent (cue ``command_expired``;
    the command's name and when it was queued in ``details``)."""
    alert = staff_alert(run.rule_id, now, {
        "text": f"{run.rule_id}: {run.name} for {device_id} was not sent: the device "
                f"was offline from {run.created_at:%H:%M} UTC until now",
        "severity": "info", "cue": "command_expired", "device_id": device_id,
        "command": run.name, "queued_at": run.created_at.isoformat()})
    return staff_topic(venue), encode(alert)


def _move_queued(session: Session, run: AutomationRun, *, status: RunStatus,
                 detail: str | None, sent_at: datetime | None = None) -> bool:
    """Move a run out of the queue if it is still queued; whether this call moved it.

    Conditional, so that of two workers acting on one queued command (both hearing its
    device come back, or one sending while the guest withdraws consent) only one does.
    """
    return runs.move_queued(session=session, run_id=run.id, status=status, detail=detail,
                            sent_at=sent_at)


def release(session: Session, *, venue: str, device_id: str, now: datetime,
            ttl: timedelta) -> list[tuple[str, bytes]]:
    """The messages to publish now that ``device_id`` is online; marks its queue done."""
    queued = runs.queued_for_device(session=session, device_id=device_id)
    messages: list[tuple[str, bytes]] = []
    for run in queued:
        stale = f"{device_id} was offline longer than {ttl}" if now - run.created_at > ttl \
            else unwanted(session, run, now)
        expired = stale is not None
        if not _move_queued(session, run, status=RunStatus.EXPIRED if expired
                            else RunStatus.SENT, sent_at=None if expired else now,
                            detail=stale):
            continue
        session.refresh(run)
        if not expired:
            messages.append(command_message(venue, run, issued_at=run.created_at))
        elif now - run.created_at > ttl:  # staff may want to look at the device
            messages.append(expired_alert(venue, run, device_id=device_id, now=now))
    session.flush()
    return messages


def unwanted(session: Session, run: AutomationRun, now: datetime) -> str | None:
    """Why a queued command must not go out any more, or None.

    It was planned with the guest's consent and for their room: by the time the device
    is back the guest may have withdrawn that consent, or left (a greeting with their
    name must not reach the next guest of the room).
    """
    if run.guest_id is None:
        return None
    for purpose in run.purposes:
        consent = privacy_store.consent_of(session=session, guest_id=run.guest_id,
                                           purpose=purpose)
        if consent is None or not consent.granted:
            return f"the guest withdrew consent to {purpose}"
    device = rows.find(session=session, model=Device, key=run.device_id) if run.device_id else None
    if device is not None and device.kind is DeviceKind.WATCH:
        worn = guests.current_wearer(session=session, device_id=device.id)
        if worn is None or worn.guest_id != run.guest_id:
            return f"{device.id} is no longer worn by the guest"
    zone = rows.find(session=session, model=Zone,
                     key=device.zone_id) if device and device.zone_id else None
    if zone is not None and zone.kind is ZoneKind.ROOM:
        stays = guests.room_stays_at(session=session, guest_id=run.guest_id, at=now)
        if not any(zone.id in stay.zone_ids for stay in stays):
            return f"the guest no longer stays in {zone.id}"
    return None


def cancel_for_consent(session: Session, *, guest_id: str, purpose: str) -> int:
    """Expire the guest's queued commands that need a consent just withdrawn (conditional,
    so a command another worker sent meanwhile stays sent)."""
    cancelled = 0
    for run in runs.queued_for_guest(session=session, guest_id=guest_id):
        if purpose not in run.purposes:
            continue
        cancelled += _move_queued(session, run, status=RunStatus.EXPIRED,
                                  detail=f"the guest withdrew consent to {purpose}")
    session.flush()
    return cancelled


def expire_stale(session: Session, *, now: datetime, ttl: timedelta) -> list[tuple[str, bytes]]:
    """Expire the commands that waited longer than ``ttl`` for a device still offline, and
    say so to staff: an appliance that never comes back must not hide its queue."""
    stale = runs.queued_before(session=session, before=now - ttl)
    alerts: list[tuple[str, bytes]] = []
    for run in stale:
        device = rows.find(session=session, model=Device,
                           key=run.device_id) if run.device_id else None
        moved = _move_queued(session, run, status=RunStatus.EXPIRED,
                             detail=f"{run.device_id} was offline longer than {ttl}")
        if moved and device is not None:
            alerts.append(expired_alert(device.venue_id, run, device_id=device.id, now=now))
    session.flush()
    return alerts
