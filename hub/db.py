"""The database engine: SQLite by default, PostgreSQL by configuration."""

from __future__ import annotations

import os
import random
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import datetime
from pathlib import Path
from typing import Any, TypeVar

import sqlalchemy as sa
from sqlalchemy.engine import Engine
from sqlmodel import Session

from hub import (
    migrate,
    models,  # noqa: F401  (registers the tables on SQLModel.metadata)
)
from hub.store import registry  # every process bumps the registry's version on changes to it

T = TypeVar("T")

# SQLSTATEs of a transaction PostgreSQL gave up so that another could go on: a
# serialization failure and a deadlock. Nothing was wrong with the work: do it again.
_CONFLICTS = frozenset({"40001", "40P01"})

# Tries of a piece of work that keeps meeting conflicts, and the first pause between
# them (doubled each time, with jitter so two hubs that collided do not collide again).
CONFLICT_TRIES, CONFLICT_PAUSE = 5, 0.02


def create_db_engine(url: str, *, sqlite_synchronous: str = "FULL",
                     read_only: bool = False) -> Engine:
    """Create the engine; for SQLite, WAL mode and a busy timeout let threads share the file.

    ``read_only`` makes an engine for readers that must not hold up writers: on SQLite
    its transactions begin deferred (in WAL mode a reader never takes the write lock)
    and refuse to write.
    """
    if url.startswith("sqlite"):
        if not read_only:
            _private(sa.engine.make_url(url).database)
        engine = sa.create_engine(
            url, connect_args={"check_same_thread": False, "timeout": 30}, pool_size=10
        )

        @sa.event.listens_for(engine, "connect")
        def _pragmas(dbapi_conn: Any, _record: Any) -> None:
            # Let the driver not open transactions by itself: we issue BEGIN IMMEDIATE
            # so that a writer takes the lock before it reads the state it decides on.
            dbapi_conn.isolation_level = None
            cur = dbapi_conn.cursor()
            cur.execute("PRAGMA journal_mode=WAL")
            cur.execute(f"PRAGMA synchronous={sqlite_synchronous}")
            cur.execute("PRAGMA foreign_keys=ON")
            cur.execute("PRAGMA busy_timeout=30000")
            if read_only:
                cur.execute("PRAGMA query_only=ON")
            cur.close()

        @sa.event.listens_for(engine, "begin")
        def _begin(conn: sa.Connection) -> None:
            conn.exec_driver_sql("BEGIN" if read_only else "BEGIN IMMEDIATE")

        return engine
    return sa.create_engine(url, pool_size=10, max_overflow=20, pool_pre_ping=True)


def _private(database: str | None) -> None:
    """Make a SQLite database file (and its WAL files) readable by its owner only.

    It holds argon2 hashes, guests' emails and the ledger. Created 0600 before SQLite
    opens it; SQLite gives the -wal and -shm files the database file's mode.
    """
    if not database or database == ":memory:" or database.startswith("file:"):
        return
    path = Path(database)
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        os.close(os.open(path, os.O_WRONLY | os.O_CREAT, 0o600))
    for each in (path, path.with_name(path.name + "-wal"), path.with_name(path.name + "-shm")):
        try:
            if each.stat().st_mode & 0o077:
                each.chmod(0o600)
        except FileNotFoundError:
            pass


def init_db(engine: Engine, *, upgrade: bool = True) -> None:
    """Bring the database to this hub's schema (hub.migrate.prepare: create an empty one,
    upgrade an older one unless ``upgrade`` is false, else SchemaError) and its one
    registry version row."""
    migrate.prepare(engine, upgrade=upgrade)
    with Session(engine) as session:
        registry.ensure_version_row(session)
        session.commit()


@contextmanager
def session_scope(engine: Engine) -> Iterator[Session]:
    """A session whose transaction commits on success and rolls back on error."""
    with Session(engine, expire_on_commit=False) as session:
        try:
            yield session
            session.commit()
        except BaseException:
            session.rollback()
            raise


