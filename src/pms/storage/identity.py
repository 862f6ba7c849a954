"""SQL for the authorization server's own tables (migration 0003): keys, clients, codes, refresh tokens,
browser sessions, EHR launches and used JWT ids.

Credentials are never stored in the clear: client secrets are argon2 hashes (they may be chosen by a
person); codes, refresh tokens and session cookies are 256-bit random values stored as SHA-256 hashes
(their entropy makes a slow hash pointless). Functions run inside the caller's transaction and never
commit.
"""

from __future__ import annotations

import asyncio
import hashlib
import secrets
import time
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any, Literal

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError
from sqlalchemy import (
    Boolean,
    Column,
    DateTime,
    MetaData,
    Table,
    Text,
    delete,
    func,
    insert,
    or_,
    select,
    text,
    update,
)
from sqlalchemy.dialects.postgresql import ARRAY, JSONB, UUID
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.ext.asyncio import AsyncConnection

from pms.auth.clients import ClientRegistration
from pms.auth.keys import KeyRing, SigningKey, generate_rsa_key
from pms.auth.tokens import Claims, unverified_header, verify_access_token
from pms.core.db import Database
from pms.core.errors import conflict

metadata = MetaData()

auth_signing_key = Table(
    "auth_signing_key",
    metadata,
    Column("kid", Text, primary_key=True),
    Column("private_pem", Text, nullable=False),
    Column("public_jwk", JSONB, nullable=False),
    Column("created_at", DateTime(timezone=True), nullable=False),
    Column("retired_at", DateTime(timezone=True)),
    Column("expires_at", DateTime(timezone=True)),
)

auth_client = Table(
    "auth_client",
    metadata,
    Column("client_id", Text, primary_key=True),
    Column("name", Text, nullable=False),
    Column("kind", Text, nullable=False),
    Column("secret_hash", Text),
    Column("redirect_uris", ARRAY(Text), nullable=False),
    Column("allowed_scopes", ARRAY(Text), nullable=False),
    Column("grant_types", ARRAY(Text), nullable=False),
    Column("jwks", JSONB),
    Column("jwks_uri", Text),
    Column("disabled", Boolean, nullable=False),
    Column("created_at", DateTime(timezone=True), nullable=False),
)

auth_session = Table(
    "auth_session",
    metadata,
    Column("session_hash", Text, primary_key=True),
    Column("user_id", UUID(as_uuid=True), nullable=False),
    Column("mfa_passed", Boolean, nullable=False),
    Column("created_at", DateTime(timezone=True), nullable=False),
    Column("last_seen_at", DateTime(timezone=True), nullable=False),
    Column("expires_at", DateTime(timezone=True), nullable=False),
    Column("revoked", Boolean, nullable=False),
)

auth_code = Table(
    "auth_code",
    metadata,
    Column("code_hash", Text, primary_key=True),
    Column("client_id", Text, nullable=False),
    Column("user_id", UUID(as_uuid=True), nullable=False),
    Column("redirect_uri", Text, nullable=False),
    Column("scope", Text, nullable=False),
    Column("code_challenge", Text),
    Column("code_challenge_method", Text),
    Column("context", JSONB, nullable=False),
    Column("nonce", Text),
    Column("expires_at", DateTime(timezone=True), nullable=False),
    Column("used_at", DateTime(timezone=True)),
)

auth_refresh_token = Table(
    "auth_refresh_token",
    metadata,
    Column("token_hash", Text, primary_key=True),
    Column("family_id", UUID(as_uuid=True), nullable=False),
    Column("client_id", Text, nullable=False),
    Column("user_id", UUID(as_uuid=True)),
    Column("scope", Text, nullable=False),
    Column("context", JSONB, nullable=False),
    Column("issued_at", DateTime(timezone=True), nullable=False),
    Column("expires_at", DateTime(timezone=True), nullable=False),
    Column("session_started_at", DateTime(timezone=True), nullable=False),
    Column("used_at", DateTime(timezone=True)),
    Column("revoked", Boolean, nullable=False),
)

auth_launch = Table(
    "auth_launch",
    metadata,
    Column("launch_id", Text, primary_key=True),
    Column("context", JSONB, nullable=False),
    Column("created_by", UUID(as_uuid=True)),
    Column("expires_at", DateTime(timezone=True), nullable=False),
)

