"""Waitlist offers: which freed time was offered to which waitlisted patient, held by which pending
Appointment, until when, and how it ended. One offer per (waitlist entry, start): a candidate who declined
a time is not offered the same time again.

Revision ID: 0008
Revises: 0006
Create Date: 2026-11-22
"""

from alembic import op

revision = "0008"
down_revision = "0006"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.execute(
        """
        CREATE TABLE waitlist_offer (
            offer_id uuid PRIMARY KEY,
            waitlist_id text NOT NULL,
            hold_id text NOT NULL,
            patient text NOT NULL,
            starts_at timestamptz NOT NULL,
            ends_at timestamptz NOT NULL,
            expires_at timestamptz NOT NULL,
            state text NOT NULL DEFAULT 'offered'
                CHECK (state IN ('offered', 'accepted', 'declined', 'expired', 'withdrawn')),
            created_at timestamptz NOT NULL DEFAULT now(),
            CONSTRAINT waitlist_offer_once UNIQUE (waitlist_id, starts_at)
        )
        """
    )
    op.execute("CREATE INDEX waitlist_offer_open ON waitlist_offer (expires_at) WHERE state = 'offered'")
    op.execute("CREATE INDEX waitlist_offer_hold ON waitlist_offer (hold_id)")


def downgrade() -> None:
    op.execute("DROP TABLE waitlist_offer")
