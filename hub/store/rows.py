"""Any row by key, pages of rows, whole-row inserts and updates, and the helpers the
other store modules build on."""

from __future__ import annotations

import functools
from collections.abc import Sequence
from typing import Any, TypeVar, cast

import sqlalchemy as sa
from sqlalchemy.engine import Engine
from sqlmodel import Session, SQLModel, select

from hub.models import Device, Venue
from hub.store.errors import Conflict, InvalidReference, NotFound

T = TypeVar("T", bound=SQLModel)
D = TypeVar("D", Device, Venue)  # what is deleted by marking, not removed


def table_of(model: type[SQLModel]) -> sa.Table:
    """A model's table, for the few hot statements that skip the ORM's machinery."""
    return cast(sa.Table, model.__table__)  # type: ignore[attr-defined]


def require(*, session: Session, model: type[T], key: str | None, field: str) -> T | None:
    """The row ``key`` names, None for None; InvalidReference when it does not exist."""
    if key is None:
        return None
    row = session.get(model, key)
    if row is None:
        raise InvalidReference(f"{field}: {model.__name__.lower()} {key!r} does not exist")
    if getattr(row, "deleted_at", None) is not None:  # a deleted venue or device
        raise InvalidReference(f"{field}: {model.__name__.lower()} {key!r} was deleted")
    return row


def get(*, session: Session, model: type[T], key: str | int) -> T:
    """Fetch by primary key or raise NotFound."""
    row = session.get(model, key)
    if row is None:
        raise NotFound(model.__name__.lower(), str(key))
    return row


def live(*, session: Session, model: type[D], key: str) -> D:
    """A device or venue by id, NotFound once deleted (its row stays for the history)."""
    row = get(session=session, model=model, key=key)
    if row.deleted_at is not None:
        raise NotFound(f"{model.__name__.lower()} (deleted)", key)
    return row


def add(*, session: Session, row: T) -> T:
    """Insert a row, turning a unique-constraint violation into Conflict."""
    session.add(row)
    try:
        with session.begin_nested():
            session.flush()
    except sa.exc.IntegrityError as exc:
        raise Conflict(f"{type(row).__name__.lower()} conflicts with an existing one") from exc
    return row


def update(*, session: Session, row: T, changes: dict[str, Any]) -> T:
    """Apply a dict of field changes to a row."""
    for name, value in changes.items():
        setattr(row, name, value)
    session.add(row)
    session.flush()
    return row


def page(
    *, session: Session, model: type[T], filters: Sequence[Any] = (), limit: int, offset: int
) -> list[T]:
    """A page of rows ordered by primary key."""
    stmt = select(model).where(*filters).offset(offset).limit(limit)
    pk = sa.inspect(model).primary_key[0]
    return list(session.exec(stmt.order_by(pk)).all())


def insert_ignoring_duplicates(*, session: Session, table: type[SQLModel], **values: Any) -> None:
    """INSERT a row unless its key exists: one statement, no savepoint, on either engine."""
    session.connection().execute(_insert_ignoring(session.get_bind().dialect.name, table),
                                 values)


@functools.cache
def _insert_ignoring(dialect: str, model: type[SQLModel]) -> sa.Insert:
    if dialect == "postgresql":
        from sqlalchemy.dialects.postgresql import insert as pg_insert
        return pg_insert(table_of(model)).on_conflict_do_nothing()
    from sqlalchemy.dialects.sqlite import insert as sqlite_insert
    return sqlite_insert(table_of(model)).on_conflict_do_nothing()



def find(*, session: Session, model: type[T], key: Any) -> T | None:
    """The row of this primary key (a tuple for a composite one), or None."""
    return session.get(model, key)


def ids_like(*, session: Session, model: type[SQLModel], pattern: str) -> set[str]:
    """The primary keys of ``model`` matching the LIKE ``pattern`` (bulk seeding)."""
    table = table_of(model)
    return {row[0] for row in session.connection().execute(
        sa.select(table.c.id).where(table.c.id.like(pattern)))}


def insert_many(*, session: Session, model: type[SQLModel], values: list[dict[str, Any]]) -> None:
    """One bulk INSERT of many rows, outside the unit of work (and its registry bump)."""
    session.connection().execute(sa.insert(table_of(model)), values)


def database_answers(*, engine: Engine) -> bool:
    """Whether the database takes a connection and answers a trivial statement."""
    try:
        with engine.connect() as conn:
            conn.exec_driver_sql("SELECT 1")
        return True
    except Exception:
        return False
