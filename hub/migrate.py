"""The schema's versions: bring a database to this hub's schema, or say why not and what to run.

Alembic's scripts live in hub/migrations (packaged with the hub); the configuration is built
here, in code, and every command runs on a connection this module opened, inside one
transaction that holds the migration lock: on PostgreSQL an advisory lock, on SQLite the
write lock (BEGIN IMMEDIATE). Two hubs starting at once upgrade once; a failed upgrade
leaves the database as it was.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from enum import StrEnum
from functools import cache
from pathlib import Path
from typing import Any, Literal

import sqlalchemy as sa
from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from alembic.util import CommandError
from sqlalchemy.engine import Connection, Engine
from sqlalchemy.pool import StaticPool
from sqlmodel import SQLModel
from sqlmodel.sql.sqltypes import AutoString

from hub import models  # also registers the tables on SQLModel.metadata

SCRIPTS = Path(__file__).with_name("migrations")
VERSION_TABLE = "alembic_version"
# The first revision: the schema of main at 6722e8f, the last hub that only had create_all.
BASELINE = "6722e8f0a001"
# PostgreSQL advisory lock key of schema changes (any constant no other code uses).
_LOCK_KEY = 0x6875622D6462  # "hub-db"

# What autogenerate compares, in env.py and in the tests: column types and server defaults too.
COMPARE: dict[str, Any] = {"compare_type": True, "compare_server_default": True}

log = logging.getLogger(__name__)
# Alembic announces its dialect on every connection it inspects; hub.migrate logs what
# changed instead.
logging.getLogger("alembic.runtime.migration").setLevel(logging.WARNING)


class SchemaError(Exception):
    """A database this hub will not run on as it is; the message says what to do."""


class State(StrEnum):
    EMPTY = "empty"  # no tables yet
    CURRENT = "current"  # at this hub's head revision
    BEHIND = "behind"  # at an older revision this hub has the scripts for
    UNKNOWN = "unknown"  # at a revision this hub has no script for (a newer hub's)
    UNVERSIONED = "unversioned"  # tables but no alembic_version: create_all of an older hub


@dataclass(frozen=True)
class Status:
    """Where a database's schema stands against this hub's scripts."""

    state: State
    revision: str | None  # the database's, as alembic_version says
    head: str  # this hub's


@dataclass(frozen=True)
class Upgraded:
    """What ``upgrade`` did: from which revision, whether it stamped an unversioned
    database first (and as which revision), and the revision it ended at."""

    before: Status
    stamped: str | None
    after: str


def config(connection: Connection | None = None) -> Config:
    """Alembic's configuration for the packaged scripts, on ``connection`` (env.py's)."""
    cfg = Config()
    cfg.set_main_option("script_location", str(SCRIPTS))
    cfg.set_main_option("path_separator", "os")  # version_locations split by os.pathsep
    cfg.attributes["connection"] = connection
    return cfg


@cache
def scripts() -> ScriptDirectory:
    """The revision scripts, read once per process."""
    return ScriptDirectory.from_config(config())


def head() -> str:
    """This hub's schema revision."""
    found = scripts().get_current_head()
    if found is None:  # pragma: no cover - the package always ships its scripts
        raise SchemaError(f"no migration scripts in {SCRIPTS}")
    return found


def status(engine: Engine) -> Status:
    """Where ``engine``'s database stands (reads only)."""
    with engine.connect() as conn:
        return _status(conn)


def prepare(engine: Engine, *, upgrade: bool = True) -> Status:
    """Make the database's schema this hub's, as every start does: create an empty one at
    head (create_all, then stamp: the tests prove it equals running every migration),
    upgrade an older one in place (unless ``upgrade`` is false), or refuse with
    SchemaError. Returns the status it found."""
    found = status(engine)
    if found.state is State.CURRENT:  # nearly every start: no lock, no transaction
        return found
    with _migrating(engine) as conn:
        found = _status(conn)  # again, under the lock: another hub may have done it
        if found.state is State.EMPTY:
            SQLModel.metadata.create_all(conn)
            MigrationContext.configure(conn).stamp(scripts(), "head")
        elif found.state is State.BEHIND and upgrade:
            _upgrade(conn, found.revision)
        elif found.state is not State.CURRENT:
            raise SchemaError(refusal(found))
    return found


