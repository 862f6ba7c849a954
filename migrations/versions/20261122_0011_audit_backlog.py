"""The audit backlog: reads' and refusals' audit records, durable at once, indexed in batches.

A read by id is not answered before its AuditEvent is committed (fail closed). Stored as a resource, that
record cost the database ~0.27 ms (the resource and version rows, a dozen index rows) and the server the
indexing of every AuditEvent search parameter: more than the read itself. The complete AuditEvent JSON
is committed here instead (one narrow row, one index), and pms.storage.audit_backlog moves the rows into
the store as ordinary, searchable AuditEvents in batches: before anything may read AuditEvents (a
search, history or read that can reach them) and every half minute in the worker.

Revision ID: 0011
Revises: 0010
Create Date: 2026-11-22
"""

from alembic import op

revision = "0011"
down_revision = "0010"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.execute(
        """
        CREATE TABLE audit_backlog (
            seq bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
            id text NOT NULL,
            recorded timestamptz NOT NULL,
            content text NOT NULL
        )
        """
    )


def downgrade() -> None:
    # Records still waiting would be lost with the table: refuse rather than drop audit records.
    op.execute(
        """
        DO $$
        BEGIN
            IF EXISTS (SELECT 1 FROM audit_backlog) THEN
                RAISE EXCEPTION 'audit_backlog is not empty: run `pms audit catch-up` first';
            END IF;
        END $$
        """
    )
    op.execute("DROP TABLE audit_backlog")
