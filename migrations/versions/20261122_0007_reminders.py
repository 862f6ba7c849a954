"""Appointment reminders: the delivery ledger (exactly once per appointment, offset and channel), the
outbox's claims (each queued Communication sent once per recipient and channel) and a small table of
generated secrets (the key signing reminder links).

Revision ID: 0007
Revises: 0008 (written beside main's 0006/0008, re-chained after them when merged: one head)
Create Date: 2026-11-22
"""

from alembic import op

revision = "0007"
down_revision = "0008"
branch_labels = None
depends_on = None


def upgrade() -> None:
    # The primary key is the claim: of two sweeps racing for a delivery, one INSERT wins.
    op.execute(
        """
        CREATE TABLE reminder_delivery (
            appointment_id text NOT NULL,
            offset_minutes integer NOT NULL,
            channel text NOT NULL CHECK (channel IN ('email', 'sms')),
            status text NOT NULL CHECK (status IN ('sending', 'retry', 'sent', 'failed')),
            attempts integer NOT NULL DEFAULT 1,
            claimed_at timestamptz NOT NULL,
            next_attempt_at timestamptz,
            finished_at timestamptz,
            communication_id text,
            last_error text,
            PRIMARY KEY (appointment_id, offset_minutes, channel)
        )
        """
    )
    op.execute(
        "CREATE INDEX reminder_delivery_open ON reminder_delivery (next_attempt_at) "
        "WHERE status IN ('sending', 'retry')"
    )
    op.execute(
        """
        CREATE TABLE message_delivery (
            communication_id text NOT NULL,
            recipient text NOT NULL,
            channel text NOT NULL CHECK (channel IN ('email', 'sms')),
            status text NOT NULL CHECK (status IN ('sending', 'sent', 'failed')),
            claimed_at timestamptz NOT NULL,
            finished_at timestamptz,
            provider_id text,
            last_error text,
            PRIMARY KEY (communication_id, recipient, channel)
        )
        """
    )
    op.execute(
        """
        CREATE TABLE app_secret (
            name text PRIMARY KEY,
            value text NOT NULL,
            created_at timestamptz NOT NULL DEFAULT now()
        )
        """
    )


def downgrade() -> None:
    op.execute("DROP TABLE app_secret")
    op.execute("DROP TABLE message_delivery")
    op.execute("DROP TABLE reminder_delivery")
