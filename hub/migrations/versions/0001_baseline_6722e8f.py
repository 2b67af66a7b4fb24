"""The schema of main at 6722e8f, the last hub without migrations, as create_all made it.

Revision ID: 6722e8f0a001
Revises:
Create Date: 2026-12-05

A database that an older hub created (tables, no alembic_version) and that has exactly
these tables and columns is stamped at this revision by ``hub db upgrade`` (hub.migrate).
Written from that commit's models by autogenerate against an empty database, on SQLite and
on PostgreSQL alike; tests/hub/test_migrations.py checks it against that commit's own schema
(the dumps in tests/fixtures/).
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "6722e8f0a001"
down_revision = None
branch_labels = None
depends_on = None

# PostgreSQL's enum types, made by create_table with their columns; dropped by hand below.
_ENUMS = (
    "accountkind",
    "credentialkind",
    "credentialstatus",
    "devicekind",
    "direction",
    "entitlementkind",
    "entitlementstatus",
    "runstatus",
    "transactiontype",
    "zonekind",
)


def upgrade() -> None:
    op.create_table(
        "auditentry",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("actor", sa.String(length=80), nullable=False),
        sa.Column("roles", sa.JSON(), nullable=False),
        sa.Column("action", sa.String(length=64), nullable=False),
        sa.Column("target", sa.String(length=200), nullable=False),
        sa.Column("detail", sa.JSON(), nullable=False),
        sa.Column("source", sa.String(length=64), nullable=False),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index(op.f("ix_auditentry_action"), "auditentry", ["action"], unique=False)
    op.create_index(op.f("ix_auditentry_actor"), "auditentry", ["actor"], unique=False)
    op.create_index(op.f("ix_auditentry_at"), "auditentry", ["at"], unique=False)
    op.create_index(op.f("ix_auditentry_target"), "auditentry", ["target"], unique=False)
    op.create_table(
        "automationrule",
        sa.Column("id", sa.String(length=64), nullable=False),
        sa.Column("name", sa.String(length=200), nullable=False),
        sa.Column("purpose", sa.String(length=20), nullable=False),
        sa.Column("trigger", sa.String(length=32), nullable=False),
        sa.Column("filters", sa.JSON(), nullable=False),
        sa.Column("conditions", sa.JSON(), nullable=False),
        sa.Column("actions", sa.JSON(), nullable=False),
        sa.Column("enabled", sa.Boolean(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_table(
        "automationrun",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("rule_id", sa.String(length=64), nullable=False),
        sa.Column("action", sa.String(length=16), nullable=False),
        sa.Column("guest_id", sa.String(), nullable=True),
        sa.Column("device_id", sa.String(length=64), nullable=True),
        sa.Column("command_id", sa.String(length=64), nullable=True),
        sa.Column("name", sa.String(length=64), nullable=True),
        sa.Column("params", sa.JSON(), nullable=False),
        sa.Column("purposes", sa.JSON(), nullable=False),
        sa.Column(
            "status",
            sa.Enum("SENT", "QUEUED", "FAILED", "EXPIRED", name="runstatus"),
            nullable=False,
        ),
        sa.Column("detail", sa.String(length=500), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("sent_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("overridden_at", sa.DateTime(timezone=True), nullable=True),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("command_id"),
    )
    op.create_index(
        op.f("ix_automationrun_device_id"), "automationrun", ["device_id"], unique=False
    )
    op.create_index(op.f("ix_automationrun_guest_id"), "automationrun", ["guest_id"], unique=False)
    op.create_index(op.f("ix_automationrun_rule_id"), "automationrun", ["rule_id"], unique=False)
    op.create_table(
        "event",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("device_id", sa.String(length=64), nullable=False),
        sa.Column("venue_id", sa.String(length=64), nullable=False),
        sa.Column("event_id", sa.String(length=64), nullable=False),
        sa.Column("kind", sa.String(length=16), nullable=False),
        sa.Column("received_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("device_ts", sa.DateTime(timezone=True), nullable=True),
        sa.Column("credential_kind", sa.String(length=16), nullable=True),
        sa.Column("credential_ref", sa.String(length=128), nullable=True),
        sa.Column("credential_id", sa.String(), nullable=True),
        sa.Column("guest_id", sa.String(), nullable=True),
        sa.Column("zone_id", sa.String(), nullable=True),
        sa.Column("direction", sa.String(length=8), nullable=True),
        sa.Column("outcome", sa.String(length=16), nullable=False),
        sa.Column("reason", sa.String(length=40), nullable=False),
        sa.Column("text", sa.String(length=80), nullable=False),
        sa.Column("guest_name", sa.String(length=80), nullable=True),
        sa.Column("transaction_id", sa.String(length=64), nullable=True),
        sa.Column("decided_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("device_id", "event_id", name="uq_event_device_event"),
    )
    op.create_index(op.f("ix_event_credential_id"), "event", ["credential_id"], unique=False)
    op.create_index(op.f("ix_event_device_id"), "event", ["device_id"], unique=False)
    op.create_index(op.f("ix_event_guest_id"), "event", ["guest_id"], unique=False)
    op.create_index(op.f("ix_event_outcome"), "event", ["outcome"], unique=False)
    op.create_index(op.f("ix_event_received_at"), "event", ["received_at"], unique=False)
    op.create_index(op.f("ix_event_zone_id"), "event", ["zone_id"], unique=False)
    op.create_table(
        "guest",
        sa.Column("id", sa.String(length=64), nullable=False),
        sa.Column("name", sa.String(length=200), nullable=False),
        sa.Column("display_name", sa.String(length=80), nullable=True),
        sa.Column("email", sa.String(length=320), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_table(
        "schedulefiring",
        sa.Column("rule_id", sa.String(length=64), nullable=False),
        sa.Column("venue_id", sa.String(length=64), nullable=False),
        sa.Column("day", sa.String(length=10), nullable=False),
        sa.Column("fired_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("guests", sa.Integer(), nullable=False),
        sa.PrimaryKeyConstraint("rule_id", "venue_id", "day"),
    )
    op.create_table(
        "staffuser",
        sa.Column("id", sa.String(length=64), nullable=False),
        sa.Column("username", sa.String(length=64), nullable=False),
        sa.Column("password_hash", sa.String(length=200), nullable=False),
        sa.Column("roles", sa.JSON(), nullable=False),
        sa.Column("active", sa.Boolean(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("username", name="uq_staffuser_username"),
    )
    op.create_index(op.f("ix_staffuser_username"), "staffuser", ["username"], unique=False)
    op.create_table(
        "usedchallenge",
        sa.Column("device_id", sa.String(length=64), nullable=False),
        sa.Column("challenge", sa.String(length=64), nullable=False),
        sa.Column("used_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("device_id", "challenge"),
    )
    op.create_table(
        "venue",
        sa.Column("id", sa.String(length=64), nullable=False),
        sa.Column("name", sa.String(length=200), nullable=False),
        sa.Column("timezone", sa.String(length=64), nullable=False),
        sa.Column("currency", sa.String(length=3), nullable=False),
        sa.Column("allow_plain_uid", sa.Boolean(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_table(
        "consent",
        sa.Column("guest_id", sa.String(), nullable=False),
        sa.Column("purpose", sa.String(length=20), nullable=False),
        sa.Column("granted", sa.Boolean(), nullable=False),
        sa.Column("changed_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["guest_id"],
            ["guest.id"],
        ),
        sa.PrimaryKeyConstraint("guest_id", "purpose"),
    )
    op.create_table(
        "consentchange",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("guest_id", sa.String(), nullable=False),
        sa.Column("purpose", sa.String(length=20), nullable=False),
        sa.Column("granted", sa.Boolean(), nullable=False),
        sa.Column("at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("actor", sa.String(length=64), nullable=True),
        sa.ForeignKeyConstraint(
            ["guest_id"],
            ["guest.id"],
        ),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index(op.f("ix_consentchange_guest_id"), "consentchange", ["guest_id"], unique=False)
    op.create_table(
        "credential",
        sa.Column("id", sa.String(length=64), nullable=False),
        sa.Column("guest_id", sa.String(), nullable=False),
        sa.Column("kind", sa.Enum("WRISTBAND", "PHONE_KEY", name="credentialkind"), nullable=False),
        sa.Column("identifier", sa.String(length=128), nullable=False),
        sa.Column(
            "status",
            sa.Enum("ACTIVE", "SUSPENDED", "LOST", "REVOKED", name="credentialstatus"),
            nullable=False,
        ),
        sa.Column("label", sa.String(length=80), nullable=True),
        sa.Column("pin_failures", sa.Integer(), nullable=False),
        sa.Column("sun", sa.Boolean(), nullable=False),
        sa.Column("sun_counter", sa.Integer(), nullable=True),
        sa.Column("key_jti", sa.String(length=64), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("status_changed_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["guest_id"],
            ["guest.id"],
        ),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("kind", "identifier", name="uq_credential_identifier"),
    )
    op.create_index(op.f("ix_credential_guest_id"), "credential", ["guest_id"], unique=False)
    op.create_index(op.f("ix_credential_key_jti"), "credential", ["key_jti"], unique=False)
    op.create_table(
        "dailyspend",
        sa.Column("guest_id", sa.String(), nullable=False),
        sa.Column("day", sa.String(length=10), nullable=False),
        sa.Column("spent", sa.Integer(), nullable=False),
        sa.ForeignKeyConstraint(
            ["guest_id"],
            ["guest.id"],
        ),
        sa.PrimaryKeyConstraint("guest_id", "day"),
    )
    op.create_table(
        "entitlement",
        sa.Column("id", sa.String(length=64), nullable=False),
        sa.Column("guest_id", sa.String(), nullable=False),
        sa.Column(
            "kind", sa.Enum("TICKET", "ROOM", "STAFF", name="entitlementkind"), nullable=False
        ),
        sa.Column("zone_ids", sa.JSON(), nullable=False),
        sa.Column("valid_from", sa.DateTime(timezone=True), nullable=False),
        sa.Column("valid_until", sa.DateTime(timezone=True), nullable=False),
        sa.Column("schedule", sa.JSON(), nullable=True),
        sa.Column(
            "status", sa.Enum("ACTIVE", "CANCELLED", name="entitlementstatus"), nullable=False
        ),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["guest_id"],
            ["guest.id"],
        ),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index(op.f("ix_entitlement_guest_id"), "entitlement", ["guest_id"], unique=False)
    op.create_table(
        "guestpreferences",
        sa.Column("guest_id", sa.String(), nullable=False),
        sa.Column("room_temperature_c", sa.Float(), nullable=True),
        sa.Column("lighting_scene", sa.String(length=16), nullable=True),
        sa.Column("language", sa.String(length=16), nullable=True),
        sa.Column("dietary", sa.JSON(), nullable=False),
        sa.Column("display_name", sa.String(length=80), nullable=True),
        sa.Column("heart_rate_threshold", sa.Integer(), nullable=True),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["guest_id"],
            ["guest.id"],
        ),
        sa.PrimaryKeyConstraint("guest_id"),
    )
    op.create_table(
        "merchant",
        sa.Column("id", sa.String(length=64), nullable=False),
        sa.Column("venue_id", sa.String(), nullable=False),
        sa.Column("name", sa.String(length=200), nullable=False),
        sa.Column("currency", sa.String(length=3), nullable=False),
        sa.ForeignKeyConstraint(
            ["venue_id"],
            ["venue.id"],
        ),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index(op.f("ix_merchant_venue_id"), "merchant", ["venue_id"], unique=False)
    op.create_table(
        "spendingpolicy",
        sa.Column("guest_id", sa.String(), nullable=False),
        sa.Column("payer_guest_id", sa.String(), nullable=False),
        sa.Column("payment_enabled", sa.Boolean(), nullable=False),
        sa.Column("daily_limit", sa.Integer(), nullable=True),
        sa.Column("pin_hash", sa.String(length=200), nullable=True),
        sa.Column("pin_threshold", sa.Integer(), nullable=True),
        sa.ForeignKeyConstraint(
            ["guest_id"],
            ["guest.id"],
        ),
        sa.ForeignKeyConstraint(
            ["payer_guest_id"],
            ["guest.id"],
        ),
        sa.PrimaryKeyConstraint("guest_id"),
    )
    op.create_index(
        op.f("ix_spendingpolicy_payer_guest_id"), "spendingpolicy", ["payer_guest_id"], unique=False
    )
    op.create_table(
        "zone",
        sa.Column("id", sa.String(length=64), nullable=False),
        sa.Column("venue_id", sa.String(), nullable=False),
        sa.Column("name", sa.String(length=200), nullable=False),
        sa.Column("kind", sa.Enum("AREA", "ROOM", "RIDE", name="zonekind"), nullable=False),
        sa.Column("capacity", sa.Integer(), nullable=True),
        sa.Column("anti_passback", sa.Boolean(), nullable=False),
        sa.Column("occupancy", sa.Integer(), nullable=False),
        sa.ForeignKeyConstraint(
            ["venue_id"],
            ["venue.id"],
        ),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index(op.f("ix_zone_venue_id"), "zone", ["venue_id"], unique=False)
    op.create_table(
        "account",
        sa.Column("id", sa.String(length=64), nullable=False),
        sa.Column("venue_id", sa.String(), nullable=False),
        sa.Column(
            "kind",
            sa.Enum("WALLET", "FOLIO", "REVENUE", "CLEARING", name="accountkind"),
            nullable=False,
        ),
        sa.Column("currency", sa.String(length=3), nullable=False),
        sa.Column("guest_id", sa.String(), nullable=True),
        sa.Column("merchant_id", sa.String(), nullable=True),
        sa.Column("stay_id", sa.String(), nullable=True),
        sa.Column("balance", sa.Integer(), nullable=False),
        sa.Column("open", sa.Boolean(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("closed_at", sa.DateTime(timezone=True), nullable=True),
        sa.ForeignKeyConstraint(
            ["guest_id"],
            ["guest.id"],
        ),
        sa.ForeignKeyConstraint(
            ["merchant_id"],
            ["merchant.id"],
        ),
        sa.ForeignKeyConstraint(
            ["stay_id"],
            ["entitlement.id"],
        ),
        sa.ForeignKeyConstraint(
            ["venue_id"],
            ["venue.id"],
        ),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("stay_id"),
    )
    op.create_index(op.f("ix_account_guest_id"), "account", ["guest_id"], unique=False)
    op.create_index(op.f("ix_account_merchant_id"), "account", ["merchant_id"], unique=False)
    op.create_index(op.f("ix_account_venue_id"), "account", ["venue_id"], unique=False)
    op.create_table(
        "device",
        sa.Column("id", sa.String(length=64), nullable=False),
        sa.Column("venue_id", sa.String(), nullable=False),
        sa.Column(
            "kind",
            sa.Enum(
                "GATE",
                "DOOR_LOCK",
                "POS",
                "KIOSK",
                "THERMOSTAT",
                "LIGHT",
                "DISPLAY",
                "FRIDGE_DISPLAY",
                "WATCH",
                name="devicekind",
            ),
            nullable=False,
        ),
        sa.Column("name", sa.String(length=200), nullable=False),
        sa.Column("zone_id", sa.String(), nullable=True),
        sa.Column("direction", sa.Enum("IN", "OUT", name="direction"), nullable=True),
        sa.Column("merchant_id", sa.String(), nullable=True),
        sa.Column("enabled", sa.Boolean(), nullable=False),
        sa.Column("online", sa.Boolean(), nullable=False),
        sa.Column("last_seen", sa.DateTime(timezone=True), nullable=True),
        sa.Column("battery_pct", sa.Integer(), nullable=True),
        sa.Column("firmware", sa.String(length=64), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["merchant_id"],
            ["merchant.id"],
        ),
        sa.ForeignKeyConstraint(
            ["venue_id"],
            ["venue.id"],
        ),
        sa.ForeignKeyConstraint(
            ["zone_id"],
            ["zone.id"],
        ),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index(op.f("ix_device_venue_id"), "device", ["venue_id"], unique=False)
    op.create_index(op.f("ix_device_zone_id"), "device", ["zone_id"], unique=False)
    op.create_table(
        "presence",
        sa.Column("guest_id", sa.String(), nullable=False),
        sa.Column("zone_id", sa.String(), nullable=False),
        sa.Column("inside", sa.Boolean(), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["guest_id"],
            ["guest.id"],
        ),
        sa.ForeignKeyConstraint(
            ["zone_id"],
            ["zone.id"],
        ),
        sa.PrimaryKeyConstraint("guest_id", "zone_id"),
    )
    op.create_table(
        "ledgertransaction",
        sa.Column("id", sa.String(length=64), nullable=False),
        sa.Column("venue_id", sa.String(), nullable=False),
        sa.Column(
            "type",
            sa.Enum("CHARGE", "REFUND", "TOPUP", "SETTLEMENT", name="transactiontype"),
            nullable=False,
        ),
        sa.Column("approved", sa.Boolean(), nullable=False),
        sa.Column("reason", sa.String(length=40), nullable=False),
        sa.Column("text", sa.String(length=80), nullable=False),
        sa.Column("amount", sa.Integer(), nullable=False),
        sa.Column("currency", sa.String(length=3), nullable=False),
        sa.Column("guest_id", sa.String(), nullable=True),
        sa.Column("account_id", sa.String(), nullable=True),
        sa.Column("merchant_id", sa.String(), nullable=True),
        sa.Column("credential_id", sa.String(), nullable=True),
        sa.Column("device_id", sa.String(), nullable=True),
        sa.Column("event_id", sa.String(), nullable=True),
        sa.Column("original_id", sa.String(), nullable=True),
        sa.Column("items", sa.JSON(), nullable=False),
        sa.Column("balance_after", sa.Integer(), nullable=True),
        sa.Column("idempotency_scope", sa.String(length=64), nullable=False),
        sa.Column("idempotency_key", sa.String(length=64), nullable=False),
        sa.Column("fingerprint", sa.String(length=64), nullable=False),
        sa.Column("actor", sa.String(length=64), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["account_id"],
            ["account.id"],
        ),
        sa.ForeignKeyConstraint(
            ["original_id"],
            ["ledgertransaction.id"],
        ),
        sa.ForeignKeyConstraint(
            ["venue_id"],
            ["venue.id"],
        ),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint(
            "idempotency_scope", "idempotency_key", name="uq_transaction_idempotency"
        ),
    )
    op.create_index(
        op.f("ix_ledgertransaction_account_id"), "ledgertransaction", ["account_id"], unique=False
    )
    op.create_index(
        op.f("ix_ledgertransaction_created_at"), "ledgertransaction", ["created_at"], unique=False
    )
    op.create_index(
        op.f("ix_ledgertransaction_guest_id"), "ledgertransaction", ["guest_id"], unique=False
    )
    op.create_index(
        op.f("ix_ledgertransaction_merchant_id"), "ledgertransaction", ["merchant_id"], unique=False
    )
    op.create_index(
        op.f("ix_ledgertransaction_original_id"), "ledgertransaction", ["original_id"], unique=False
    )
    op.create_index(
        op.f("ix_ledgertransaction_venue_id"), "ledgertransaction", ["venue_id"], unique=False
    )
    op.create_table(
        "telemetry",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("device_id", sa.String(), nullable=False),
        sa.Column("event_id", sa.String(length=64), nullable=False),
        sa.Column("kind", sa.String(length=16), nullable=False),
        sa.Column("ts", sa.DateTime(timezone=True), nullable=False),
        sa.Column("received_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("data", sa.JSON(), nullable=False),
        sa.ForeignKeyConstraint(
            ["device_id"],
            ["device.id"],
        ),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("device_id", "event_id", name="uq_telemetry_event"),
    )
    op.create_index(op.f("ix_telemetry_device_id"), "telemetry", ["device_id"], unique=False)
    op.create_index(op.f("ix_telemetry_received_at"), "telemetry", ["received_at"], unique=False)
    op.create_table(
        "wearable",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("device_id", sa.String(length=64), nullable=False),
        sa.Column("guest_id", sa.String(), nullable=False),
        sa.Column("paired_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("unpaired_at", sa.DateTime(timezone=True), nullable=True),
        sa.CheckConstraint(
            "unpaired_at IS NULL OR unpaired_at >= paired_at", name="ck_wearable_window"
        ),
        sa.ForeignKeyConstraint(
            ["device_id"],
            ["device.id"],
        ),
        sa.ForeignKeyConstraint(
            ["guest_id"],
            ["guest.id"],
        ),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index(op.f("ix_wearable_device_id"), "wearable", ["device_id"], unique=False)
    op.create_index(op.f("ix_wearable_guest_id"), "wearable", ["guest_id"], unique=False)
    op.create_index(
        "uq_wearable_open_device",
        "wearable",
        ["device_id"],
        unique=True,
        sqlite_where=sa.text("unpaired_at IS NULL"),
        postgresql_where=sa.text("unpaired_at IS NULL"),
    )
    op.create_table(
        "posting",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("transaction_id", sa.String(), nullable=False),
        sa.Column("account_id", sa.String(), nullable=False),
        sa.Column("amount", sa.Integer(), nullable=False),
        sa.ForeignKeyConstraint(
            ["account_id"],
            ["account.id"],
        ),
        sa.ForeignKeyConstraint(
            ["transaction_id"],
            ["ledgertransaction.id"],
        ),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index(op.f("ix_posting_account_id"), "posting", ["account_id"], unique=False)
    op.create_index(op.f("ix_posting_transaction_id"), "posting", ["transaction_id"], unique=False)


def downgrade() -> None:
    op.drop_index(op.f("ix_posting_transaction_id"), table_name="posting")
    op.drop_index(op.f("ix_posting_account_id"), table_name="posting")
    op.drop_table("posting")
    op.drop_index(
        "uq_wearable_open_device",
        table_name="wearable",
        sqlite_where=sa.text("unpaired_at IS NULL"),
        postgresql_where=sa.text("unpaired_at IS NULL"),
    )
    op.drop_index(op.f("ix_wearable_guest_id"), table_name="wearable")
    op.drop_index(op.f("ix_wearable_device_id"), table_name="wearable")
    op.drop_table("wearable")
    op.drop_index(op.f("ix_telemetry_received_at"), table_name="telemetry")
    op.drop_index(op.f("ix_telemetry_device_id"), table_name="telemetry")
    op.drop_table("telemetry")
    op.drop_index(op.f("ix_ledgertransaction_venue_id"), table_name="ledgertransaction")
    op.drop_index(op.f("ix_ledgertransaction_original_id"), table_name="ledgertransaction")
    op.drop_index(op.f("ix_ledgertransaction_merchant_id"), table_name="ledgertransaction")
    op.drop_index(op.f("ix_ledgertransaction_guest_id"), table_name="ledgertransaction")
    op.drop_index(op.f("ix_ledgertransaction_created_at"), table_name="ledgertransaction")
    op.drop_index(op.f("ix_ledgertransaction_account_id"), table_name="ledgertransaction")
    op.drop_table("ledgertransaction")
    op.drop_table("presence")
    op.drop_index(op.f("ix_device_zone_id"), table_name="device")
    op.drop_index(op.f("ix_device_venue_id"), table_name="device")
    op.drop_table("device")
    op.drop_index(op.f("ix_account_venue_id"), table_name="account")
    op.drop_index(op.f("ix_account_merchant_id"), table_name="account")
    op.drop_index(op.f("ix_account_guest_id"), table_name="account")
    op.drop_table("account")
    op.drop_index(op.f("ix_zone_venue_id"), table_name="zone")
    op.drop_table("zone")
    op.drop_index(op.f("ix_spendingpolicy_payer_guest_id"), table_name="spendingpolicy")
    op.drop_table("spendingpolicy")
    op.drop_index(op.f("ix_merchant_venue_id"), table_name="merchant")
    op.drop_table("merchant")
    op.drop_table("guestpreferences")
    op.drop_index(op.f("ix_entitlement_guest_id"), table_name="entitlement")
    op.drop_table("entitlement")
    op.drop_table("dailyspend")
    op.drop_index(op.f("ix_credential_key_jti"), table_name="credential")
    op.drop_index(op.f("ix_credential_guest_id"), table_name="credential")
    op.drop_table("credential")
    op.drop_index(op.f("ix_consentchange_guest_id"), table_name="consentchange")
    op.drop_table("consentchange")
    op.drop_table("consent")
    op.drop_table("venue")
    op.drop_table("usedchallenge")
    op.drop_index(op.f("ix_staffuser_username"), table_name="staffuser")
    op.drop_table("staffuser")
    op.drop_table("schedulefiring")
    op.drop_table("guest")
    op.drop_index(op.f("ix_event_zone_id"), table_name="event")
    op.drop_index(op.f("ix_event_received_at"), table_name="event")
    op.drop_index(op.f("ix_event_outcome"), table_name="event")
    op.drop_index(op.f("ix_event_guest_id"), table_name="event")
    op.drop_index(op.f("ix_event_device_id"), table_name="event")
    op.drop_index(op.f("ix_event_credential_id"), table_name="event")
    op.drop_table("event")
    op.drop_index(op.f("ix_automationrun_rule_id"), table_name="automationrun")
    op.drop_index(op.f("ix_automationrun_guest_id"), table_name="automationrun")
    op.drop_index(op.f("ix_automationrun_device_id"), table_name="automationrun")
    op.drop_table("automationrun")
    op.drop_table("automationrule")
    op.drop_index(op.f("ix_auditentry_target"), table_name="auditentry")
    op.drop_index(op.f("ix_auditentry_at"), table_name="auditentry")
    op.drop_index(op.f("ix_auditentry_actor"), table_name="auditentry")
    op.drop_index(op.f("ix_auditentry_action"), table_name="auditentry")
    op.drop_table("auditentry")
    for name in _ENUMS:
        sa.Enum(name=name).drop(op.get_bind(), checkfirst=True)