auth_used_jti = Table(
    "auth_used_jti",
    metadata,
    Column("jti", Text, primary_key=True),
    Column("expires_at", DateTime(timezone=True), nullable=False),
)

_hasher = PasswordHasher()
# pg_advisory_xact_lock key serialising signing-key creation across processes ("PMSK").
_KEY_LOCK = 0x504D534B


def new_secret() -> str:
    """A random credential with 256 bits of entropy, URL-safe."""
    return secrets.token_urlsafe(32)


def token_hash(raw: str) -> str:
    return hashlib.sha256(raw.encode("utf-8")).hexdigest()


# -- signing keys ------------------------------------------------------------------------------------------


def _signing_key(row: Any) -> SigningKey:
    return SigningKey(
        row.kid, row.private_pem, dict(row.public_jwk), row.created_at, row.retired_at, row.expires_at
    )


async def load_keys(conn: AsyncConnection, *, now: datetime) -> list[SigningKey]:
    """Every key that still verifies (not past `expires_at`), the current signing key included."""
    rows = await conn.execute(
        select(auth_signing_key).where(
            or_(auth_signing_key.c.expires_at.is_(None), auth_signing_key.c.expires_at > now)
        )
    )
    return [_signing_key(row) for row in rows]


async def _insert_key(conn: AsyncConnection, *, now: datetime) -> SigningKey:
    pem, public = generate_rsa_key()
    key = SigningKey(public["kid"], pem, public, now)
    await conn.execute(
        insert(auth_signing_key).values(
            kid=key.kid, private_pem=pem, public_jwk=public, created_at=now, retired_at=None
        )
    )
    return key


async def ensure_signing_key(conn: AsyncConnection, *, now: datetime) -> None:
    """Create the first signing key unless one is current (safe when several processes start at once)."""
    await conn.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": _KEY_LOCK})
    current = await conn.scalar(
        select(func.count()).select_from(auth_signing_key).where(auth_signing_key.c.retired_at.is_(None))
    )
    if not current:
        await _insert_key(conn, now=now)


async def rotate_signing_key(conn: AsyncConnection, *, now: datetime, retain_for: timedelta) -> SigningKey:
    """A new key signs from now on; the previous ones are retired and kept for verification until every
    token they signed has expired (`retain_for` = the longest token lifetime). Long-expired keys go."""
    await conn.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": _KEY_LOCK})
    await conn.execute(
        update(auth_signing_key)
        .where(auth_signing_key.c.retired_at.is_(None))
        .values(retired_at=now, expires_at=now + retain_for)
    )
    await conn.execute(delete(auth_signing_key).where(auth_signing_key.c.expires_at <= now))
    return await _insert_key(conn, now=now)


def _utcnow() -> datetime:
    return datetime.now(UTC)


class KeyCache:
    """The process's view of the key ring, reloaded every `ttl` seconds so that a rotation done by
    `pms keys rotate` (another process) is picked up; an unknown `kid` forces an early reload, at most
    once per `min_reload` seconds."""

    def __init__(self, db: Database, *, ttl: float = 10.0, min_reload: float = 2.0) -> None:
        self.db = db
        self.ttl = ttl
        self.min_reload = min_reload
        self._ring: KeyRing | None = None
        self._loaded = 0.0
        self._lock = asyncio.Lock()

    async def ring(self, *, force: bool = False) -> KeyRing:
        age = time.monotonic() - self._loaded
        if self._ring is not None and age < self.ttl and not (force and age >= self.min_reload):
            return self._ring
        async with self._lock:
            if self._ring is not None and time.monotonic() - self._loaded < min(self.min_reload, self.ttl):
                return self._ring  # another task reloaded while we waited
            now = _utcnow()
            async with self.db.reader() as conn:
                keys = await load_keys(conn, now=now)
            ring = KeyRing.of(keys, now=now)
            if ring.signing is None:
                async with self.db.transaction() as conn:
                    await ensure_signing_key(conn, now=now)
                    ring = KeyRing.of(await load_keys(conn, now=now), now=now)
            self._ring, self._loaded = ring, time.monotonic()
            return ring

    async def signing_key(self) -> SigningKey:
        ring = await self.ring()
        assert ring.signing is not None, "ring() always ensures a signing key"
        return ring.signing

    async def verify_access_token(self, token: str, *, audience: str, issuer: str) -> Claims:
        """`pms.auth.tokens.verify_access_token` against the current ring, reloading it once when the
        token names a kid we have not seen (a key rotated by another process)."""
        ring = await self.ring()
        kid = unverified_header(token).get("kid")
        if isinstance(kid, str) and ring.get(kid) is None:
            ring = await self.ring(force=True)
        return verify_access_token(token, ring, audience=audience, issuer=issuer)

    def invalidate(self) -> None:
        self._loaded = 0.0


