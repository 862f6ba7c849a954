"""Identity and access: signing keys, OAuth clients, users and roles, codes, refresh tokens, sessions.

These are the authorization server's own tables (not FHIR resources). Secrets are stored only as hashes.

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-22
"""

from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None

TABLES = [
    # RS256 keys; retired keys keep verifying tokens until `expires_at`.
    """
    CREATE TABLE auth_signing_key (
        kid          text PRIMARY KEY,
        private_pem  text        NOT NULL,
        public_jwk   jsonb       NOT NULL,
        created_at   timestamptz NOT NULL DEFAULT now(),
        retired_at   timestamptz,
        expires_at   timestamptz
    )
    """,
    """
    CREATE TABLE auth_client (
        client_id      text PRIMARY KEY,
        name           text        NOT NULL,
        kind           text        NOT NULL CHECK (kind IN ('public', 'confidential', 'backend')),
        secret_hash    text,
        redirect_uris  text[]      NOT NULL DEFAULT '{}',
        allowed_scopes text[]      NOT NULL DEFAULT '{}',
        grant_types    text[]      NOT NULL DEFAULT '{}',
        jwks           jsonb,
        jwks_uri       text,
        disabled       boolean     NOT NULL DEFAULT false,
        created_at     timestamptz NOT NULL DEFAULT now()
    )
    """,
    # Roles are data: each maps to grants (resource types x interactions), editable by admins.
    """
    CREATE TABLE auth_role (
        name        text PRIMARY KEY,
        description text  NOT NULL DEFAULT '',
        grants      jsonb NOT NULL
    )
    """,
    """
    CREATE TABLE auth_user (
        user_id             uuid PRIMARY KEY,
        username            text        NOT NULL UNIQUE,
        password_hash       text        NOT NULL,
        roles               text[]      NOT NULL DEFAULT '{}',
        fhir_user           text,
        totp_secret         text,
        totp_enabled        boolean     NOT NULL DEFAULT false,
        recovery_codes      text[]      NOT NULL DEFAULT '{}',
        failed_logins       integer     NOT NULL DEFAULT 0,
        locked_until        timestamptz,
        disabled            boolean     NOT NULL DEFAULT false,
        password_changed_at timestamptz NOT NULL DEFAULT now(),
        created_at          timestamptz NOT NULL DEFAULT now()
    )
    """,
    # Browser sessions of the authorization server (login, 2FA, consent).
    """
    CREATE TABLE auth_session (
        session_hash  text PRIMARY KEY,
        user_id       uuid        NOT NULL REFERENCES auth_user (user_id) ON DELETE CASCADE,
        mfa_passed    boolean     NOT NULL DEFAULT false,
        created_at    timestamptz NOT NULL DEFAULT now(),
        last_seen_at  timestamptz NOT NULL DEFAULT now(),
        expires_at    timestamptz NOT NULL,
        revoked       boolean     NOT NULL DEFAULT false
    )
    """,
    """
    CREATE TABLE auth_code (
        code_hash             text PRIMARY KEY,
        client_id             text        NOT NULL REFERENCES auth_client (client_id) ON DELETE CASCADE,
        user_id               uuid        NOT NULL REFERENCES auth_user (user_id) ON DELETE CASCADE,
        redirect_uri          text        NOT NULL,
        scope                 text        NOT NULL,
        code_challenge        text,
        code_challenge_method text,
        context               jsonb       NOT NULL DEFAULT '{}',
        nonce                 text,
        expires_at            timestamptz NOT NULL,
        used_at               timestamptz
    )
    """,
    # Refresh tokens rotate: each use issues a successor in the same family; reusing a spent token
    # revokes the whole family (reuse detection).
    """
    CREATE TABLE auth_refresh_token (
        token_hash         text PRIMARY KEY,
        family_id          uuid        NOT NULL,
        client_id          text        NOT NULL REFERENCES auth_client (client_id) ON DELETE CASCADE,
        user_id            uuid        REFERENCES auth_user (user_id) ON DELETE CASCADE,
        scope              text        NOT NULL,
        context            jsonb       NOT NULL DEFAULT '{}',
        issued_at          timestamptz NOT NULL DEFAULT now(),
        expires_at         timestamptz NOT NULL,
        session_started_at timestamptz NOT NULL,
        used_at            timestamptz,
        revoked            boolean     NOT NULL DEFAULT false
    )
    """,
    "CREATE INDEX auth_refresh_token_family ON auth_refresh_token (family_id)",
    # EHR launch contexts (`launch` parameter) and used client-assertion ids (replay protection).
    """
    CREATE TABLE auth_launch (
        launch_id  text PRIMARY KEY,
        context    jsonb       NOT NULL,
        created_by uuid        REFERENCES auth_user (user_id) ON DELETE CASCADE,
        expires_at timestamptz NOT NULL
    )
    """,
    """
    CREATE TABLE auth_used_jti (
        jti        text PRIMARY KEY,
        expires_at timestamptz NOT NULL
    )
    """,
    # Emergency access: time-limited override of role limits for one patient, with a stated reason.
    """
    CREATE TABLE auth_break_glass (
        id         uuid PRIMARY KEY,
        user_id    uuid        NOT NULL REFERENCES auth_user (user_id) ON DELETE CASCADE,
        patient    text        NOT NULL,
        reason     text        NOT NULL,
        granted_at timestamptz NOT NULL DEFAULT now(),
        expires_at timestamptz NOT NULL
    )
    """,
    "CREATE INDEX auth_break_glass_user ON auth_break_glass (user_id, expires_at)",
]


def upgrade() -> None:
    for statement in TABLES:
        op.execute(statement)


def downgrade() -> None:
    for table in (
        "auth_break_glass",
        "auth_used_jti",
        "auth_launch",
        "auth_refresh_token",
        "auth_code",
        "auth_session",
        "auth_user",
        "auth_role",
        "auth_client",
        "auth_signing_key",
    ):
        op.execute(f"DROP TABLE {table}")
