"""Core table definitions for user accounts, roles and emergency access (schema: migration 0003)."""

from __future__ import annotations

from sqlalchemy import BigInteger, Boolean, Column, DateTime, Integer, MetaData, Table, Text, Uuid
from sqlalchemy.dialects.postgresql import ARRAY, JSONB

metadata = MetaData()

auth_role = Table(
    "auth_role",
    metadata,
    Column("name", Text, primary_key=True),
    Column("description", Text, nullable=False),
    Column("grants", JSONB, nullable=False),
)

auth_user = Table(
    "auth_user",
    metadata,
    Column("user_id", Uuid, primary_key=True),
    Column("username", Text, nullable=False, unique=True),
    Column("password_hash", Text, nullable=False),
    Column("roles", ARRAY(Text), nullable=False),
    Column("fhir_user", Text),
    Column("totp_secret", Text),
    Column("totp_enabled", Boolean, nullable=False),
    Column("recovery_codes", ARRAY(Text), nullable=False),  # argon2 hashes; a used code is removed
    Column("failed_logins", Integer, nullable=False),
    Column("locked_until", DateTime(timezone=True)),
    Column("disabled", Boolean, nullable=False),
    Column("password_changed_at", DateTime(timezone=True), nullable=False),
    Column("created_at", DateTime(timezone=True), nullable=False),
    # The time step of the last TOTP code accepted (replay protection). Added by a later migration: the
    # account store only reads or writes it once the column exists (see accounts._tracks_totp_step).
    Column("totp_last_step", BigInteger),
)

auth_break_glass = Table(
    "auth_break_glass",
    metadata,
    Column("id", Uuid, primary_key=True),
    Column("user_id", Uuid, nullable=False),
    Column("patient", Text, nullable=False),
    Column("reason", Text, nullable=False),
    Column("granted_at", DateTime(timezone=True), nullable=False),
    Column("expires_at", DateTime(timezone=True), nullable=False),
)

# Only what disabling an account needs of the authorization server's session tables (owned by
# storage/identity.py): their `revoked` flags.
auth_session = Table(
    "auth_session",
    metadata,
    Column("session_hash", Text, primary_key=True),
    Column("user_id", Uuid, nullable=False),
    Column("revoked", Boolean, nullable=False),
)

auth_refresh_token = Table(
    "auth_refresh_token",
    metadata,
    Column("token_hash", Text, primary_key=True),
    Column("user_id", Uuid),
    Column("revoked", Boolean, nullable=False),
)
