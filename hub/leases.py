"""Fleet-wide background jobs: a database lease per job name, so each period one hub
process of however many runs it.

Why a lease row and not PostgreSQL advisory locks: the row works the same on SQLite and
PostgreSQL (no second code path to keep right), it needs no connection held for the
job's whole run (an advisory lock dies with its session, and a pooler in transaction
mode hands sessions around), and it says in the database who ran what last and until
when. A lease is taken by a conditional UPDATE (``expires_at <= now``) in one
transaction: PostgreSQL re-checks the condition on the row after a concurrent UPDATE
commits, and SQLite serialises writers, so of two racing processes only one sees a
row changed. The first take of a job is an INSERT whose primary key refuses the
second. Nobody renews early, not even the holder: a job runs at most once per lease
length, fleet-wide, and a process that dies holding it is replaced once it expires.

Times are the database's (PostgreSQL's ``now()``): workers on several machines agree on
when a lease expires whatever their own clocks say. SQLite is one machine's file, so
there the process clock is that machine's clock.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from datetime import datetime, timedelta

from sqlalchemy.engine import Engine
from sqlalchemy.exc import IntegrityError, OperationalError

from hub.models import utcnow
from hub.store import leases

log = logging.getLogger(__name__)


def take(engine: Engine, job: str, holder: str, ttl: timedelta,
         now: datetime | None = None) -> bool:
    """Take the lease of ``job`` for ``ttl`` if nobody holds it now; whether we did.

    ``now`` is the database's clock unless given (tests)."""
    try:
        with engine.begin() as conn:
            now = now or leases.database_now(connection=conn) or utcnow()
            expires_at = now + ttl
            if leases.take_expired(connection=conn, job=job, holder=holder, taken_at=now,
                                   expires_at=expires_at):
                return True
            if leases.exists(connection=conn, job=job):
                return False  # held, and not expired
        with engine.begin() as conn:
            leases.insert_lease(connection=conn, job=job, holder=holder, taken_at=now,
                                expires_at=expires_at)
        return True
    except IntegrityError:  # another process inserted it first
        return False
    except OperationalError:  # the database is away or busy: skip this period, not crash
        log.warning("could not take the lease of %s", job, exc_info=True)
        return False


class Gate:
    """``gate(job, period)``: whether this process runs ``job`` this period (it took the
    job's lease for ``period``)."""

    def __init__(self, engine: Engine, holder: str,
                 clock: Callable[[], datetime] | None = None) -> None:
        self.engine, self.holder, self.clock = engine, holder, clock  # None: the database's

    def __call__(self, job: str, period: timedelta) -> bool:
        return take(self.engine, job, self.holder, period,
                    None if self.clock is None else self.clock())