# -- clients -----------------------------------------------------------------------------------------------

ClientKind = Literal["public", "confidential", "backend"]


@dataclass(frozen=True)
class Client:
    client_id: str
    name: str
    kind: ClientKind
    redirect_uris: tuple[str, ...]
    allowed_scopes: tuple[str, ...]
    grant_types: tuple[str, ...]
    secret_hash: str | None = field(default=None, repr=False)
    jwks: dict[str, Any] | None = None
    jwks_uri: str | None = None
    disabled: bool = False
    created_at: datetime | None = None

    @property
    def is_public(self) -> bool:
        return self.kind == "public"


def _client(row: Any) -> Client:
    return Client(
        client_id=row.client_id,
        name=row.name,
        kind=row.kind,
        redirect_uris=tuple(row.redirect_uris or ()),
        allowed_scopes=tuple(row.allowed_scopes or ()),
        grant_types=tuple(row.grant_types or ()),
        secret_hash=row.secret_hash,
        jwks=row.jwks,
        jwks_uri=row.jwks_uri,
        disabled=row.disabled,
        created_at=row.created_at,
    )


async def create_client(
    conn: AsyncConnection,
    *,
    name: str,
    kind: ClientKind,
    grant_types: Sequence[str],
    scopes: Sequence[str],
    redirect_uris: Sequence[str] = (),
    secret: str | None = None,
    jwks: Mapping[str, Any] | None = None,
    jwks_uri: str | None = None,
    client_id: str | None = None,
    now: datetime,
) -> Client:
    """Register a client. A secret is stored only as its argon2 hash."""
    values = {
        "client_id": client_id or str(uuid.uuid4()),
        "name": name,
        "kind": kind,
        "secret_hash": _hasher.hash(secret) if secret else None,
        "redirect_uris": list(redirect_uris),
        "allowed_scopes": list(scopes),
        "grant_types": list(grant_types),
        "jwks": dict(jwks) if jwks is not None else None,
        "jwks_uri": jwks_uri,
        "disabled": False,
        "created_at": now,
    }
    row = (await conn.execute(insert(auth_client).values(**values).returning(auth_client))).one()
    return _client(row)


async def ensure_public_client(
    conn: AsyncConnection,
    *,
    client_id: str,
    name: str,
    scopes: Sequence[str],
    redirect_uris: Sequence[str],
    now: datetime,
) -> Client:
    """Register a first-party public client (PKCE, no secret), or bring an existing registration's name,
    scopes and redirect URIs up to date. Idempotent and safe when several workers start at once."""
    values = {
        "client_id": client_id,
        "name": name,
        "kind": "public",
        "secret_hash": None,
        "redirect_uris": list(redirect_uris),
        "allowed_scopes": list(scopes),
        "grant_types": ["authorization_code", "refresh_token"],
        "jwks": None,
        "jwks_uri": None,
        "disabled": False,
        "created_at": now,
    }
    statement = pg_insert(auth_client).values(**values)
    statement = statement.on_conflict_do_update(
        index_elements=[auth_client.c.client_id],
        set_={
            "name": statement.excluded.name,
            "kind": statement.excluded.kind,
            "secret_hash": None,
            "redirect_uris": statement.excluded.redirect_uris,
            "allowed_scopes": statement.excluded.allowed_scopes,
            "grant_types": statement.excluded.grant_types,
        },
    )
    row = (await conn.execute(statement.returning(auth_client))).one()
    return _client(row)


async def register_client(
    conn: AsyncConnection, registration: ClientRegistration, *, now: datetime
) -> Client:
    """Store a checked registration (auth/clients.py); 409 when its chosen client_id is taken."""
    if registration.client_id and await get_client(conn, registration.client_id) is not None:
        raise conflict(f"A client with client_id {registration.client_id!r} already exists")
    return await create_client(
        conn,
        name=registration.name,
        kind=registration.kind,
        grant_types=registration.grant_types,
        scopes=registration.scopes,
        redirect_uris=registration.redirect_uris,
        secret=registration.secret,
        jwks=registration.jwks,
        jwks_uri=registration.jwks_uri,
        client_id=registration.client_id,
        now=now,
    )


