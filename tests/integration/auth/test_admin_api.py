"""Administration over HTTP (issue: identity, access and audit): admins register OAuth clients and edit
roles through an API; every change is audited; nobody else may."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
from tests.support import TokenMinter, fhir_client

from pms.core.db import Database


@pytest.fixture(scope="module")
async def minter(server_url: str, settings: Any) -> AsyncIterator[TokenMinter]:
    database = await Database.open(settings)
    try:
        minter = TokenMinter(server_url, database)
        await minter.setup()
        yield minter
    finally:
        await database.dispose()


async def admin_client(
    minter: TokenMinter, server_url: str, roles: list[str] | None = None
) -> httpx.AsyncClient:
    token = await minter.token(scope="user/*.cruds", roles=roles or ["admin"])
    return httpx.AsyncClient(
        base_url=f"{server_url}/api/admin", timeout=60, headers={"Authorization": f"Bearer {token}"}
    )


class TestClients:
    async def test_admin_registers_a_backend_client_that_gets_tokens(
        self, minter: TokenMinter, server_url: str
    ) -> None:
        async with await admin_client(minter, server_url) as http:
            created = await http.post(
                "/clients",
                json={
                    "name": "Partner lab",
                    "grant_types": ["client_credentials"],
                    "scopes": "system/Observation.cruds",
                },
            )
            assert created.status_code == 201, created.text
            client = created.json()
            assert client["kind"] == "backend" and client["client_secret"]
            listed = await http.get("/clients")
            assert any(
                (c["client_id"] == client["client_id"] and "client_secret" not in c)
                or c.get("client_secret") is None
                for c in listed.json()
            )
        async with httpx.AsyncClient(timeout=60) as http:
            token = await http.post(
                f"{server_url}/oauth2/token",
                data={"grant_type": "client_credentials", "scope": "system/Observation.cruds"},
                auth=(client["client_id"], client["client_secret"]),
            )
            assert token.status_code == 200, token.text
        async with await admin_client(minter, server_url) as http:
            assert (await http.post(f"/clients/{client['client_id']}/disable")).json()["disabled"] is True
        async with httpx.AsyncClient(timeout=60) as http:
            refused = await http.post(
                f"{server_url}/oauth2/token",
                data={"grant_type": "client_credentials"},
                auth=(client["client_id"], client["client_secret"]),
            )
            assert refused.status_code in (400, 401)
        async with fhir_client(server_url) as fhir:
            audit = await fhir.get("/AuditEvent", params={"subtype": "110130"})
            names = [e["resource"]["entity"][0]["name"] for e in audit.json().get("entry", [])]
            assert f"client {client['client_id']} registered" in names
            assert f"client {client['client_id']} disabled" in names

    async def test_bad_registrations_are_400(self, minter: TokenMinter, server_url: str) -> None:
        async with await admin_client(minter, server_url) as http:
            bad_scope = await http.post(
                "/clients",
                json={"name": "x", "grant_types": ["client_credentials"], "scopes": "system/Nonsense.rx"},
            )
            assert bad_scope.status_code == 400
            no_redirect = await http.post(
                "/clients",
                json={
                    "name": "app",
                    "grant_types": ["authorization_code"],
                    "scopes": "openid",
                    "public": True,
                },
            )
            assert no_redirect.status_code == 400
            assert "redirect" in no_redirect.json()["issue"][0]["diagnostics"]

    async def test_only_admins(self, minter: TokenMinter, server_url: str) -> None:
        async with await admin_client(minter, server_url, roles=["physician"]) as http:
            assert (await http.get("/clients")).status_code == 403
            assert (
                await http.put("/roles/nurse", json={"description": "x", "grants": {"allow": []}})
            ).status_code == 403
        async with httpx.AsyncClient(base_url=f"{server_url}/api/admin", timeout=60) as http:
            assert (await http.get("/roles")).status_code == 401


class TestRoles:
    async def test_admin_defines_a_role_checked_like_the_shipped_ones(
        self, minter: TokenMinter, server_url: str
    ) -> None:
        grants = {
            "allow": [{"types": ["Appointment", "Schedule", "Slot"], "interactions": ["@read"]}],
            "deny": [],
        }
        async with await admin_client(minter, server_url) as http:
            wrong = await http.put(
                "/roles/viewer",
                json={
                    "description": "x",
                    "grants": {"allow": [{"types": ["Nope"], "interactions": ["read"]}]},
                },
            )
            assert wrong.status_code == 400
            put = await http.put(
                "/roles/scheduling-viewer", json={"description": "Sees the calendar", "grants": grants}
            )
            assert put.status_code == 200, put.text
            roles = {r["name"]: r for r in (await http.get("/roles")).json()}
            assert roles["scheduling-viewer"]["grants"] == grants
            assert (await http.delete("/roles/scheduling-viewer")).status_code == 204
            assert (await http.delete("/roles/scheduling-viewer")).status_code == 404
        async with fhir_client(server_url) as fhir:
            audit = await fhir.get("/AuditEvent", params={"subtype": "110136"})
            assert audit.json()["total"] >= 2
