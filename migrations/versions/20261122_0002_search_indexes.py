"""Search indexes: one typed table per search parameter type, plus full-text vectors on resource.

Every row carries `param`, a 64-bit hash of (resource type, parameter code), so one compact btree per
table serves every parameter, custom ones included (docs/search.md explains the layout and its numbers).
`grp` ties together the components of one composite value.

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-22
"""

from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None

TABLES = {
    "search_string": "norm text NOT NULL, exact text NOT NULL",
    "search_token": "system text, code text, text_norm text, type_system text, type_code text",
    "search_date": "low timestamptz NOT NULL, high timestamptz NOT NULL",
    "search_number": "value numeric NOT NULL, low numeric NOT NULL, high numeric NOT NULL",
    "search_quantity": (
        "value numeric, low numeric NOT NULL, high numeric NOT NULL, system text, code text, unit text"
    ),
    "search_reference": "target_type text, target_id text, version text, url text",
    "search_uri": "uri text NOT NULL",
}

INDEXES = [
    "CREATE INDEX search_string_prefix ON search_string (param, norm text_pattern_ops, rid)",
    "CREATE INDEX search_string_exact ON search_string (param, exact, rid)",
    "CREATE INDEX search_token_code ON search_token (param, code, system, rid)",
    "CREATE INDEX search_token_system ON search_token (param, system, rid)",
    "CREATE INDEX search_token_text ON search_token (param, text_norm text_pattern_ops, rid)",
    "CREATE INDEX search_date_low ON search_date (param, low, high, rid)",
    "CREATE INDEX search_date_high ON search_date (param, high, rid)",
    "CREATE INDEX search_number_value ON search_number (param, value, rid)",
    "CREATE INDEX search_quantity_value ON search_quantity (param, code, value, rid)",
    "CREATE INDEX search_quantity_any ON search_quantity (param, value, rid)",
    "CREATE INDEX search_reference_target ON search_reference (param, target_id, target_type, rid)",
    "CREATE INDEX search_reference_reverse ON search_reference (target_id, target_type, param, rid)",
    "CREATE INDEX search_reference_url ON search_reference (param, url, rid)",
    "CREATE INDEX search_uri_value ON search_uri (param, uri text_pattern_ops, rid)",
]


def upgrade() -> None:
    # pg_trgm speeds up `:contains`; a PostgreSQL without it (the pgserver wheel) still searches, by scanning.
    op.execute(
        """
        DO $$
        BEGIN
            CREATE EXTENSION IF NOT EXISTS pg_trgm;
        EXCEPTION WHEN OTHERS THEN
            RAISE NOTICE 'pg_trgm is not available: contains-searches will not use an index';
        END $$
        """
    )
    for table, columns in TABLES.items():
        op.execute(
            f"CREATE TABLE {table} (rid bigint NOT NULL, param bigint NOT NULL, grp smallint, {columns})"
        )
        # Writes replace a resource's rows by rid; reads join on (rid, param) for sorting and includes.
        op.execute(f"CREATE INDEX {table}_rid ON {table} (rid, param)")
    for statement in INDEXES:
        op.execute(statement)
    op.execute(
        """
        DO $$
        BEGIN
            IF EXISTS (SELECT 1 FROM pg_extension WHERE extname = 'pg_trgm') THEN
                CREATE INDEX search_string_trgm ON search_string USING gin (norm gin_trgm_ops);
            END IF;
        END $$
        """
    )
    # _content and _text (search.html#content): every string in the resource, and the narrative's text.
    op.execute(
        """
        ALTER TABLE resource
          ADD COLUMN fts_content tsvector GENERATED ALWAYS AS
            (jsonb_to_tsvector('simple'::regconfig, coalesce(content, '{}'::jsonb), '["string"]'::jsonb))
            STORED,
          ADD COLUMN fts_text tsvector GENERATED ALWAYS AS
            (to_tsvector('simple'::regconfig,
                         regexp_replace(coalesce(content #>> '{text,div}', ''), '<[^>]*>', ' ', 'g'))) STORED
        """
    )
    op.execute("CREATE INDEX resource_fts_content ON resource USING gin (fts_content)")
    op.execute("CREATE INDEX resource_fts_text ON resource USING gin (fts_text)")
    # Custom SearchParameters take effect after a reindex; workers notice through this counter.
    op.execute(
        "CREATE TABLE search_registry_state "
        "(id boolean PRIMARY KEY DEFAULT true CHECK (id), version bigint NOT NULL)"
    )
    op.execute("INSERT INTO search_registry_state (version) VALUES (0)")


def downgrade() -> None:
    op.execute("DROP TABLE search_registry_state")
    op.execute("ALTER TABLE resource DROP COLUMN fts_content, DROP COLUMN fts_text")
    for table in TABLES:
        op.execute(f"DROP TABLE {table}")
