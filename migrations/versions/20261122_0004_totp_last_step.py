"""TOTP replay protection: the last accepted time step per user (RFC 6238 section 5.2).

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-22
"""

from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.execute("ALTER TABLE auth_user ADD COLUMN totp_last_step bigint")


def downgrade() -> None:
    op.execute("ALTER TABLE auth_user DROP COLUMN totp_last_step")
