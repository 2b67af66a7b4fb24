"""What happened: the journey (every decision), telemetry, dead letters, the audit trail."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime, timedelta
from typing import Any

import sqlalchemy as sa
from pydantic_core import to_jsonable_python
from sqlmodel import Session, col, select

from hub.models import AuditEntry, DeadLetter, Event, Telemetry
from hub.store.rows import table_of

# The hot path's statements, built once: building a statement costs several times what
# executing it does (its values are bound at execution).
_events = table_of(Event)
_P = sa.bindparam
_FIND_EVENT = sa.select(_events.c.id).where(_events.c.device_id == _P("device_id"),
                                            _events.c.event_id == _P("event_id"))
_INSERT_EVENT = sa.insert(_events)


def event_columns(**given: Any) -> dict[str, Any]:
    """An Event row's columns for :func:`insert_event`, those not given None."""
    return {**_EVENT_NULLS, **given}


_EVENT_NULLS: dict[str, Any] = {name: None for name in Event.model_fields if name != "id"}


def insert_event(*, session: Session, values: dict[str, Any]) -> int:
    """Record a decision (the columns of an Event, without ``id``) with one INSERT, outside
    the unit of work: every tap pays for this line, and building an Event object costs
    more than the statement. Returns the row's id; IntegrityError when the event id is
    taken."""
    key = session.connection().execute(_INSERT_EVENT, values).inserted_primary_key
    assert key is not None  # an INSERT of one row
    return int(key[0])


def find_event(*, session: Session, device_id: str, event_id: str) -> Event | None:
    """A tap already recorded under this (device, event id): the idempotency key."""
    # Nearly every event is new: ask for its id alone first, without the ORM's machinery.
    found = session.connection().execute(_FIND_EVENT, {"device_id": device_id,
                                                       "event_id": event_id}).first()
    if found is None:
        return None
    return session.get(Event, found[0])


def record_telemetry(*, session: Session, row: Telemetry) -> bool:
    """Store a reading once; False when its (device, event id) was recorded before."""
    try:
        with session.begin_nested():
            session.add(row)
            session.flush()
    except sa.exc.IntegrityError:
        return False
    return True


def recorded_report(*, session: Session, device_id: str,
                    event_id: str) -> tuple[str, str | None] | None:
    """The (kind, content digest) of the report recorded under this (device, event id)."""
    found = session.exec(select(Telemetry.kind, Telemetry.content_digest).where(
        Telemetry.device_id == device_id, Telemetry.event_id == event_id)).first()
    return None if found is None else (found[0], found[1])


# The audit action of an event id a device used again for something else.
EVENT_ID_CONFLICT = "device.event_id_conflict"


def record_event_id_conflict(*, session: Session, device_id: str, event_id: str,
                             detail: dict[str, Any], now: datetime) -> bool:
    """Audit a device's reuse of an event id for other content, once per (device, event
    id): a device repeating the conflict (QoS 1 redelivers it too) adds nothing, so the
    entries stay as few as the events recorded. False when it was audited before."""
    target = f"event:{device_id}/{event_id}"
    seen = session.exec(select(AuditEntry.id).where(AuditEntry.action == EVENT_ID_CONFLICT,
                                                    AuditEntry.target == target)).first()
    if seen is not None:
        return False
    record_audit(session=session, actor=f"device:{device_id}", roles=[], action=EVENT_ID_CONFLICT,
                 target=target, detail=detail, source="mqtt", at=now)
    return True


def list_events(
    *, session: Session, guest_id: str | None = None, device_id: str | None = None,
    zone_id: str | None = None, outcome: str | None = None, reason: str | None = None,
    since: datetime | None = None, until: datetime | None = None,
    before_id: int | None = None, limit: int = 50,
) -> list[Event]:
    """The journey, newest first, with keyset pagination on the event's row id."""
    stmt = select(Event)
    for column, value in ((Event.guest_id, guest_id), (Event.device_id, device_id),
                          (Event.zone_id, zone_id), (Event.outcome, outcome),
                          (Event.reason, reason)):
        if value is not None:
            stmt = stmt.where(column == value)
    if since is not None:
        stmt = stmt.where(col(Event.received_at) >= since)
    if until is not None:
        stmt = stmt.where(col(Event.received_at) < until)
    if before_id is not None:
        stmt = stmt.where(col(Event.id) < before_id)
    return list(session.exec(stmt.order_by(col(Event.id).desc()).limit(limit)).all())


def record_dead_letter(*, session: Session, topic: str, payload: bytes, error: str,
                       received_at: datetime, now: datetime, worker: str,
                       keep: int = 10_000) -> DeadLetter:
    """Keep a message the hub could not process, for staff to look at; only the newest
    ``keep`` are kept, so a flood of poison cannot fill the disk."""
    row = DeadLetter(topic=topic[:1024], payload=payload, error=error[:500],
                     received_at=received_at, recorded_at=now, worker=worker[:128])
    session.add(row)
    session.flush()
    if row.id is not None and row.id % 100 == 0:  # now and then, not at every letter
        session.execute(sa.delete(DeadLetter).where(col(DeadLetter.id) <= row.id - keep)
                        .execution_options(synchronize_session=False))
    return row


def list_dead_letters(*, session: Session, before_id: int | None = None,
                      limit: int = 50) -> list[DeadLetter]:
    """Dead letters, newest first, with keyset pagination on the row id."""
    stmt = select(DeadLetter)
    if before_id is not None:
        stmt = stmt.where(col(DeadLetter.id) < before_id)
    return list(session.exec(stmt.order_by(col(DeadLetter.id).desc()).limit(limit)).all())


def record_audit(*, session: Session, actor: str, roles: Sequence[str], action: str,
                 target: str, detail: dict[str, Any], source: str, at: datetime) -> AuditEntry:
    """Append one audit entry in the caller's transaction: the only writer of the table."""
    entry = AuditEntry(at=at, actor=actor[:80], roles=sorted(roles), action=action,
                       target=target[:200], detail=to_jsonable_python(detail),
                       source=source[:64])
    session.add(entry)
    session.flush()
    return entry


def list_audit(*, session: Session, actor: str | None, action: str | None, target: str | None,
               limit: int, offset: int) -> list[AuditEntry]:
    """Audit entries, newest first, filtered by exact actor, action and target."""
    stmt = select(AuditEntry)
    for column, value in ((AuditEntry.actor, actor), (AuditEntry.action, action),
                          (AuditEntry.target, target)):
        if value is not None:
            stmt = stmt.where(column == value)
    stmt = stmt.order_by(col(AuditEntry.id).desc()).offset(offset).limit(limit)
    return list(session.exec(stmt).all())


# ----------------------------------------------------------------- retention


def purge_telemetry(*, session: Session, now: datetime, days: int,
                    limit: int | None = None) -> int:
    """Delete telemetry received more than ``days`` days before ``now``; how many went.

    ``limit`` bounds one call, so a scheduled purge holds the write lock briefly and
    taps keep being decided meanwhile (call again until it returns less than ``limit``).
    """
    if days < 0:
        raise ValueError("days must be 0 or more")
    old = select(Telemetry.id).where(col(Telemetry.received_at) < now - timedelta(days=days))
    if limit is not None:
        old = old.order_by(col(Telemetry.id)).limit(limit)
    gone = session.execute(sa.delete(Telemetry).where(col(Telemetry.id).in_(old))
                           .execution_options(synchronize_session=False))
    return int(gone.rowcount)  # type: ignore[attr-defined]
