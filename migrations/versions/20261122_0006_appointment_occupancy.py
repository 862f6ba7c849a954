"""Appointment occupancy: one row per (appointment, exclusive participant) while it holds time, with an
exclusion constraint so that no actor is ever booked twice for overlapping time (the database decides
between concurrent bookings).

With btree_gist (PostgreSQL's contrib; a trusted extension since 13, so a database owner may create it)
the constraint is `EXCLUDE USING gist (actor WITH =, during WITH &&)`. Where it is missing (the
`pgserver` wheel that `make run` falls back to ships no contrib), the same rule is expressed with a
built-in GiST type: each row becomes a degenerate box at x = hash(actor) spanning its time on the y axis,
and overlapping boxes conflict. Boxes are closed and PostgreSQL compares their coordinates with an
absolute tolerance of 1e-6, so the upper end is pulled in by 10 ms to let back-to-back visits touch.

Revision ID: 0006
Revises: 0005
Create Date: 2026-11-22
"""

from alembic import op
from sqlalchemy import text

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None

TABLE = """
CREATE TABLE appointment_occupancy (
    appointment_id text NOT NULL,
    actor text NOT NULL,
    during tstzrange NOT NULL,
    CONSTRAINT appointment_occupancy_not_empty CHECK (NOT isempty(during) AND NOT lower_inf(during)
                                                      AND NOT upper_inf(during))
)
"""

# IMMUTABLE is true here although extract() is declared STABLE: an epoch does not depend on the time zone.
BOX_FUNCTION = """
CREATE FUNCTION occupancy_box(actor text, during tstzrange) RETURNS box
LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$
    SELECT box(
        point(hashtextextended(actor, 0)::float8, extract(epoch FROM lower(during))::float8),
        point(hashtextextended(actor, 0)::float8, extract(epoch FROM upper(during))::float8 - 0.01)
    )
$$
"""


def upgrade() -> None:
    bind = op.get_bind()
    available = bind.execute(text("SELECT 1 FROM pg_available_extensions WHERE name = 'btree_gist'")).first()
    op.execute(TABLE)
    if available:
        op.execute("CREATE EXTENSION IF NOT EXISTS btree_gist")
        op.execute(
            "ALTER TABLE appointment_occupancy ADD CONSTRAINT appointment_occupancy_no_overlap "
            "EXCLUDE USING gist (actor WITH =, during WITH &&)"
        )
    else:
        op.execute(BOX_FUNCTION)
        op.execute(
            "ALTER TABLE appointment_occupancy ADD CONSTRAINT appointment_occupancy_no_overlap "
            "EXCLUDE USING gist (occupancy_box(actor, during) WITH &&)"
        )
    op.execute("CREATE INDEX appointment_occupancy_appointment ON appointment_occupancy (appointment_id)")
    op.execute("CREATE INDEX appointment_occupancy_actor ON appointment_occupancy (actor)")


def downgrade() -> None:
    op.execute("DROP TABLE appointment_occupancy")
    op.execute("DROP FUNCTION IF EXISTS occupancy_box(text, tstzrange)")
