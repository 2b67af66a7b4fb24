"""Job leases: which hub process runs a fleet-wide job this period (see hub.leases)."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import func, insert, select, update
from sqlalchemy.engine import Connection

from hub.models import JobLease

_table = JobLease.__table__  # type: ignore[attr-defined]


def database_now(*, connection: Connection) -> datetime | None:
    """PostgreSQL's clock (its transaction's start); None on SQLite, which has no clock
    of its own to share (one machine's file: the process clock is that machine's)."""
    if connection.dialect.name != "postgresql":
        return None
    now = connection.execute(select(func.now())).scalar_one()
    return now if isinstance(now, datetime) else None


def take_expired(*, connection: Connection, job: str, holder: str, taken_at: datetime,
                 expires_at: datetime) -> bool:
    """Take ``job``'s lease if it has expired (a conditional UPDATE); whether we did."""
    changed = connection.execute(update(_table).where(
        _table.c.name == job, _table.c.expires_at <= taken_at).values(
        holder=holder, taken_at=taken_at, expires_at=expires_at))
    return bool(changed.rowcount == 1)


def exists(*, connection: Connection, job: str) -> bool:
    """Whether ``job`` has a lease row at all (held or not)."""
    return connection.execute(select(_table.c.name).where(_table.c.name == job)).first() \
        is not None


def insert_lease(*, connection: Connection, job: str, holder: str, taken_at: datetime,
                 expires_at: datetime) -> None:
    """``job``'s first lease; the primary key refuses a second process's (IntegrityError)."""
    connection.execute(insert(_table).values(name=job, holder=holder, taken_at=taken_at,
                                             expires_at=expires_at))
