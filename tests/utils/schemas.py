"""Databases of other schema versions for migration tests, and a schema to compare them by."""

from __future__ import annotations

import sqlite3
from pathlib import Path
from typing import Any

import psycopg
import sqlalchemy as sa
from sqlalchemy.engine import Engine

from hub.migrate import VERSION_TABLE

FIXTURES = Path(__file__).parents[1] / "fixtures"


def old_dump(dialect: str) -> str:
    """The SQL dump of a demo database main at 6722e8f made (tests/fixtures/)."""
    return (FIXTURES / f"hub-6722e8f.{'sqlite' if dialect == 'sqlite' else 'postgres'}.sql"
            ).read_text()


def load_old(engine: Engine) -> None:
    """Fill ``engine``'s empty database with 6722e8f's schema and demo data, as its own
    create_all and a running hub left them (no alembic_version)."""
    url = engine.url
    if url.get_backend_name() == "sqlite":
        assert url.database
        with sqlite3.connect(url.database) as conn:
            conn.executescript(old_dump("sqlite"))
        return
    # The dump sets the session's search_path to '': a connection of its own, not the pool's.
    conninfo = url.set(drivername="postgresql").render_as_string(hide_password=False)
    with psycopg.connect(conninfo, autocommit=True) as conn:
        conn.execute(old_dump("postgresql").encode())


def schema(engine: Engine) -> dict[str, Any]:
    """Everything the database says about its tables, in an order-free form: columns
    (type, nullability, default), keys, foreign keys, indexes, unique constraints, and
    PostgreSQL's enum types. Two databases with equal ``schema`` are the same schema."""
    inspector = sa.inspect(engine)
    tables: dict[str, Any] = {}
    for table in inspector.get_table_names():
        if table == VERSION_TABLE:
            continue
        tables[table] = {
            "columns": sorted((c["name"], str(c["type"]), c["nullable"], str(c.get("default")))
                              for c in inspector.get_columns(table)),
            "primary_key": sorted(inspector.get_pk_constraint(table)["constrained_columns"]),
            "foreign_keys": sorted(
                (tuple(fk["constrained_columns"]), fk["referred_table"],
                 tuple(fk["referred_columns"]), str(fk.get("options") or {}))
                for fk in inspector.get_foreign_keys(table)),
            "indexes": sorted(
                (ix["name"] or "", tuple(str(c) for c in ix["column_names"]), bool(ix["unique"]),
                 sorted((k, str(v)) for k, v in (ix.get("dialect_options") or {}).items()))
                for ix in inspector.get_indexes(table)),
            "unique": sorted((u["name"] or "", tuple(u["column_names"]))
                             for u in inspector.get_unique_constraints(table)),
        }
    enums: list[Any] = []
    if engine.dialect.name == "postgresql":
        enums = sorted((e["name"], tuple(e["labels"]))
                       for e in inspector.get_enums())  # type: ignore[attr-defined]
    return {"tables": tables, "enums": enums}


def schema_differences(got: dict[str, Any], want: dict[str, Any]) -> list[str]:
    """What differs between two ``schema`` results, one line per table and aspect."""
    lines = [f"enums: {got['enums']} != {want['enums']}"] if got["enums"] != want["enums"] else []
    for table in sorted(set(got["tables"]) | set(want["tables"])):
        mine, theirs = got["tables"].get(table), want["tables"].get(table)
        if mine is None or theirs is None:
            lines.append(f"{table}: only in {'the second' if mine is None else 'the first'}")
            continue
        lines += [f"{table} {aspect}: {mine[aspect]} != {theirs[aspect]}"
                  for aspect in mine if mine[aspect] != theirs[aspect]]
    return lines
