"""Event.detail: why a presented credential was not trusted, for staff (main after b54504f).

Revision ID: c236939b75e3
Revises: b54504f0a002
Create Date: 2026-12-05 02:34:56.489115

Nullable: earlier events have none, as events the hub trusted.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "c236939b75e3"
down_revision = "b54504f0a002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("event", schema=None) as batch_op:
        batch_op.add_column(sa.Column("detail", sa.String(length=200), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("event", schema=None) as batch_op:
        batch_op.drop_column("detail")