async def get_client(conn: AsyncConnection, client_id: str) -> Client | None:
    row = (await conn.execute(select(auth_client).where(auth_client.c.client_id == client_id))).first()
    return None if row is None else _client(row)


async def list_clients(conn: AsyncConnection) -> list[Client]:
    rows = await conn.execute(select(auth_client).order_by(auth_client.c.created_at, auth_client.c.name))
    return [_client(row) for row in rows]


async def set_client_disabled(conn: AsyncConnection, client_id: str, *, disabled: bool) -> bool:
    result = await conn.execute(
        update(auth_client).where(auth_client.c.client_id == client_id).values(disabled=disabled)
    )
    return bool(result.rowcount)


def verify_client_secret(client: Client, secret: str) -> bool:
    if not client.secret_hash:
        return False
    try:
        return _hasher.verify(client.secret_hash, secret)
    except (VerificationError, InvalidHashError):
        return False


# -- authorization codes (RFC 6749 §4.1.2: short-lived, single use) ---------------------------------------


@dataclass(frozen=True)
class AuthCode:
    code_hash: str
    client_id: str
    user_id: uuid.UUID
    redirect_uri: str
    scope: str
    code_challenge: str | None
    code_challenge_method: str | None
    context: dict[str, Any]
    nonce: str | None
    expires_at: datetime

    @property
    def family_id(self) -> uuid.UUID:
        return code_family(self.code_hash)


def code_family(code_hash: str) -> uuid.UUID:
    """The refresh-token family of tokens issued from a code, derived from the code's hash, so that a
    replayed code can revoke them (RFC 6749 §4.1.2, §10.5)."""
    return uuid.UUID(bytes=bytes.fromhex(code_hash)[:16], version=4)


async def create_code(
    conn: AsyncConnection,
    *,
    client_id: str,
    user_id: uuid.UUID,
    redirect_uri: str,
    scope: str,
    code_challenge: str | None,
    code_challenge_method: str | None,
    context: Mapping[str, Any],
    nonce: str | None,
    expires_at: datetime,
) -> str:
    code = new_secret()
    await conn.execute(
        insert(auth_code).values(
            code_hash=token_hash(code),
            client_id=client_id,
            user_id=user_id,
            redirect_uri=redirect_uri,
            scope=scope,
            code_challenge=code_challenge,
            code_challenge_method=code_challenge_method,
            context=dict(context),
            nonce=nonce,
            expires_at=expires_at,
            used_at=None,
        )
    )
    return code


CodeStatus = Literal["ok", "unknown", "expired", "reused"]


async def redeem_code(
    conn: AsyncConnection, *, code: str, now: datetime
) -> tuple[CodeStatus, AuthCode | None]:
    """Spend a code: one atomic UPDATE marks it used, so of two concurrent redemptions one wins. A code
    presented again revokes every refresh token issued from it."""
    hashed = token_hash(code)
    row = (
        await conn.execute(
            update(auth_code)
            .where(auth_code.c.code_hash == hashed, auth_code.c.used_at.is_(None))
            .values(used_at=now)
            .returning(auth_code)
        )
    ).first()
    if row is None:
        used = await conn.scalar(select(auth_code.c.used_at).where(auth_code.c.code_hash == hashed))
        if used is None:
            return "unknown", None
        await revoke_family(conn, code_family(hashed))
        return "reused", None
    record = AuthCode(
        row.code_hash,
        row.client_id,
        row.user_id,
        row.redirect_uri,
        row.scope,
        row.code_challenge,
        row.code_challenge_method,
        dict(row.context or {}),
        row.nonce,
        row.expires_at,
    )
    if record.expires_at <= now:
        return "expired", record
    return "ok", record


# -- refresh tokens (rotation with reuse detection; OAuth 2.0 Security BCP §4.14.2) -----------------------