def upgrade(engine: Engine) -> Upgraded:
    """``hub db upgrade``: run every migration the database lacks. An empty database gets
    every migration from the first; one with tables but no version (made by create_all of
    an older hub) is stamped first as the revision whose tables and columns it has
    exactly, and refused when it has none's."""
    with _migrating(engine) as conn:
        found = _status(conn)
        stamped = None
        if found.state is State.UNKNOWN:
            raise SchemaError(refusal(found))
        if found.state is State.UNVERSIONED:
            stamped = _recognise(conn)
            MigrationContext.configure(conn).stamp(scripts(), stamped)
        if found.state is not State.CURRENT:
            _upgrade(conn, stamped or found.revision)
    return Upgraded(before=found, stamped=stamped, after=head())


def new_revision(message: str, *, into: Path | None = None) -> Path | None:
    """Write a migration for what the models changed since the newest revision (Alembic's
    autogenerate against a scratch SQLite database at head), into the package's versions/
    or ``into``; None when nothing changed."""
    scratch = sa.create_engine("sqlite://", poolclass=StaticPool)
    try:
        with scratch.begin() as conn:
            command.upgrade(config(conn), "head")
            if not differences(conn):
                return None
            cfg = config(conn)
            if into is not None:  # the packaged scripts and the new one's folder
                cfg.set_main_option("version_locations",
                                   os.pathsep.join([str(SCRIPTS / "versions"), str(into)]))
            written = command.revision(cfg, message=message, autogenerate=True,
                                       version_path=None if into is None else str(into))
    finally:
        scratch.dispose()
    assert written is not None and not isinstance(written, list)
    return Path(written.path)


def differences(conn: Connection) -> list[Any]:
    """What autogenerate finds between the database's schema and the models (types and
    server defaults included): empty when a migration would have nothing to do."""
    context = MigrationContext.configure(conn, opts=COMPARE)
    return list(compare_metadata(context, SQLModel.metadata))


def render_item(kind: str, obj: Any, _context: Any) -> str | Literal[False]:
    """Autogenerate writes the hub's column types as SQLAlchemy's own, so a migration
    never imports the models it must outlive."""
    if kind == "type":
        if isinstance(obj, models.UTCDateTime):
            return "sa.DateTime(timezone=True)"
        if isinstance(obj, AutoString):
            return f"sa.String(length={obj.length})" if obj.length else "sa.String()"
    return False


def refusal(found: Status) -> str:
    """Why a hub will not start on this database, and what to run."""
    if found.state is State.UNKNOWN:
        return (f"the database's schema is at revision {found.revision!r}, which this hub does "
                f"not know (its newest is {found.head}): it was upgraded by a newer hub. Run "
                "that hub (or a newer one), or restore a backup taken before the upgrade")
    if found.state is State.UNVERSIONED:
        return ("the database has tables but no schema version (an older hub created it "
                "without migrations): run `hub db upgrade` once, with the same --data-dir or "
                "--database-url, to recognise and upgrade it")
    return (f"the database's schema is at revision {found.revision}, older than this hub's "
            f"{found.head}: run `hub db upgrade` (or start without --no-upgrade)")


# ------------------------------------------------------------------ internals


def _status(conn: Connection) -> Status:
    tables = set(sa.inspect(conn).get_table_names()) - {VERSION_TABLE}
    top = head()
    try:
        revision = MigrationContext.configure(conn).get_current_revision()
    except CommandError:  # several rows in the version table: no version we can stand on
        return Status(state=State.UNKNOWN, revision="several revisions at once", head=top)
    if revision is None:
        state = State.UNVERSIONED if tables else State.EMPTY
    elif revision == top:
        state = State.CURRENT
    elif _known(revision):
        state = State.BEHIND
    else:
        state = State.UNKNOWN
    return Status(state=state, revision=revision, head=top)


def _known(revision: str) -> bool:
    return any(script.revision == revision for script in scripts().walk_revisions())


