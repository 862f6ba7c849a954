"""Appointment occupancy: one row per (appointment, exclusive participant) while it holds time, with an
exclusion constraint so that no actor is ever booked twice for overlapping time (the database decides
between concurrent bookings). btree_gist provides `=` on text inside the GiST index; it is a trusted
extension (PostgreSQL >= 13), so a database owner may create it.

Revision ID: 0006
Revises: 0005
Create Date: 2026-11-22
"""

from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.execute("CREATE EXTENSION IF NOT EXISTS btree_gist")
    op.execute(
        """
        CREATE TABLE appointment_occupancy (
            appointment_id text NOT NULL,
            actor text NOT NULL,
            during tstzrange NOT NULL,
            CONSTRAINT appointment_occupancy_no_overlap EXCLUDE USING gist (actor WITH =, during WITH &&),
            CONSTRAINT appointment_occupancy_not_empty CHECK (NOT isempty(during))
        )
        """
    )
    op.execute("CREATE INDEX appointment_occupancy_appointment ON appointment_occupancy (appointment_id)")


def downgrade() -> None:
    op.execute("DROP TABLE appointment_occupancy")
