"""Pairings of wearables (watches) with the guests who wear them, and whose readings are whose.

A pairing is a :class:`~hub.models.Wearable` row. Pairing a watch to someone else closes
the open pairing and opens another; unpairing closes it. Closed pairings stay: a reading
is its wearer's if it was received within a pairing's window, ``[paired_at, unpaired_at)``
for a closed pairing and from ``paired_at`` on for the open one (nothing is received
after now, and no later pairing exists while it is open). Windows of one device never
overlap, so a reading belongs to one guest at most.
"""

from __future__ import annotations

from datetime import datetime

import sqlalchemy as sa
from sqlalchemy.orm.attributes import set_committed_value
from sqlmodel import Session

from hub.models import Wearable
from hub.store import errors, guests


def pair(session: Session, *, device_id: str, guest_id: str, now: datetime) -> Wearable:
    """Make ``guest_id`` the wearer of ``device_id`` from ``now``; the open pairing when it
    is theirs already. Conflict when another worker paired the device meanwhile."""
    current = guests.current_wearer(session=session, device_id=device_id)
    if current is not None and current.guest_id == guest_id:
        return current
    if current is not None:
        _close(session, current, now)
    # Never within an earlier pairing's window: each reading has one wearer at most.
    last = guests.last_unpaired_at(session=session, device_id=device_id)
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
    current = guests.current_wearer(session=session, device_id=device_id)
    if current is not None:
        _close(session, current, now)
    return current


def _close(session: Session, row: Wearable, now: datetime) -> None:
    # Conditional, so two workers never both close (and both reopen) one pairing.
    end = max(now, row.paired_at)  # a worker whose clock lags never ends it before it began
    if not guests.close_pairing(session=session, pairing_id=row.id, at=end):
        raise errors.Conflict(f"device {row.device_id!r} was unpaired meanwhile; try again")
    set_committed_value(row, "unpaired_at", end)