def _upgrade(conn: Connection, start: str | None) -> None:
    try:
        command.upgrade(config(conn), "head")
    except sa.exc.DBAPIError as exc:  # rolled back with the rest: the database is unchanged
        said = str(exc.orig or exc).strip().splitlines()
        raise SchemaError(
            f"upgrading from revision {start!r} failed ({said[0] if said else 'no reason'}): "
            f"the database's tables are not what that revision says. Nothing was changed; "
            f"restore a backup, or check its version table") from None
    if conn.dialect.name == "sqlite":  # _migrating turned enforcement off for batch mode
        broken = conn.exec_driver_sql("PRAGMA foreign_key_check").fetchall()
        if broken:  # rolled back with the rest
            raise SchemaError(f"the upgrade would break foreign keys: {broken[:5]}")
    log.info("database schema upgraded from %s to %s", start or "nothing", head())


@contextmanager
def _migrating(engine: Engine) -> Iterator[Connection]:
    """A connection in one transaction that holds the migration lock."""
    with engine.connect() as conn:
        sqlite = conn.dialect.name == "sqlite"
        enforced = sqlite and _foreign_keys(conn, None)
        if enforced:
            # Batch mode alters a SQLite table by copying it, dropping the old one and
            # renaming the copy: with foreign keys enforced, dropping a table others point
            # at would fail. Off for the migration (a PRAGMA outside the transaction, where
            # SQLite honours it), checked after an upgrade (_upgrade), on again after.
            _foreign_keys(conn, False)
        try:
            with conn.begin():
                # On SQLite, create_db_engine's BEGIN IMMEDIATE already holds the write lock.
                if not sqlite:
                    conn.execute(sa.text("SELECT pg_advisory_xact_lock(:key)"),
                                 {"key": _LOCK_KEY})
                yield conn
        finally:
            if enforced:
                _foreign_keys(conn, True)


def _foreign_keys(conn: Connection, on: bool | None) -> bool:
    """Set SQLite's foreign_keys (None: only read it) on the driver's connection itself,
    outside any transaction SQLAlchemy would begin; returns the setting."""
    dbapi = conn.connection.driver_connection
    assert dbapi is not None
    if on is not None:
        dbapi.execute(f"PRAGMA foreign_keys={'ON' if on else 'OFF'}")
    return bool(dbapi.execute("PRAGMA foreign_keys").fetchone()[0])


Columns = dict[str, frozenset[str]]


def _columns(conn: Connection) -> Columns:
    inspector = sa.inspect(conn)
    return {table: frozenset(c["name"] for c in inspector.get_columns(table))
            for table in inspector.get_table_names() if table != VERSION_TABLE}


def _columns_at(revision: str) -> Columns:
    """The tables and columns of ``revision``: its migrations run on a scratch database."""
    if revision == head():
        return {table.name: frozenset(table.columns.keys())
                for table in SQLModel.metadata.sorted_tables}
    scratch = sa.create_engine("sqlite://", poolclass=StaticPool)
    try:
        with scratch.begin() as conn:
            command.upgrade(config(conn), revision)
            return _columns(conn)
    finally:
        scratch.dispose()


def _recognise(conn: Connection) -> str:
    """The revision whose tables and columns an unversioned database has exactly; else
    SchemaError naming what differs from the first revision's."""
    have = _columns(conn)
    for script in scripts().walk_revisions():  # newest first
        if _columns_at(script.revision) == have:
            return script.revision
    want = _columns_at(BASELINE)
    missing = sorted(f"{t}.{c}" for t, cols in want.items() for c in cols - have.get(t, set()))
    extra = sorted(f"{t}.{c}" for t, cols in have.items() for c in cols - want.get(t, set()))
    raise SchemaError(
        "the database has tables but no schema version, and they are not the tables of any "
        "schema this hub knows (the oldest is main at 6722e8f). Against that one it lacks "
        f"{_listed(missing)} and has {_listed(extra)} besides. An older hub created it, "
        "before 6722e8f or between two schema versions: restore a backup from a known "
        "version, or start a new database (--database-url, --data-dir)")


def _listed(names: list[str], most: int = 8) -> str:
    if not names:
        return "nothing"
    shown = ", ".join(names[:most])
    return shown + (f" and {len(names) - most} more" if len(names) > most else "")
