"""Helpers shared by the integration tests: authenticated FHIR clients.

The session's server gets one backend client registered with `system/*.*` (as `pms client create` would)
and a token from `/oauth2/token` (client_credentials, client_secret_basic): the tests exercise the API
the way an integrator does. `SYSTEM_TOKENS` maps a server URL to that token.
"""

from __future__ import annotations

import asyncio
import secrets
import socket
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import UTC, datetime

import httpx
import uvicorn
from starlette.types import ASGIApp

from pms.auth.keys import KeyRing
from pms.auth.rbac import role_rows
from pms.auth.tokens import issue_access_token
from pms.config import Settings
from pms.core.db import Database
from pms.storage import accounts, identity

SYSTEM_TOKENS: dict[str, str] = {}


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@asynccontextmanager
async def served(app: ASGIApp, port: int | None = None) -> AsyncIterator[str]:
    """`app` served by a real uvicorn on 127.0.0.1 (a free port unless given); its base URL."""
    port = port or free_port()
    config = uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning", access_log=False)
    server = uvicorn.Server(config)
    task = asyncio.create_task(server.serve())
    while not server.started:
        if task.done():
            task.result()
        await asyncio.sleep(0.02)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        await task


async def system_token(server_url: str, settings: Settings) -> str:
    """Register a backend client with system/*.* and get a token for it, as an integrator would."""
    secret = secrets.token_urlsafe(24)
    db = await Database.open(settings)
    try:
        async with db.transaction() as conn:
            client = await identity.create_client(
                conn,
                name="test suite",
                kind="confidential",
                grant_types=["client_credentials"],
                scopes=["system/*.*"],
                secret=secret,
                now=datetime.now(UTC),
            )
    finally:
        await db.dispose()
    async with httpx.AsyncClient(timeout=60) as http:
        response = await http.post(
            f"{server_url}/oauth2/token",
            data={"grant_type": "client_credentials", "scope": "system/*.*"},
            auth=(client.client_id, secret),
        )
    assert response.status_code == 200, response.text
    token: str = response.json()["access_token"]
    return token


def auth_headers(server_url: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {SYSTEM_TOKENS[server_url]}"}


def fhir_client(server_url: str, *, timeout: float = 60) -> httpx.AsyncClient:
    """An httpx client for `{server_url}/fhir` carrying the session's system token."""
    return httpx.AsyncClient(base_url=f"{server_url}/fhir", timeout=timeout, headers=auth_headers(server_url))


class TokenMinter:
    """Users with given roles and access tokens for them, signed with the server's own key exactly as
    the token endpoint signs them (tests of enforcement need many principals, not many logins)."""

    def __init__(self, server_url: str, database: Database) -> None:
        self.base = f"{server_url}/fhir"
        self.database = database
        self.client_id = ""

    async def setup(self) -> None:
        async with self.database.transaction() as conn:
            await accounts.seed_roles(conn, roles=role_rows())
            client = await identity.create_client(
                conn,
                name="test app",
                kind="public",
                grant_types=["authorization_code"],
                scopes=["patient/*.cruds", "user/*.cruds", "openid", "fhirUser", "launch/patient"],
                redirect_uris=["http://127.0.0.1/callback"],
                now=datetime.now(UTC),
            )
        self.client_id = client.client_id

    async def token(
        self, *, scope: str, roles: list[str], fhir_user: str | None = None, patient: str | None = None
    ) -> str:
        async with self.database.transaction() as conn:
            user = await accounts.create_user(
                conn,
                username=f"u{uuid.uuid4().hex[:12]}",
                password="correct horse battery staple",
                roles=roles,
                fhir_user=fhir_user,
            )
            await identity.ensure_signing_key(conn, now=datetime.now(UTC))
            ring = KeyRing.of(await identity.load_keys(conn, now=datetime.now(UTC)), now=datetime.now(UTC))
        key = ring.signing
        assert key is not None
        return issue_access_token(
            key,
            issuer=self.base,
            audience=self.base,
            subject=str(user.user_id),
            client_id=self.client_id,
            scope=scope,
            lifetime=600,
            context={"patient": patient} if patient else None,
            fhir_user=fhir_user,
        )

    def http(self, token: str) -> httpx.AsyncClient:
        return httpx.AsyncClient(base_url=self.base, timeout=60, headers={"Authorization": f"Bearer {token}"})
