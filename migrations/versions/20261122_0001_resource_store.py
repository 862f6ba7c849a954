"""Resource store: current versions and full version history.

Revision ID: 0001
Revises:
Create Date: 2026-11-22
"""

from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.execute(
        """
        CREATE TABLE resource (
            rid           bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
            resource_type text        NOT NULL,
            id            text        NOT NULL,
            version_id    integer     NOT NULL,
            last_updated  timestamptz NOT NULL,
            deleted       boolean     NOT NULL DEFAULT false,
            content       jsonb,
            CONSTRAINT resource_identity UNIQUE (resource_type, id),
            CONSTRAINT resource_content_unless_deleted CHECK (deleted OR content IS NOT NULL)
        )
        """
    )
    op.execute("CREATE INDEX resource_type_updated ON resource (resource_type, last_updated, rid)")
    op.execute(
        """
        CREATE TABLE resource_version (
            rid           bigint      NOT NULL REFERENCES resource (rid) ON DELETE CASCADE,
            version_id    integer     NOT NULL,
            resource_type text        NOT NULL,
            id            text        NOT NULL,
            last_updated  timestamptz NOT NULL,
            method        text        NOT NULL,
            deleted       boolean     NOT NULL DEFAULT false,
            content       jsonb,
            PRIMARY KEY (rid, version_id)
        )
        """
    )
    op.execute("CREATE INDEX resource_version_updated ON resource_version (last_updated)")
    op.execute("CREATE INDEX resource_version_type_updated ON resource_version (resource_type, last_updated)")


def downgrade() -> None:
    op.execute("DROP TABLE resource_version")
    op.execute("DROP TABLE resource")
