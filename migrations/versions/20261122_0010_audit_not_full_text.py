"""AuditEvents leave the full-text columns empty (`_content`, `_text`).

Every read writes an AuditEvent, so they soon outnumber everything else, and their full-text vectors were
half of the database's CPU per audit record (0.50 → 0.27 ms per record in batches of 32, measured with
the AuditWriter's own statement): building a tsvector of every string and inserting it into a GIN index.
The audit trail is searched by entity, agent, date, type and outcome, which keep their indexes; the search
parser treats `_content`/`_text` on AuditEvent as unsupported (pms.fhir.search.parse.FULL_TEXT_EXCLUDED).

Re-adding the generated columns recomputes them for every row: on a large database, expect this
migration to take as long as a full table rewrite.

Revision ID: 0010
Revises: 0009
Create Date: 2026-11-22
"""

from alembic import op

revision = "0010"
down_revision = "0009"
branch_labels = None
depends_on = None

CONTENT = "jsonb_to_tsvector('simple'::regconfig, coalesce(content, '{}'::jsonb), '[\"string\"]'::jsonb)"
NARRATIVE = (
    "to_tsvector('simple'::regconfig, "
    "regexp_replace(coalesce(content #>> '{text,div}', ''), '<[^>]*>', ' ', 'g'))"
)
EXCLUDED = "resource_type = 'AuditEvent'"  # the types of FULL_TEXT_EXCLUDED, as of this revision


def _full_text_columns(content: str, narrative: str) -> None:
    op.execute("ALTER TABLE resource DROP COLUMN fts_content, DROP COLUMN fts_text")
    op.execute(
        f"ALTER TABLE resource ADD COLUMN fts_content tsvector GENERATED ALWAYS AS ({content}) STORED, "
        f"ADD COLUMN fts_text tsvector GENERATED ALWAYS AS ({narrative}) STORED"
    )
    op.execute("CREATE INDEX resource_fts_content ON resource USING gin (fts_content)")
    op.execute("CREATE INDEX resource_fts_text ON resource USING gin (fts_text)")


def upgrade() -> None:
    _full_text_columns(
        f"CASE WHEN {EXCLUDED} THEN NULL ELSE {CONTENT} END",
        f"CASE WHEN {EXCLUDED} THEN NULL ELSE {NARRATIVE} END",
    )


def downgrade() -> None:
    _full_text_columns(CONTENT, NARRATIVE)
