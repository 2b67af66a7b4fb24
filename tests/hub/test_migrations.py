"""The schema's migrations, on SQLite and on PostgreSQL: every migration gives exactly the
schema the models create (so a model change without a migration fails here), the first is
main's schema at 6722e8f, and a hub starts only on a schema it knows."""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import sqlalchemy as sa
from alembic import command
from sqlalchemy.engine import Engine
from sqlmodel import Session, SQLModel, select

from hub import migrate
from hub.db import create_db_engine, init_db
from hub.migrate import BASELINE, SchemaError, State
from hub.models import LedgerTransaction, Venue
from hub.store import money
from tests.conftest import fresh_postgres
from tests.utils.schemas import load_old, schema, schema_differences

NewDatabase = Callable[[], Engine]


@pytest.fixture(params=["sqlite", "postgres"])
def new_db(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[NewDatabase]:
    """Make empty databases of the engine under test."""
    engines: list[Engine] = []

    def make() -> Engine:
        if request.param == "sqlite":
            engine = create_db_engine(f"sqlite:///{tmp_path / f'hub-{len(engines)}.db'}")
        else:
            engine = fresh_postgres(request.getfixturevalue("postgres_url"))
        engines.append(engine)
        return engine

    yield make
    for engine in engines:
        engine.dispose()


def version(engine: Engine) -> str | None:
    with engine.connect() as conn:
        if not sa.inspect(conn).has_table(migrate.VERSION_TABLE):
            return None
        found: str = conn.execute(sa.text("SELECT version_num FROM alembic_version")).scalar_one()
        return found


def upgrade_to(engine: Engine, revision: str) -> None:
    with engine.begin() as conn:
        command.upgrade(migrate.config(conn), revision)


# ------------------------------------------------------------- the scripts themselves


def test_every_migration_gives_exactly_the_models_schema(new_db: NewDatabase) -> None:
    """`hub db upgrade` on an empty database runs every migration from the first; a start
    on one creates the models' tables and stamps them: the same schema, to the index."""
    migrated, created = new_db(), new_db()
    done = migrate.upgrade(migrated)
    assert done.before.state is State.EMPTY and done.after == migrate.head()
    init_db(created)
    with migrated.connect() as conn:
        assert migrate.differences(conn) == []
    assert schema_differences(schema(migrated), schema(created)) == []
    assert version(migrated) == version(created) == migrate.head()


def test_a_model_change_without_a_migration_is_a_difference(new_db: NewDatabase) -> None:
    """What the test above guards: a table the models have and no migration makes."""
    engine = new_db()
    migrate.upgrade(engine)
    probe = sa.Table("probe_unmigrated", SQLModel.metadata, sa.Column("id", sa.Integer,
                                                                      primary_key=True))
    try:
        with engine.connect() as conn:
            assert [d[0] for d in migrate.differences(conn)] == ["add_table"]
    finally:
        SQLModel.metadata.remove(probe)


def test_the_first_revision_is_the_schema_main_had_at_6722e8f(new_db: NewDatabase) -> None:
    """Against that commit's own create_all, kept in the fixture's dump."""
    old, first = new_db(), new_db()
    load_old(old)
    upgrade_to(first, BASELINE)
    assert schema_differences(schema(first), schema(old)) == []


def test_the_migrations_go_back_down_to_the_first_revision_and_to_nothing(
        new_db: NewDatabase) -> None:
    engine, first = new_db(), new_db()
    migrate.upgrade(engine)
    upgrade_to(first, BASELINE)
    with engine.begin() as conn:
        command.downgrade(migrate.config(conn), BASELINE)
    assert schema_differences(schema(engine), schema(first)) == []
    with engine.begin() as conn:
        command.downgrade(migrate.config(conn), "base")
    assert schema(engine) == {"tables": {}, "enums": []}


def test_hub_db_revision_writes_a_migration_for_a_model_change(tmp_path: Path) -> None:
    assert migrate.new_revision("nothing", into=tmp_path) is None
    probe = sa.Table("probe_unmigrated", SQLModel.metadata,
                     sa.Column("id", sa.Integer, primary_key=True),
                     sa.Column("at", sa.DateTime(timezone=True)))
    try:
        written = migrate.new_revision("a probe", into=tmp_path)
    finally:
        SQLModel.metadata.remove(probe)
    assert written is not None and written.parent == tmp_path
    text = written.read_text()
    assert "op.create_table(\n        \"probe_unmigrated\"" in text or \
        "op.create_table('probe_unmigrated'" in text
    assert f"down_revision = {migrate.head()!r}" in text
    assert "hub.models" not in text  # the hub's types are written as SQLAlchemy's


# ------------------------------------------------- databases older hubs left behind


def test_a_6722e8f_database_is_recognised_and_upgraded_with_its_data(
        new_db: NewDatabase) -> None:
    engine = new_db()
    load_old(engine)
    with Session(engine) as session:
        transactions = len(session.exec(select(LedgerTransaction)).all())
    assert transactions > 0
    assert migrate.status(engine).state is State.UNVERSIONED
    with pytest.raises(SchemaError, match="run `hub db upgrade`"):
        init_db(engine)  # a start refuses: the tables are not stamped
    assert version(engine) is None

    done = migrate.upgrade(engine)
    assert (done.stamped, done.after) == (BASELINE, migrate.head())
    assert version(engine) == migrate.head()
    reference = new_db()
    init_db(reference)
    assert schema_differences(schema(engine), schema(reference)) == []
    with Session(engine) as session:
        assert len(session.exec(select(LedgerTransaction)).all()) == transactions
        venues = session.exec(select(Venue)).all()
        assert venues and all(v.enabled and v.deleted_at is None for v in venues)
        assert money.verify(session=session) == []
    init_db(engine)  # and now a start goes on


def test_a_database_of_the_models_without_a_version_is_stamped_as_the_newest(
        new_db: NewDatabase) -> None:
    """As main's create_all made it just before migrations came."""
    engine = new_db()
    SQLModel.metadata.create_all(engine)
    done = migrate.upgrade(engine)
    assert (done.before.state, done.stamped) == (State.UNVERSIONED, migrate.head())
    assert version(engine) == migrate.head()


def test_an_unversioned_database_of_no_known_schema_is_refused_and_left_alone(
        new_db: NewDatabase) -> None:
    engine = new_db()
    load_old(engine)
    with engine.begin() as conn:  # as a hub between two schema versions might have left it
        conn.execute(sa.text("ALTER TABLE venue ADD COLUMN folio_credit_limit BIGINT"))
    with pytest.raises(SchemaError, match=r"has venue\.folio_credit_limit besides"):
        migrate.upgrade(engine)
    assert version(engine) is None
    assert migrate.status(engine).state is State.UNVERSIONED


# ------------------------------------------------------------------ at every start


def test_a_start_upgrades_an_older_schema_unless_told_not_to(new_db: NewDatabase) -> None:
    engine = new_db()
    upgrade_to(engine, BASELINE)
    with pytest.raises(SchemaError, match=r"run `hub db upgrade` \(or start without "
                                          r"--no-upgrade\)"):
        init_db(engine, upgrade=False)
    assert version(engine) == BASELINE
    assert migrate.prepare(engine).state is State.BEHIND
    assert migrate.status(engine).state is State.CURRENT
    if engine.dialect.name == "sqlite":  # batch mode needed them off: the pool gets them back
        with engine.connect() as conn:
            assert conn.exec_driver_sql("PRAGMA foreign_keys").scalar_one() == 1


def test_a_schema_of_a_newer_hub_is_refused(new_db: NewDatabase) -> None:
    engine = new_db()
    init_db(engine)
    with engine.begin() as conn:
        conn.execute(sa.text("UPDATE alembic_version SET version_num = 'f00dfeed0999'"))
    for attempt in (init_db, migrate.upgrade):
        with pytest.raises(SchemaError, match="revision 'f00dfeed0999', which this hub does "
                                              "not know"):
            attempt(engine)
    assert version(engine) == "f00dfeed0999"


def test_a_version_table_that_lies_is_refused_and_nothing_changes(new_db: NewDatabase) -> None:
    """Found by attack: a current database whose version says the baseline made the start
    run the migrations on tables that already had their columns (a traceback); two rows in
    the version table did too. Both are refusals now, and the upgrade's transaction is
    rolled back."""
    engine = new_db()
    init_db(engine)
    with engine.begin() as conn:
        conn.execute(sa.text("UPDATE alembic_version SET version_num = :v"), {"v": BASELINE})
    for attempt in (init_db, migrate.upgrade):
        with pytest.raises(SchemaError, match=f"upgrading from revision '{BASELINE}' failed"):
            attempt(engine)
    assert version(engine) == BASELINE
    with engine.begin() as conn:
        conn.execute(sa.text("INSERT INTO alembic_version (version_num) VALUES ('f00dfeed0999')"))
    with pytest.raises(SchemaError, match="several revisions at once"):
        init_db(engine)


def test_hubs_starting_together_on_an_empty_database_create_it_once(
        postgres_url: str) -> None:
    engine = fresh_postgres(postgres_url)
    found: list[State] = []
    errors: list[BaseException] = []

    def start() -> None:
        try:
            found.append(migrate.prepare(engine).state)
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=start) for _ in range(3)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    engine.dispose()
    assert errors == []
    assert sorted(found) == sorted([State.EMPTY, State.CURRENT, State.CURRENT])
