"""WorkerBeat: each tap-deciding process's state every few seconds (hub.heartbeat), so
the fleet's API can tell whether the workers are deciding.

Revision ID: ae74f634ee7b
Revises: 8a414a6264f5
Create Date: 2026-12-05 05:37:39.980581

A new table: nothing to carry over (each worker writes its row at start).
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "ae74f634ee7b"
down_revision = "8a414a6264f5"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "workerbeat",
        sa.Column("name", sa.String(length=64), nullable=False),
        sa.Column("host", sa.String(length=160), nullable=False),
        sa.Column("pid", sa.Integer(), nullable=False),
        sa.Column("seen_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("deciding", sa.Boolean(), nullable=False),
        sa.Column("queue_depth", sa.Integer(), nullable=False),
        sa.Column("problems", sa.String(length=500), nullable=False),
        sa.PrimaryKeyConstraint("name"),
    )


def downgrade() -> None:
    op.drop_table("workerbeat")