class Contended(Exception):
    """Work the database kept aborting for deadlocks or serialization failures."""

    def __init__(self, tries: int) -> None:
        super().__init__(f"the ledger was busy ({tries} tries met a deadlock or a "
                         "serialization failure); nothing was done: try again")
        self.tries = tries

    def __repr__(self) -> str:
        return f"Contended(tries={self.tries})"


def is_conflict(exc: BaseException) -> bool:
    """Did the database abort this work for a serialization failure or a deadlock?"""
    orig = getattr(exc, "orig", None)
    return isinstance(exc, sa.exc.DBAPIError) and getattr(orig, "sqlstate", None) in _CONFLICTS


def database_clock(engine: Engine, fallback: Callable[[], datetime]) -> Callable[[], datetime]:
    """A clock every process of a fleet agrees on: PostgreSQL's ``clock_timestamp()``.

    What several machines compare (heartbeats, the retention cut-off) must not follow one
    machine's clock, which may drift after its start. SQLite is one machine's file:
    ``fallback`` (the process clock) is that machine's clock.
    """
    if engine.dialect.name != "postgresql":
        return fallback

    def now() -> datetime:
        with engine.connect() as conn:
            value = conn.exec_driver_sql("SELECT clock_timestamp()").scalar_one()
        assert isinstance(value, datetime)
        return value
    return now


class ClockSkew(RuntimeError):
    """This machine's clock disagrees with the database's (hub.db.check_clock)."""

    def __init__(self, skew: float, limit: float) -> None:
        super().__init__(
            f"this machine's clock is {abs(skew):.0f} s {'ahead of' if skew > 0 else 'behind'} "
            f"the database's (more than {limit:g} s): fix its time (NTP) first. A hub on a "
            f"wrong clock would judge tickets, stays, leases and phone-key rotation by it")
        self.skew, self.limit = skew, limit


def check_clock(engine: Engine, now: Callable[[], datetime], limit: float) -> None:
    """Refuse (ClockSkew) to run on a clock more than ``limit`` seconds off PostgreSQL's.

    Several machines share the database: one whose clock runs a year ahead would take
    every fleet job's lease for a year and retire the phone-key signing key in use.
    SQLite is one machine's file, so there is no other clock to compare with.
    """
    if engine.dialect.name != "postgresql":
        return
    before = now()
    theirs = database_clock(engine, now)()
    ours = before + (now() - before) / 2
    skew = (ours - theirs).total_seconds()
    if abs(skew) > limit:
        raise ClockSkew(skew, limit)


def database_away(exc: BaseException) -> bool:
    """Is this the database being away (try again later), not the work's fault?"""
    if isinstance(exc, sa.exc.DBAPIError) and exc.connection_invalidated:
        return True
    return isinstance(exc, sa.exc.OperationalError | sa.exc.InterfaceError
                      | sa.exc.TimeoutError | sa.exc.DisconnectionError)


def brief(exc: BaseException) -> str:
    """The driver's first line of a database error: no SQL, no parameters (which carry
    guests' ids and balances into the log), no link."""
    orig = getattr(exc, "orig", None) or exc
    lines = str(orig).strip().splitlines()
    return f"{type(orig).__name__}: {lines[0] if lines else ''}".rstrip(": ")


def conflict_pause(attempt: int) -> float:
    """Seconds to wait before try ``attempt`` (1, 2, ...) after a conflict: jittered."""
    return CONFLICT_PAUSE * 2.0 ** (attempt - 1) * (0.5 + random.random())


def retry_conflicts(session: Session, work: Callable[[], T], *, tries: int = CONFLICT_TRIES,
                    sleep: Callable[[float], None] = time.sleep) -> T:
    """Run ``work`` in a savepoint; when the database aborts it for a deadlock or a
    serialization failure, roll back to the savepoint (its locks go with it) and run it
    again, at most ``tries`` times, after a jittered pause; then Contended. Other errors
    pass through."""
    for attempt in range(1, tries + 1):
        try:
            with session.begin_nested():
                return work()
        except sa.exc.DBAPIError as exc:
            if not is_conflict(exc):
                raise
            if attempt == tries:
                raise Contended(tries) from exc
            sleep(conflict_pause(attempt))
    raise AssertionError("unreachable")  # pragma: no cover