@dataclass(frozen=True)
class RefreshToken:
    token_hash: str
    family_id: uuid.UUID
    client_id: str
    user_id: uuid.UUID | None
    scope: str
    context: dict[str, Any]
    issued_at: datetime
    expires_at: datetime
    session_started_at: datetime
    used_at: datetime | None
    revoked: bool

    def usable_at(self, now: datetime) -> bool:
        return self.used_at is None and not self.revoked and self.expires_at > now


def _refresh(row: Any) -> RefreshToken:
    return RefreshToken(
        row.token_hash,
        row.family_id,
        row.client_id,
        row.user_id,
        row.scope,
        dict(row.context or {}),
        row.issued_at,
        row.expires_at,
        row.session_started_at,
        row.used_at,
        row.revoked,
    )


async def issue_refresh_token(
    conn: AsyncConnection,
    *,
    family_id: uuid.UUID,
    client_id: str,
    user_id: uuid.UUID | None,
    scope: str,
    context: Mapping[str, Any],
    now: datetime,
    expires_at: datetime,
    session_started_at: datetime,
) -> str:
    token = new_secret()
    await conn.execute(
        insert(auth_refresh_token).values(
            token_hash=token_hash(token),
            family_id=family_id,
            client_id=client_id,
            user_id=user_id,
            scope=scope,
            context=dict(context),
            issued_at=now,
            expires_at=expires_at,
            session_started_at=session_started_at,
            used_at=None,
            revoked=False,
        )
    )
    return token


async def find_refresh_token(
    conn: AsyncConnection, token: str, *, for_update: bool = False
) -> RefreshToken | None:
    """Look a refresh token up by its hash; `for_update` locks the row for the rest of the transaction,
    so two concurrent uses of one token serialise and the second sees it spent."""
    query = select(auth_refresh_token).where(auth_refresh_token.c.token_hash == token_hash(token))
    if for_update:
        query = query.with_for_update()
    row = (await conn.execute(query)).first()
    return None if row is None else _refresh(row)


async def mark_refresh_used(conn: AsyncConnection, record: RefreshToken, *, now: datetime) -> None:
    await conn.execute(
        update(auth_refresh_token)
        .where(auth_refresh_token.c.token_hash == record.token_hash)
        .values(used_at=now)
    )


async def revoke_family(conn: AsyncConnection, family_id: uuid.UUID) -> int:
    result = await conn.execute(
        update(auth_refresh_token)
        .where(auth_refresh_token.c.family_id == family_id, auth_refresh_token.c.revoked.is_(False))
        .values(revoked=True)
    )
    return int(result.rowcount or 0)


async def revoke_session_tokens(conn: AsyncConnection, session_hash: str) -> int:
    """Revoke the refresh tokens granted through one browser session (their context records `sid`)."""
    result = await conn.execute(
        update(auth_refresh_token)
        .where(
            auth_refresh_token.c.context["sid"].astext == session_hash,
            auth_refresh_token.c.revoked.is_(False),
        )
        .values(revoked=True)
    )
    return int(result.rowcount or 0)


# -- browser sessions --------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Session:
    session_hash: str
    user_id: uuid.UUID
    mfa_passed: bool
    created_at: datetime
    last_seen_at: datetime
    expires_at: datetime


async def create_session(
    conn: AsyncConnection, *, user_id: uuid.UUID, now: datetime, lifetime: timedelta
) -> tuple[str, Session]:
    """A new session; returns (the cookie value, the record). Only the cookie's hash is stored."""
    cookie = new_secret()
    session = Session(token_hash(cookie), user_id, False, now, now, now + lifetime)
    await conn.execute(
        insert(auth_session).values(
            session_hash=session.session_hash,
            user_id=user_id,
            mfa_passed=False,
            created_at=now,
            last_seen_at=now,
            expires_at=session.expires_at,
            revoked=False,
        )
    )
    return cookie, session


async def get_session(
    conn: AsyncConnection, *, cookie: str, now: datetime, idle_timeout: timedelta
) -> Session | None:
    """The live session behind a cookie, touched (idle timer restarted); None when unknown, revoked,
    past its absolute lifetime or idle for longer than `idle_timeout` (HIPAA automatic logoff)."""
    row = (
        await conn.execute(
            update(auth_session)
            .where(
                auth_session.c.session_hash == token_hash(cookie),
                auth_session.c.revoked.is_(False),
                auth_session.c.expires_at > now,
                auth_session.c.last_seen_at > now - idle_timeout,
            )
            .values(last_seen_at=now)
            .returning(auth_session)
        )
    ).first()
    if row is None:
        return None
    return Session(row.session_hash, row.user_id, row.mfa_passed, row.created_at, now, row.expires_at)


