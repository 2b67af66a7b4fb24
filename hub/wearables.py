"""Pairings of wearables (watches) with the guests who wear them, and whose readings are whose.

A pairing is a :class:`~hub.models.Wearable` row. Pairing a watch to someone else closes
the open pairing and opens another; unpairing closes it. Closed pairings stay: a reading
is its wearer's if it was received within a pairing's window, ``[paired_at, unpaired_at)``
for a closed pairing and from ``paired_at`` on for the open one (nothing is received
after now, and no later pairing exists while it is open). Windows of one device never
overlap, so a reading belongs to one guest at most.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

import sqlalchemy as sa
from sqlalchemy.orm.attributes import set_committed_value
from sqlmodel import Session, col, select

from hub.models import Telemetry, Wearable
from hub.store import errors

current_wearer = Wearable.current_wearer  # (session, device_id) -> Wearable | None


def pairings_of(session: Session, *, guest_id: str) -> list[Wearable]:
    """Every pairing of the guest, open and closed, oldest first."""
    return list(session.exec(select(Wearable).where(Wearable.guest_id == guest_id)
                             .order_by(col(Wearable.paired_at), col(Wearable.id))).all())


def pair(session: Session, *, device_id: str, guest_id: str, now: datetime) -> Wearable:
    """Make ``guest_id`` the wearer of ``device_id`` from ``now``; the open pairing when it
    is theirs already. Conflict when another worker paired the device meanwhile."""
    current = current_wearer(session, device_id)
    if current is not None and current.guest_id == guest_id:
        return current
    if current is not None:
        _close(session, current, now)
    # Never within an earlier pairing's window: each reading has one wearer at most.
    last = _last_unpaired_at(session, device_id)
    row = Wearable(device_id=device_id, guest_id=guest_id,
                   paired_at=max(now, last) if last else now)
    session.add(row)
    try:
        with session.begin_nested():
            session.flush()
    except sa.exc.IntegrityError as exc:
        raise errors.Conflict(f"device {device_id!r} was paired meanwhile; try again") from exc
    return row


def unpair(session: Session, *, device_id: str, now: datetime) -> Wearable | None:
    """Close the open pairing of ``device_id``; it, or None when nobody wears the device."""
    current = current_wearer(session, device_id)
    if current is not None:
        _close(session, current, now)
    return current


def readings_clause(pairings: Sequence[Wearable]) -> sa.ColumnElement[bool]:
    """A condition on Telemetry: received from a pairing's device within its window."""
    windows = []
    for p in pairings:
        window = [col(Telemetry.device_id) == p.device_id,
                  col(Telemetry.received_at) >= p.paired_at]
        if p.unpaired_at is not None:
            window.append(col(Telemetry.received_at) < p.unpaired_at)
        windows.append(sa.and_(*window))
    return sa.or_(*windows) if windows else sa.false()


def readings_of(session: Session, pairings: Sequence[Wearable]) -> list[Telemetry]:
    """What the devices reported within the pairings' windows, in the order received."""
    if not pairings:
        return []
    return list(session.exec(select(Telemetry).where(readings_clause(pairings))
                             .order_by(col(Telemetry.id))).all())


def delete_readings(session: Session, pairings: Sequence[Wearable]) -> int:
    """Delete what the devices reported within the pairings' windows; how many went."""
    if not pairings:
        return 0
    gone = session.execute(sa.delete(Telemetry).where(readings_clause(pairings))
                           .execution_options(synchronize_session=False))
    return int(gone.rowcount)  # type: ignore[attr-defined]


def _close(session: Session, row: Wearable, now: datetime) -> None:
    # Conditional, so two workers never both close (and both reopen) one pairing.
    end = max(now, row.paired_at)  # a worker whose clock lags never ends it before it began
    closed = session.execute(sa.update(Wearable).where(
        col(Wearable.id) == row.id, col(Wearable.unpaired_at).is_(None))
        .values(unpaired_at=end).execution_options(synchronize_session=False))
    if closed.rowcount != 1:  # type: ignore[attr-defined]
        raise errors.Conflict(f"device {row.device_id!r} was unpaired meanwhile; try again")
    set_committed_value(row, "unpaired_at", end)


def _last_unpaired_at(session: Session, device_id: str) -> datetime | None:
    return session.exec(select(sa.func.max(Wearable.unpaired_at))
                        .where(Wearable.device_id == device_id)).one()
