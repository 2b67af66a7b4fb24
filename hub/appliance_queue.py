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

import sqlalchemy as sa
from sqlmodel import Session, col, select

from devices.contract import Command, encode
from devices.topics import Channel, device_topic, staff_topic
from hub.models import AutomationRun, RunStatus
from hub.notices import staff_alert


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


def release(session: Session, *, venue: str, device_id: str, now: datetime,
            ttl: timedelta) -> list[tuple[str, bytes]]:
    """The messages to publish now that ``device_id`` is online; marks its queue done."""
    queued = session.exec(select(AutomationRun).where(
        AutomationRun.device_id == device_id, AutomationRun.status == RunStatus.QUEUED)
        .order_by(col(AutomationRun.id))).all()
    messages: list[tuple[str, bytes]] = []
    for run in queued:
        expired = now - run.created_at > ttl
        # Conditional, so that two workers hearing the device come back (its status and a
        # heartbeat, say) never both send one command: only the one that moves it does.
        moved = session.execute(
            sa.update(AutomationRun)
            .where(col(AutomationRun.id) == run.id,
                   col(AutomationRun.status) == RunStatus.QUEUED)
            .values(status=RunStatus.EXPIRED if expired else RunStatus.SENT,
                    sent_at=None if expired else now,
                    detail=f"{device_id} was offline longer than {ttl}" if expired else None)
            .execution_options(synchronize_session=False))
        if moved.rowcount != 1:  # type: ignore[attr-defined]
            continue
        session.refresh(run)
        if expired:
            messages.append(expired_alert(venue, run, device_id=device_id, now=now))
        else:
            messages.append(command_message(venue, run, issued_at=run.created_at))
    session.flush()
    return messages
