"""Main from 6722e8f to b54504f: tables for broker logins, token versions, log-in
throttling, issued phone keys, dead letters, the registry's and the key material's counters;
venues that close, are deleted and cap folio credit; devices deleted and with their own
plain-UID policy; SUN read times; content digests of events and reports; money columns 64-bit.

Revision ID: b54504f0a002
Revises: 6722e8f0a001
Create Date: 2026-12-05

One revision for what the commits since 6722e8f changed without migrations (autogenerate from the
first revision's schema to b54504f's models, the same on SQLite and PostgreSQL). Existing
rows need nothing: every new column is nullable or has a server default (venue.enabled:
true, so existing venues stay open); a folio with no credit limit and a device with no
policy of its own follow their venue, as before.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "b54504f0a002"
down_revision = "6722e8f0a001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "brokercredential",
        sa.Column("username", sa.String(length=200), nullable=False),
        sa.Column("generation", sa.Integer(), nullable=False),
        sa.Column("revoked", sa.Boolean(), nullable=False),
        sa.Column("changed_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("username"),
    )
    op.create_table(
        "deadletter",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("topic", sa.String(length=1024), nullable=False),
        sa.Column("payload", sa.LargeBinary(), nullable=False),
        sa.Column("error", sa.String(length=500), nullable=False),
        sa.Column("received_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("recorded_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("worker", sa.String(length=128), nullable=False),
        sa.PrimaryKeyConstraint("id"),
    )
    with op.batch_alter_table("deadletter", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_deadletter_received_at"), ["received_at"], unique=False
        )

    op.create_table(
        "keymaterialseq",
        # One row with id 1: a plain integer key, as create_all makes it (not SERIAL).
        sa.Column("id", sa.Integer(), autoincrement=False, nullable=False),
        sa.Column("seq", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_table(
        "loginthrottle",
        sa.Column("key", sa.String(length=200), nullable=False),
        sa.Column("failures", sa.Integer(), nullable=False),
        sa.Column("last_failure_at", sa.DateTime(timezone=True), nullable=True),
        sa.PrimaryKeyConstraint("key"),
    )
    op.create_table(
        "registryversion",
        # One row with id 1: a plain integer key, as create_all makes it (not SERIAL).
        sa.Column("id", sa.Integer(), autoincrement=False, nullable=False),
        sa.Column("version", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_table(
        "tokenversion",
        sa.Column("subject", sa.String(length=200), nullable=False),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.PrimaryKeyConstraint("subject"),
    )
    op.create_table(
        "issuedphonekey",
        sa.Column("jti", sa.String(length=64), nullable=False),
        sa.Column("credential_id", sa.String(), nullable=False),
        sa.Column("expires_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("issued_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("superseded_at", sa.DateTime(timezone=True), nullable=True),
        sa.ForeignKeyConstraint(
            ["credential_id"],
            ["credential.id"],
        ),
        sa.PrimaryKeyConstraint("jti"),
    )
    with op.batch_alter_table("issuedphonekey", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_issuedphonekey_credential_id"), ["credential_id"], unique=False
        )
        batch_op.create_index(
            batch_op.f("ix_issuedphonekey_expires_at"), ["expires_at"], unique=False
        )

    with op.batch_alter_table("account", schema=None) as batch_op:
        batch_op.add_column(sa.Column("credit_limit", sa.BigInteger(), nullable=True))
        batch_op.alter_column(
            "balance", existing_type=sa.INTEGER(), type_=sa.BigInteger(), existing_nullable=False
        )

    with op.batch_alter_table("credential", schema=None) as batch_op:
        batch_op.add_column(sa.Column("sun_counter_at", sa.DateTime(timezone=True), nullable=True))

    with op.batch_alter_table("dailyspend", schema=None) as batch_op:
        batch_op.alter_column(
            "spent", existing_type=sa.INTEGER(), type_=sa.BigInteger(), existing_nullable=False
        )

    with op.batch_alter_table("device", schema=None) as batch_op:
        batch_op.add_column(sa.Column("allow_plain_uid", sa.Boolean(), nullable=True))
        batch_op.add_column(sa.Column("deleted_at", sa.DateTime(timezone=True), nullable=True))

    with op.batch_alter_table("event", schema=None) as batch_op:
        batch_op.add_column(sa.Column("content_digest", sa.String(length=64), nullable=True))

    with op.batch_alter_table("ledgertransaction", schema=None) as batch_op:
        batch_op.alter_column(
            "amount", existing_type=sa.INTEGER(), type_=sa.BigInteger(), existing_nullable=False
        )
        batch_op.alter_column(
            "balance_after",
            existing_type=sa.INTEGER(),
            type_=sa.BigInteger(),
            existing_nullable=True,
        )

    with op.batch_alter_table("posting", schema=None) as batch_op:
        batch_op.alter_column(
            "amount", existing_type=sa.INTEGER(), type_=sa.BigInteger(), existing_nullable=False
        )

    with op.batch_alter_table("spendingpolicy", schema=None) as batch_op:
        batch_op.alter_column(
            "daily_limit", existing_type=sa.INTEGER(), type_=sa.BigInteger(), existing_nullable=True
        )
        batch_op.alter_column(
            "pin_threshold",
            existing_type=sa.INTEGER(),
            type_=sa.BigInteger(),
            existing_nullable=True,
        )

    with op.batch_alter_table("telemetry", schema=None) as batch_op:
        batch_op.add_column(sa.Column("content_digest", sa.String(length=64), nullable=True))

    with op.batch_alter_table("venue", schema=None) as batch_op:
        batch_op.add_column(sa.Column("folio_credit_limit", sa.BigInteger(), nullable=True))
        batch_op.add_column(
            sa.Column("enabled", sa.Boolean(), server_default=sa.true(), nullable=False)
        )
        batch_op.add_column(sa.Column("deleted_at", sa.DateTime(timezone=True), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("venue", schema=None) as batch_op:
        batch_op.drop_column("deleted_at")
        batch_op.drop_column("enabled")
        batch_op.drop_column("folio_credit_limit")

    with op.batch_alter_table("telemetry", schema=None) as batch_op:
        batch_op.drop_column("content_digest")

    with op.batch_alter_table("spendingpolicy", schema=None) as batch_op:
        batch_op.alter_column(
            "pin_threshold",
            existing_type=sa.BigInteger(),
            type_=sa.INTEGER(),
            existing_nullable=True,
        )
        batch_op.alter_column(
            "daily_limit", existing_type=sa.BigInteger(), type_=sa.INTEGER(), existing_nullable=True
        )

    with op.batch_alter_table("posting", schema=None) as batch_op:
        batch_op.alter_column(
            "amount", existing_type=sa.BigInteger(), type_=sa.INTEGER(), existing_nullable=False
        )

    with op.batch_alter_table("ledgertransaction", schema=None) as batch_op:
        batch_op.alter_column(
            "balance_after",
            existing_type=sa.BigInteger(),
            type_=sa.INTEGER(),
            existing_nullable=True,
        )
        batch_op.alter_column(
            "amount", existing_type=sa.BigInteger(), type_=sa.INTEGER(), existing_nullable=False
        )

    with op.batch_alter_table("event", schema=None) as batch_op:
        batch_op.drop_column("content_digest")

    with op.batch_alter_table("device", schema=None) as batch_op:
        batch_op.drop_column("deleted_at")
        batch_op.drop_column("allow_plain_uid")

    with op.batch_alter_table("dailyspend", schema=None) as batch_op:
        batch_op.alter_column(
            "spent", existing_type=sa.BigInteger(), type_=sa.INTEGER(), existing_nullable=False
        )

    with op.batch_alter_table("credential", schema=None) as batch_op:
        batch_op.drop_column("sun_counter_at")

    with op.batch_alter_table("account", schema=None) as batch_op:
        batch_op.alter_column(
            "balance", existing_type=sa.BigInteger(), type_=sa.INTEGER(), existing_nullable=False
        )
        batch_op.drop_column("credit_limit")

    with op.batch_alter_table("issuedphonekey", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_issuedphonekey_expires_at"))
        batch_op.drop_index(batch_op.f("ix_issuedphonekey_credential_id"))

    op.drop_table("issuedphonekey")
    op.drop_table("tokenversion")
    op.drop_table("registryversion")
    op.drop_table("loginthrottle")
    op.drop_table("keymaterialseq")
    with op.batch_alter_table("deadletter", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_deadletter_received_at"))

    op.drop_table("deadletter")
    op.drop_table("brokercredential")
