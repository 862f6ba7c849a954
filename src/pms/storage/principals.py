"""Who a verified token speaks for: the user's roles and fhirUser, the client's registration, active
break-the-glass overrides, and whether the token was revoked.

Looked up once per (token, `ttl` seconds) per process: every request must not pay four queries, and a
disabled user, a changed role or a revoked token takes effect within `ttl` (default 10 s).
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime

from pms.auth.context import AccessContext, Principal
from pms.auth.rbac import Role, default_roles, roles_from_rows
from pms.auth.scopes import parse_scopes
from pms.auth.tokens import Claims
from pms.core.db import Database
from pms.core.errors import AppError, Issue
from pms.fhir.searchparams import Registry
from pms.storage import accounts, identity

_MAX_ENTRIES = 10_000


def unauthorized(description: str) -> AppError:
    """401 with the RFC 6750 challenge (section 3)."""
    challenge = f'Bearer realm="fhir", error="invalid_token", error_description="{description}"'
    return AppError(401, [Issue("login", description)], {"WWW-Authenticate": challenge})


@dataclass(frozen=True)
class _Entry:
    context: AccessContext
    loaded_at: float


class PrincipalDirectory:
    def __init__(self, db: Database, *, ttl: float = 10.0) -> None:
        self.db = db
        self.ttl = ttl
        self._entries: dict[str, _Entry] = {}
        self._roles: tuple[Mapping[str, Role], float] | None = None

    async def context(self, claims: Claims, registry: Registry) -> AccessContext:
        now = time.monotonic()
        key = f"{claims.token_id}|{id(registry)}"
        entry = self._entries.get(key)
        if entry is not None and now - entry.loaded_at < self.ttl:
            return entry.context
        context = await self._load(claims, registry)
        if len(self._entries) >= _MAX_ENTRIES:
            self._entries.clear()
        self._entries[key] = _Entry(context, now)
        return context

    def forget(self, token_id: str) -> None:
        """Drop what is cached for this token: its holder's access just changed (emergency access)."""
        for key in [k for k in self._entries if k.startswith(f"{token_id}|")]:
            del self._entries[key]

    async def _role_map(self) -> Mapping[str, Role]:
        now = time.monotonic()
        if self._roles is not None and now - self._roles[1] < self.ttl:
            return self._roles[0]
        async with self.db.reader() as conn:
            rows = await accounts.list_roles(conn)
        # Roles are data: admins edit auth_role; the shipped ones apply until rows exist.
        known = dict(default_roles())
        known.update(
            roles_from_rows({"name": r.name, "description": r.description, "grants": r.grants} for r in rows)
        )
        self._roles = (known, now)
        return known

    async def _load(self, claims: Claims, registry: Registry) -> AccessContext:
        now = datetime.now(UTC)
        async with self.db.reader() as conn:
            if await identity.access_token_revoked(conn, jti=claims.token_id):
                raise unauthorized("The access token was revoked")
            client = await identity.get_client(conn, claims.client_id) if claims.client_id else None
            if client is None or client.disabled:
                raise unauthorized("The token's client is unknown or disabled")
            scopes = parse_scopes(claims.scope, registry)
            if claims.user_id is None:
                principal = Principal(
                    subject=claims.subject,
                    kind="client",
                    client_id=claims.client_id,
                    scopes=scopes,
                    patient=claims.patient,
                    encounter=claims.encounter,
                )
            else:
                user = await accounts.get_user(conn, user_id=uuid.UUID(claims.user_id))
                if user is None or user.disabled:
                    raise unauthorized("The token's user is unknown or disabled")
                emergency = await accounts.active_emergency_patients(conn, user_id=user.user_id, now=now)
                principal = Principal(
                    subject=claims.subject,
                    kind="patient" if "patient" in user.roles else "user",
                    username=user.username,
                    fhir_user=user.fhir_user,
                    roles=frozenset(user.roles),
                    client_id=claims.client_id,
                    scopes=scopes,
                    patient=claims.patient,
                    encounter=claims.encounter,
                    break_glass=emergency,
                )
        return AccessContext.create(
            principal, roles=await self._role_map(), client_scopes=client.allowed_scopes, registry=registry
        )