async def pass_mfa(conn: AsyncConnection, session_hash: str) -> None:
    await conn.execute(
        update(auth_session).where(auth_session.c.session_hash == session_hash).values(mfa_passed=True)
    )


async def revoke_session(conn: AsyncConnection, *, cookie: str) -> Session | None:
    """End a session and revoke the refresh tokens granted through it. Returns the session, if any."""
    row = (
        await conn.execute(
            update(auth_session)
            .where(auth_session.c.session_hash == token_hash(cookie), auth_session.c.revoked.is_(False))
            .values(revoked=True)
            .returning(auth_session)
        )
    ).first()
    if row is None:
        return None
    await revoke_session_tokens(conn, row.session_hash)
    return Session(
        row.session_hash, row.user_id, row.mfa_passed, row.created_at, row.last_seen_at, row.expires_at
    )


# -- EHR launches ------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Launch:
    launch_id: str
    context: dict[str, Any]
    created_by: uuid.UUID | None
    expires_at: datetime


async def create_launch(
    conn: AsyncConnection,
    *,
    context: Mapping[str, Any],
    created_by: uuid.UUID | None,
    expires_at: datetime,
) -> str:
    """Record an EHR launch context (patient, encounter) behind an opaque `launch` id (SMART §ehr)."""
    launch_id = secrets.token_urlsafe(24)
    await conn.execute(
        insert(auth_launch).values(
            launch_id=launch_id, context=dict(context), created_by=created_by, expires_at=expires_at
        )
    )
    return launch_id


async def get_launch(conn: AsyncConnection, launch_id: str, *, now: datetime) -> Launch | None:
    row = (
        await conn.execute(
            select(auth_launch).where(auth_launch.c.launch_id == launch_id, auth_launch.c.expires_at > now)
        )
    ).first()
    return None if row is None else Launch(row.launch_id, dict(row.context), row.created_by, row.expires_at)


# -- used JWT ids ------------------------------------------------------------------------------------------


class UsedJtiStore:
    """`auth_used_jti` as the `JtiStore` of `pms.auth.assertions`: one INSERT decides, so two concurrent
    uses of one assertion cannot both pass. An entry past its expiry may be reused (its JWT is dead)."""

    def __init__(self, conn: AsyncConnection, *, now: datetime) -> None:
        self.conn = conn
        self.now = now

    async def remember(self, jti: str, expires_at: int) -> bool:
        until = datetime.fromtimestamp(expires_at, UTC)
        insert_ = pg_insert(auth_used_jti).values(jti=jti, expires_at=until)
        statement = insert_.on_conflict_do_update(
            index_elements=[auth_used_jti.c.jti],
            set_={"expires_at": insert_.excluded.expires_at},
            where=auth_used_jti.c.expires_at <= self.now,
        ).returning(auth_used_jti.c.jti)
        return (await self.conn.execute(statement)).first() is not None


async def revoke_access_token(conn: AsyncConnection, *, jti: str, expires_at: int, now: datetime) -> None:
    """Remember a revoked access token's jti until it would have expired (RFC 7009 §2.1)."""
    await UsedJtiStore(conn, now=now).remember(f"revoked:{jti}", expires_at)


async def access_token_revoked(conn: AsyncConnection, *, jti: str) -> bool:
    found = await conn.scalar(select(auth_used_jti.c.jti).where(auth_used_jti.c.jti == f"revoked:{jti}"))
    return found is not None


async def purge_expired(conn: AsyncConnection, *, now: datetime) -> None:
    """Housekeeping: drop codes, sessions, launches, jtis and refresh tokens that can no longer matter."""
    await conn.execute(delete(auth_code).where(auth_code.c.expires_at < now - timedelta(days=1)))
    await conn.execute(delete(auth_session).where(auth_session.c.expires_at < now))
    await conn.execute(delete(auth_launch).where(auth_launch.c.expires_at < now))
    await conn.execute(delete(auth_used_jti).where(auth_used_jti.c.expires_at < now))
    await conn.execute(
        delete(auth_refresh_token).where(auth_refresh_token.c.expires_at < now - timedelta(days=1))
    )
