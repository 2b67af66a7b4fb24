"""Alembic's environment: migrate the connection hub.migrate hands in, in its transaction."""

from __future__ import annotations

from alembic import context
from sqlmodel import SQLModel

from hub import migrate

connection = context.config.attributes.get("connection")
if connection is None:  # pragma: no cover - only hub.migrate runs these scripts
    raise RuntimeError("run migrations with `hub db upgrade`, not alembic's command line")

context.configure(
    connection=connection,
    target_metadata=SQLModel.metadata,
    # SQLite alters a table by copying it (batch mode); PostgreSQL alters it in place.
    render_as_batch=True,
    render_item=migrate.render_item,
    **migrate.COMPARE,
)
# hub.migrate opened the transaction (and took the migration lock): the whole upgrade
# commits or rolls back as one, on SQLite too.
with context.begin_transaction():
    context.run_migrations()
