"""JobLease: which hub process runs a fleet-wide background job this period (hub.leases).

Revision ID: 8a414a6264f5
Revises: c236939b75e3
Create Date: 2026-12-05 03:00:03.983125

A new table: nothing to carry over (the first take of each job inserts its row).
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "8a414a6264f5"
down_revision = "c236939b75e3"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "joblease",
        sa.Column("name", sa.String(length=64), nullable=False),
        sa.Column("holder", sa.String(length=160), nullable=False),
        sa.Column("taken_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("expires_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("name"),
    )


def downgrade() -> None:
    op.drop_table("joblease")
