"""Administration of access: OAuth clients and roles (docs/security.md). Admin users only.

Everything here changes who may do what, so each change is audited (DICOM Security Alert: 110130
Security Configuration for clients, 110136 Security Roles Changed for roles) in the same transaction.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any, Literal

from fastapi import APIRouter, Request
from pydantic import BaseModel, Field

from pms.api.fhir.context import interactions
from pms.api.fhir.security import access_for
from pms.audit import events
from pms.auth.clients import check_registration
from pms.auth.context import AccessContext
from pms.auth.rbac import RoleError, role_from_grants
from pms.core.errors import AppError, Issue, bad_request, not_found
from pms.storage import accounts, identity
from pms.storage.audit import actor_of
from pms.storage.repository import FhirRepository

router = APIRouter(prefix="/api/admin", tags=["administration"])


class ClientIn(BaseModel):
    name: str = Field(description="Shown to users on the consent screen")
    grant_types: list[Literal["authorization_code", "client_credentials", "refresh_token"]]
    scopes: str = Field(description="Allowed scopes, space-separated", examples=["system/Observation.cruds"])
    redirect_uris: list[str] = []
    public: bool = Field(False, description="A public app: no secret, PKCE required")
    secret: str | None = Field(None, description="Default for confidential clients without keys: generated")
    jwks: dict[str, Any] | None = Field(None, description="Public keys (private_key_jwt), a JWK Set")
    jwks_uri: str | None = None
    client_id: str | None = None


class ClientOut(BaseModel):
    client_id: str
    name: str
    kind: str
    grant_types: list[str]
    scopes: list[str]
    redirect_uris: list[str]
    disabled: bool
    client_secret: str | None = Field(None, description="Only in the answer to its creation")


class RoleIn(BaseModel):
    description: str
    grants: dict[str, Any] = Field(description='{"allow": [rules], "deny": [rules]} as in roles.json')


class RoleOut(BaseModel):
    name: str
    description: str
    grants: Any


async def _admin(request: Request) -> AccessContext:
    access = await access_for(request)
    principal = access.principal
    if principal.kind != "user" or "admin" not in principal.roles:
        raise AppError(403, [Issue("forbidden", "Only administrators manage clients and roles")])
    return access


def _audit(
    repo: FhirRepository,
    request: Request,
    access: AccessContext,
    change: Literal["roles", "configuration"],
    action: events.Action,
    what: str,
) -> None:
    address = request.client.host if request.client else None
    repo.record_audit_event(
        events.security_admin_event(
            actor=actor_of(access, address),
            recorded=datetime.now(UTC),
            change=change,
            action=action,
            what=what,
        )
    )


def _client_out(client: identity.Client, secret: str | None = None) -> ClientOut:
    return ClientOut(
        client_id=client.client_id,
        name=client.name,
        kind=client.kind,
        grant_types=list(client.grant_types),
        scopes=list(client.allowed_scopes),
        redirect_uris=list(client.redirect_uris),
        disabled=client.disabled,
        client_secret=secret,
    )


@router.get("/clients", response_model=list[ClientOut], summary="Registered OAuth clients")
async def list_clients(request: Request) -> list[ClientOut]:
    await _admin(request)
    async with request.app.state.db.reader() as conn:
        return [_client_out(c) for c in await identity.list_clients(conn)]


@router.post("/clients", response_model=ClientOut, status_code=201, summary="Register an OAuth client")
async def create_client(request: Request, body: ClientIn) -> ClientOut:
    access = await _admin(request)
    try:
        registration = check_registration(
            name=body.name,
            grants=body.grant_types,
            scopes=body.scopes.split(),
            redirect_uris=body.redirect_uris,
            public=body.public,
            secret=body.secret,
            jwks=body.jwks,
            jwks_uri=body.jwks_uri,
            client_id=body.client_id,
            new_secret=identity.new_secret(),
        )
    except ValueError as exc:
        raise bad_request(str(exc)) from exc
    async with interactions(request, write=True, access=None) as fhir:
        client = await identity.register_client(fhir.repo.conn, registration, now=datetime.now(UTC))
        _audit(fhir.repo, request, access, "configuration", "C", f"client {client.client_id} registered")
    return _client_out(client, registration.secret if registration.generated_secret else None)


@router.post("/clients/{client_id}/disable", response_model=ClientOut, summary="Refuse a client from now on")
async def disable_client(request: Request, client_id: str) -> ClientOut:
    access = await _admin(request)
    async with interactions(request, write=True, access=None) as fhir:
        if not await identity.set_client_disabled(fhir.repo.conn, client_id, disabled=True):
            raise not_found(f"No client with client_id {client_id!r}")
        client = await identity.get_client(fhir.repo.conn, client_id)
        assert client is not None
        _audit(fhir.repo, request, access, "configuration", "U", f"client {client_id} disabled")
    return _client_out(client)


@router.get("/roles", response_model=list[RoleOut], summary="Roles and their grants")
async def list_roles(request: Request) -> list[RoleOut]:
    await _admin(request)
    async with request.app.state.db.reader() as conn:
        return [
            RoleOut(name=r.name, description=r.description, grants=r.grants)
            for r in await accounts.list_roles(conn)
        ]


@router.put("/roles/{name}", response_model=RoleOut, summary="Create a role or replace its grants")
async def put_role(request: Request, name: str, body: RoleIn) -> RoleOut:
    access = await _admin(request)
    try:
        role_from_grants(name, body.description, body.grants)  # the same check the server applies at use
    except RoleError as exc:
        raise bad_request(str(exc), expression=("grants",)) from exc
    async with interactions(request, write=True, access=None) as fhir:
        role = await accounts.upsert_role(
            fhir.repo.conn, name=name, description=body.description, grants=body.grants
        )
        _audit(fhir.repo, request, access, "roles", "U", f"role {name} set")
    return RoleOut(name=role.name, description=role.description, grants=role.grants)


@router.delete("/roles/{name}", status_code=204, summary="Remove a role nobody holds")
async def delete_role(request: Request, name: str) -> None:
    access = await _admin(request)
    async with interactions(request, write=True, access=None) as fhir:
        await accounts.delete_role(fhir.repo.conn, name=name)
        _audit(fhir.repo, request, access, "roles", "D", f"role {name} removed")
