"""The SMART-on-FHIR authorization server: discovery, authorize (sign-in, 2FA, patient picker, consent),
token, introspection, revocation, JWKS and logout.

Specifications cited below: RFC 6749 (OAuth 2.0), RFC 7636 (PKCE), RFC 7009 (revocation), RFC 7662
(introspection), RFC 7523 (JWT client authentication), RFC 9207 (`iss` in the authorization response),
SMART App Launch 2.0 (https://hl7.org/fhir/smart-app-launch/: app-launch.html, backend-services.html,
conformance.html), OpenID Connect Core/Discovery 1.0. docs/security.md gives the overall design.

Every request runs in one database transaction, so what it records - a spent code, a failed-login count,
a used assertion jti, a revoked token family and the AuditEvent - commits together, including when the
answer is an error (errors are returned, not raised, inside the transaction).
"""

from __future__ import annotations

import base64
import binascii
import hmac
import secrets
import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any, Literal
from urllib.parse import parse_qsl, unquote_plus, urlencode, urlsplit, urlunsplit

import orjson
from fastapi import APIRouter
from pydantic import BaseModel, ConfigDict
from sqlalchemy.ext.asyncio import AsyncConnection
from starlette.requests import Request
from starlette.responses import HTMLResponse, JSONResponse, RedirectResponse, Response

from pms.api.fhir.context import fhir_base
from pms.api.oauth_pages import (
    PatientChoice,
    consent_page,
    enroll_page,
    error_page,
    login_page,
    picker_page,
    recovery_codes_page,
    signed_out_page,
    totp_page,
)
from pms.api.page_text import LANGUAGES, choose_language, plural, text
from pms.audit.events import Actor, Outcome, Source, login_event, logout_event, token_event
from pms.auth import pkce, totp
from pms.auth.assertions import (
    CLIENT_ASSERTION_TYPE,
    InvalidAssertion,
    JwksFetcher,
    claimed_client_id,
    verify_client_assertion,
)
from pms.auth.scopes import ScopeSet, parse_scopes, scope_within
from pms.auth.tokens import Claims, InvalidToken, issue_access_token, issue_id_token
from pms.config import Settings
from pms.core.db import Database
from pms.core.errors import AppError
from pms.fhir.search import parse_search
from pms.storage import accounts, identity
from pms.storage.accounts import AuthStatus, UserAccount
from pms.storage.identity import Client, KeyCache, Session
from pms.storage.indexer import Indexer
from pms.storage.registry_provider import RegistryProvider
from pms.storage.repository import FhirRepository
from pms.storage.search.engine import SearchEngine

router = APIRouter(tags=["oauth"])

SESSION_COOKIE = "pms_session"
CSRF_COOKIE = "pms_csrf"
COOKIE_PATH = "/oauth2"
MAX_FORM_BYTES = 64 * 1024
NO_STORE = {"Cache-Control": "no-store", "Pragma": "no-cache"}  # RFC 6749 §5.1
AUTHORIZE_PARAMS = (
    "response_type",
    "client_id",
    "redirect_uri",
    "scope",
    "state",
    "aud",
    "launch",
    "code_challenge",
    "code_challenge_method",
    "nonce",
    "ui_locales",  # OpenID Connect Core §3.1.2.1: the pages' language, carried through every step
)
GRANT_TYPES = ("authorization_code", "refresh_token", "client_credentials")
AUTH_METHODS = ("client_secret_basic", "private_key_jwt")
ASSERTION_ALGS = ["RS384", "ES384", "RS256"]
REFRESH_SCOPES = ("offline_access", "online_access")
PATIENT_PICKER_SIZE = 20
STAFF_EXEMPT_ROLES = frozenset({"patient"})  # every other role is staff (2FA by configuration)


# -- plumbing ----------------------------------------------------------------------------------------------


def _now() -> datetime:
    return datetime.now(UTC)


def _settings(request: Request) -> Settings:
    settings: Settings = request.app.state.settings
    return settings


def _db(request: Request) -> Database:
    db: Database = request.app.state.db
    return db


def _keys(request: Request) -> KeyCache:
    keys: KeyCache = request.app.state.keys
    return keys


def issuer_of(request: Request) -> str:
    """Our `iss`: the configured issuer, else the public FHIR base URL (SMART: the issuer is the FHIR
    server's base URL so that apps can discover it from `iss`)."""
    configured = _settings(request).auth_issuer
    return configured.rstrip("/") if configured else fhir_base(request)


def server_root(request: Request) -> str:
    base = fhir_base(request)
    return base[: -len("/fhir")] if base.endswith("/fhir") else str(request.base_url).rstrip("/")


def endpoint(request: Request, path: str) -> str:
    return server_root(request) + path


def _secure(request: Request) -> bool:
    return server_root(request).startswith("https:")


def _client_address(request: Request) -> str | None:
    return request.client.host if request.client is not None else None


def _parse_pairs(raw: str) -> tuple[dict[str, str], str | None]:
    """Parameters of a query or form; RFC 6749 §3.1: "MUST NOT be included more than once"."""
    try:
        pairs = parse_qsl(raw, keep_blank_values=True, max_num_fields=100)
    except ValueError:
        return {}, "too many parameters"
    params: dict[str, str] = {}
    for name, value in pairs:
        if name in params:
            return params, f"parameter {name} is repeated"
        params[name] = value
    return params, None


async def _read_form(request: Request) -> tuple[dict[str, str], str | None]:
    content_type = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if content_type != "application/x-www-form-urlencoded":
        return {}, "the body must be application/x-www-form-urlencoded"
    body = await request.body()
    if len(body) > MAX_FORM_BYTES:
        return {}, "the request body is too large"
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError:
        return {}, "the body is not UTF-8"
    return _parse_pairs(text)


async def _repository(request: Request, conn: AsyncConnection) -> FhirRepository:
    provider: RegistryProvider = request.app.state.registry_provider
    registry = await provider.get(conn)
    return FhirRepository(conn, validator=request.app.state.validator, indexer=Indexer(registry))


# -- audit -------------------------------------------------------------------------------------------------

AuthEventKind = Literal["login", "logout", "token"]


async def record_auth_event(
    request: Request,
    conn: AsyncConnection,
    *,
    kind: AuthEventKind,
    outcome: Outcome = Outcome.SUCCESS,
    description: str | None = None,
    user: UserAccount | None = None,
    username: str | None = None,
    client_id: str | None = None,
    grant_type: str | None = None,
    scope: str | None = None,
    patient: str | None = None,
) -> None:
    """Store an AuditEvent (pms.audit.events) for a sign-in, sign-out, token grant or refusal, in the
    request's transaction: if the audit record cannot be written, nothing the request did is kept."""
    actor = Actor(
        username=user.username if user is not None else username,
        fhir_user=user.fhir_user if user is not None else None,
        client_id=client_id,
        address=_client_address(request),
        roles=user.roles if user is not None else (),
    )
    source = Source(name="PMS authorization server", site=issuer_of(request))
    now = _now()
    if kind == "login":
        event = login_event(
            actor=actor, recorded=now, outcome=outcome, outcome_desc=description, source=source
        )
    elif kind == "logout":
        event = logout_event(actor=actor, recorded=now, outcome_desc=description, source=source)
    else:
        event = token_event(
            actor=actor,
            recorded=now,
            grant_type=grant_type or "unknown",
            scope=scope,
            patient=patient,
            outcome=outcome,
            outcome_desc=description,
            source=source,
        )
    repo = await _repository(request, conn)
    await repo.create(event)
    await repo.flush()


# -- OAuth errors ------------------------------------------------------------------------------------------


class OAuthError(Exception):
    """An RFC 6749 §5.2 error response (token, introspection and revocation endpoints)."""

    def __init__(
        self,
        error: str,
        description: str,
        *,
        status: int = 400,
        headers: Mapping[str, str] | None = None,
        outcome: Outcome = Outcome.MINOR_FAILURE,
    ) -> None:
        super().__init__(f"{error}: {description}")
        self.error = error
        self.description = description
        self.status = status
        self.headers = dict(headers or {})
        self.outcome = outcome

    def response(self) -> JSONResponse:
        return JSONResponse(
            {"error": self.error, "error_description": self.description},
            status_code=self.status,
            headers={**NO_STORE, **self.headers},
        )


def _invalid_client(description: str, *, basic: bool = False) -> OAuthError:
    # §5.2: 401 for a failed authentication; WWW-Authenticate when the client used the Authorization header.
    headers = {"WWW-Authenticate": 'Basic realm="pms", charset="UTF-8"'} if basic else {}
    return OAuthError("invalid_client", description, status=401, headers=headers)


# -- client authentication (RFC 6749 §2.3, RFC 7523 §2.2, SMART client-confidential-asymmetric) -------------

AuthMethod = Literal["none", "client_secret_basic", "private_key_jwt"]


@dataclass(frozen=True)
class AuthenticatedClient:
    client: Client
    method: AuthMethod


def _basic_credentials(header: str) -> tuple[str, str] | None:
    """client_id and secret from `Authorization: Basic`, each form-urlencoded first (§2.3.1)."""
    scheme, _, value = header.partition(" ")
    if scheme.lower() != "basic":
        return None
    try:
        decoded = base64.b64decode(value.strip(), validate=True).decode("utf-8")
    except (binascii.Error, UnicodeDecodeError):
        return None
    client_id, sep, secret = decoded.partition(":")
    if not sep:
        return None
    return unquote_plus(client_id), unquote_plus(secret)


async def authenticate_client(
    request: Request, conn: AsyncConnection, form: Mapping[str, str], *, now: datetime
) -> AuthenticatedClient:
    """Who is calling: a confidential client proven by its secret or signed assertion, or a public client
    identified by `client_id` alone. Exactly one method per request (§2.3)."""
    header = request.headers.get("authorization")
    assertion_type = form.get("client_assertion_type")
    if header and assertion_type:
        raise OAuthError("invalid_request", "use one client authentication method, not several")
    if "client_secret" in form:
        raise _invalid_client("client_secret_post is not supported; use HTTP Basic (client_secret_basic)")
    if header:
        credentials = _basic_credentials(header)
        if credentials is None:
            raise _invalid_client("malformed Basic credentials", basic=True)
        client = await identity.get_client(conn, credentials[0])
        if (
            client is None
            or client.disabled
            or client.is_public
            or not identity.verify_client_secret(client, credentials[1])
        ):
            raise _invalid_client("client authentication failed", basic=True)
        if form.get("client_id", client.client_id) != client.client_id:
            raise OAuthError("invalid_request", "client_id does not match the authenticated client")
        return AuthenticatedClient(client, "client_secret_basic")
    if assertion_type is not None:
        return await _assertion_client(request, conn, form, now=now)
    client_id = form.get("client_id")
    if not client_id:
        raise _invalid_client("client authentication is required")
    client = await identity.get_client(conn, client_id)
    if client is None or client.disabled:
        raise _invalid_client("unknown client")
    if not client.is_public:
        raise _invalid_client("this client must authenticate (client_secret_basic or private_key_jwt)")
    return AuthenticatedClient(client, "none")


async def _assertion_client(
    request: Request, conn: AsyncConnection, form: Mapping[str, str], *, now: datetime
) -> AuthenticatedClient:
    if form.get("client_assertion_type") != CLIENT_ASSERTION_TYPE:
        raise _invalid_client(f"client_assertion_type must be {CLIENT_ASSERTION_TYPE}")
    assertion = form.get("client_assertion", "")
    try:
        client_id = claimed_client_id(assertion)
    except InvalidAssertion as exc:
        raise _invalid_client(exc.reason) from exc
    if form.get("client_id", client_id) != client_id:
        raise _invalid_client("client_id does not match the assertion's issuer")
    client = await identity.get_client(conn, client_id)
    if client is None or client.disabled or client.is_public:
        raise _invalid_client("unknown client")
    fetcher: JwksFetcher = request.app.state.jwks_fetcher
    try:
        await verify_client_assertion(
            assertion,
            client_id=client_id,
            token_endpoint=endpoint(request, "/oauth2/token"),
            jwks=client.jwks,
            jwks_uri=client.jwks_uri,
            fetcher=fetcher,
            jti_store=identity.UsedJtiStore(conn, now=now),
            now=int(now.timestamp()),
        )
    except InvalidAssertion as exc:
        raise _invalid_client(f"client assertion rejected: {exc.reason}") from exc
    return AuthenticatedClient(client, "private_key_jwt")


# -- scopes ------------------------------------------------------------------------------------------------


def _allowed(client: Client) -> ScopeSet:
    return parse_scopes(client.allowed_scopes)


def check_requested_scopes(requested: ScopeSet, client: Client, *, contexts: frozenset[str]) -> str | None:
    """Why the requested scopes cannot be granted to this client, or None. Scopes must be valid SMART
    scopes, of an allowed context (patient/user for app launches, system for backend services) and
    within the client's registration."""
    if requested.rejected:
        return "not valid SMART scopes: " + " ".join(requested.rejected)
    if not requested.resources and not requested.other:
        return "scope is required"
    allowed = _allowed(client)
    wrong_context = [s.text for s in requested.resources if s.context not in contexts]
    if wrong_context:
        return "scopes not available with this grant: " + " ".join(wrong_context)
    beyond = [s.text for s in requested.resources if not scope_within(s, allowed.resources)]
    beyond += sorted(requested.other - allowed.other)
    if beyond:
        return "scopes the client is not registered for: " + " ".join(beyond)
    return None


def _scope_text(raw: str) -> str:
    """The scope string as requested, whitespace-normalised and without duplicates."""
    return " ".join(dict.fromkeys(raw.split()))


# -- token issuance ----------------------------------------------------------------------------------------


def _epoch(moment: datetime) -> int:
    return int(moment.timestamp())


async def _user_token_response(
    request: Request,
    conn: AsyncConnection,
    *,
    client: Client,
    user_id: uuid.UUID,
    scope: str,
    context: Mapping[str, Any],
    family_id: uuid.UUID,
    session_started_at: datetime,
    nonce: str | None,
    now: datetime,
) -> dict[str, Any]:
    """Access token (+ refresh token with offline/online_access, + id_token with openid) and the launch
    context (SMART app-launch.html#response-5)."""
    settings = _settings(request)
    key = await _keys(request).signing_key()
    scopes = scope.split()
    fhir_user = context.get("fhirUser")
    access = issue_access_token(
        key,
        issuer=issuer_of(request),
        audience=fhir_base(request),
        subject=str(user_id),
        client_id=client.client_id,
        scope=scope,
        lifetime=settings.access_token_lifetime,
        context=context,
        fhir_user=fhir_user,
        now=_epoch(now),
    )
    body: dict[str, Any] = {
        "access_token": access,
        "token_type": "Bearer",
        "expires_in": settings.access_token_lifetime,
        "scope": scope,
    }
    for name in ("patient", "encounter"):
        if context.get(name):
            body[name] = context[name]
    if "need_patient_banner" in context:
        body["need_patient_banner"] = bool(context["need_patient_banner"])
    if "openid" in scopes:
        wants_user = "fhirUser" in scopes or "profile" in scopes
        body["id_token"] = issue_id_token(
            key,
            issuer=issuer_of(request),
            subject=str(user_id),
            client_id=client.client_id,
            lifetime=settings.access_token_lifetime,
            nonce=context.get("nonce") if nonce is None else nonce,
            # SMART sso-openid-connect: fhirUser is the absolute URL of the user's FHIR resource.
            fhir_user=f"{fhir_base(request)}/{fhir_user}" if fhir_user and wants_user else None,
            auth_time=context.get("auth_time"),
            now=_epoch(now),
        )
    if any(name in scopes for name in REFRESH_SCOPES):
        expires = now + timedelta(seconds=settings.refresh_token_lifetime)
        if "offline_access" not in scopes:  # online_access: only as long as the sign-in session
            expires = min(expires, session_started_at + timedelta(seconds=settings.session_lifetime))
        body["refresh_token"] = await identity.issue_refresh_token(
            conn,
            family_id=family_id,
            client_id=client.client_id,
            user_id=user_id,
            scope=scope,
            context=context,
            now=now,
            expires_at=expires,
            session_started_at=session_started_at,
        )
    return body


@dataclass
class GrantResult:
    body: dict[str, Any]
    user: UserAccount | None = None
    patient: str | None = None


async def _grant_authorization_code(
    request: Request,
    conn: AsyncConnection,
    caller: AuthenticatedClient,
    form: Mapping[str, str],
    now: datetime,
) -> GrantResult:
    code = form.get("code")
    redirect_uri = form.get("redirect_uri")
    if not code or not redirect_uri:
        raise OAuthError("invalid_request", "code and redirect_uri are required")
    status, record = await identity.redeem_code(conn, code=code, now=now)
    if status == "reused":
        # RFC 6749 §4.1.2 / §10.5: a code used twice is stolen or replayed; what it granted is revoked.
        raise OAuthError(
            "invalid_grant",
            "authorization code was already used; tokens issued from it are revoked",
            outcome=Outcome.SERIOUS_FAILURE,
        )
    if status != "ok" or record is None:
        raise OAuthError("invalid_grant", "authorization code is invalid or expired")
    if record.client_id != caller.client.client_id:
        raise OAuthError("invalid_grant", "authorization code was issued to another client")
    if record.redirect_uri != redirect_uri:  # §4.1.3: identical to the authorization request's
        raise OAuthError("invalid_grant", "redirect_uri does not match the authorization request")
    verifier = form.get("code_verifier")
    if record.code_challenge is not None:
        if not pkce.verify(verifier, record.code_challenge, record.code_challenge_method or ""):
            raise OAuthError("invalid_grant", "code_verifier does not match the code_challenge (PKCE)")
    elif verifier is not None or caller.client.is_public:
        # A verifier without a challenge is a PKCE downgrade attempt (OAuth Security BCP §4.8.2).
        raise OAuthError("invalid_grant", "this code was not issued with a PKCE code_challenge")
    user = await accounts.get_user(conn, user_id=record.user_id)
    if user is None or user.disabled:
        raise OAuthError("invalid_grant", "the user's account is not active")
    session_started = datetime.fromtimestamp(int(record.context.get("auth_time", _epoch(now))), UTC)
    body = await _user_token_response(
        request,
        conn,
        client=caller.client,
        user_id=record.user_id,
        scope=record.scope,
        context=record.context,
        family_id=record.family_id,
        session_started_at=session_started,
        nonce=record.nonce,
        now=now,
    )
    return GrantResult(body, user, record.context.get("patient"))


async def _grant_refresh_token(
    request: Request,
    conn: AsyncConnection,
    caller: AuthenticatedClient,
    form: Mapping[str, str],
    now: datetime,
) -> GrantResult:
    """RFC 6749 §6 with rotation and reuse detection (OAuth 2.0 Security BCP §4.14.2): each refresh
    token works once; presenting a spent one revokes its whole family."""
    token = form.get("refresh_token")
    if not token:
        raise OAuthError("invalid_request", "refresh_token is required")
    record = await identity.find_refresh_token(conn, token, for_update=True)
    if record is None:
        raise OAuthError("invalid_grant", "refresh token is invalid")
    if record.client_id != caller.client.client_id:
        await identity.revoke_family(conn, record.family_id)
        raise OAuthError(
            "invalid_grant", "refresh token was issued to another client", outcome=Outcome.SERIOUS_FAILURE
        )
    if record.used_at is not None and not record.revoked:
        await identity.revoke_family(conn, record.family_id)
        raise OAuthError(
            "invalid_grant",
            "refresh token was already used; its token family is revoked",
            outcome=Outcome.SERIOUS_FAILURE,
        )
    if not record.usable_at(now):
        raise OAuthError("invalid_grant", "refresh token is revoked or expired")
    scope = record.scope
    if "scope" in form:  # §6: may narrow, never widen, the original grant
        requested = parse_scopes(form["scope"])
        original = parse_scopes(record.scope)
        wider = list(requested.rejected)
        wider += [s.text for s in requested.resources if not scope_within(s, original.resources)]
        wider += sorted(requested.other - original.other)
        if wider:
            raise OAuthError("invalid_scope", "scope exceeds the original grant: " + " ".join(wider))
        scope = _scope_text(form["scope"])
    user = await accounts.get_user(conn, user_id=record.user_id) if record.user_id is not None else None
    if user is None or user.disabled:
        await identity.revoke_family(conn, record.family_id)
        raise OAuthError("invalid_grant", "the user's account is not active")
    await identity.mark_refresh_used(conn, record, now=now)
    body = await _user_token_response(
        request,
        conn,
        client=caller.client,
        user_id=user.user_id,
        scope=scope,
        context=record.context,
        family_id=record.family_id,
        session_started_at=record.session_started_at,
        nonce=None,
        now=now,
    )
    return GrantResult(body, user, record.context.get("patient"))


async def _grant_client_credentials(
    request: Request,
    conn: AsyncConnection,
    caller: AuthenticatedClient,
    form: Mapping[str, str],
    now: datetime,
) -> GrantResult:
    """SMART Backend Services (backend-services.html#obtaining-an-access-token): system/ scopes only,
    within the registration; no refresh token."""
    if caller.method == "none":
        raise _invalid_client("client_credentials requires client authentication")
    scope = _scope_text(form.get("scope") or " ".join(caller.client.allowed_scopes))
    problem = check_requested_scopes(parse_scopes(scope), caller.client, contexts=frozenset({"system"}))
    if problem is None and parse_scopes(scope).other:
        problem = "only system/ scopes are available to backend services"
    if problem is not None:
        raise OAuthError("invalid_scope", problem)
    settings = _settings(request)
    key = await _keys(request).signing_key()
    access = issue_access_token(
        key,
        issuer=issuer_of(request),
        audience=fhir_base(request),
        subject=caller.client.client_id,
        client_id=caller.client.client_id,
        scope=scope,
        lifetime=settings.backend_token_lifetime,
        principal="client",
        now=_epoch(now),
    )
    return GrantResult(
        {
            "access_token": access,
            "token_type": "Bearer",
            "expires_in": settings.backend_token_lifetime,
            "scope": scope,
        }
    )


_GRANTS = {
    "authorization_code": _grant_authorization_code,
    "refresh_token": _grant_refresh_token,
    "client_credentials": _grant_client_credentials,
}


# -- response models (documentation; bodies are built as JSON) ---------------------------------------------


class TokenResponse(BaseModel):
    model_config = ConfigDict(extra="allow")
    access_token: str
    token_type: str = "Bearer"
    expires_in: int
    scope: str
    refresh_token: str | None = None
    id_token: str | None = None
    patient: str | None = None
    encounter: str | None = None
    need_patient_banner: bool | None = None


class OAuthErrorBody(BaseModel):
    error: str
    error_description: str | None = None


class IntrospectionResponse(BaseModel):
    model_config = ConfigDict(extra="allow")
    active: bool


class JsonWebKeySet(BaseModel):
    keys: list[dict[str, Any]]


class SmartConfiguration(BaseModel):
    model_config = ConfigDict(extra="allow")
    issuer: str
    jwks_uri: str
    authorization_endpoint: str
    token_endpoint: str
    grant_types_supported: list[str]
    capabilities: list[str]


def _form_body(properties: Mapping[str, str], required: list[str]) -> dict[str, Any]:
    schema = {
        "type": "object",
        "properties": {name: {"type": "string", "description": text} for name, text in properties.items()},
        "required": required,
    }
    return {
        "requestBody": {
            "required": True,
            "content": {"application/x-www-form-urlencoded": {"schema": schema}},
        }
    }


_TOKEN_FORM = _form_body(
    {
        "grant_type": "authorization_code | refresh_token | client_credentials",
        "code": "authorization_code: the code from the redirect",
        "redirect_uri": "authorization_code: the redirect_uri of the authorization request",
        "code_verifier": "authorization_code: the PKCE verifier",
        "client_id": "public clients: their client_id",
        "refresh_token": "refresh_token: the current refresh token (rotated on every use)",
        "scope": "refresh_token: a subset of the granted scope; client_credentials: system/ scopes",
        "client_assertion_type": CLIENT_ASSERTION_TYPE,
        "client_assertion": "private_key_jwt: the signed JWT (RS384/ES384)",
    },
    ["grant_type"],
)


# -- token endpoint ----------------------------------------------------------------------------------------


@router.post(
    "/oauth2/token",
    summary="OAuth 2.0 token endpoint (RFC 6749 §3.2; SMART app launch and backend services)",
    response_model=TokenResponse,
    responses={400: {"model": OAuthErrorBody}, 401: {"model": OAuthErrorBody}},
    openapi_extra=_TOKEN_FORM,
)
async def token(request: Request) -> Response:
    form, problem = await _read_form(request)
    now = _now()
    grant_type = form.get("grant_type") or "unknown"
    async with _db(request).transaction() as conn:
        client_id: str | None = form.get("client_id")
        try:
            if problem is not None:
                raise OAuthError("invalid_request", problem)
            caller = await authenticate_client(request, conn, form, now=now)
            client_id = caller.client.client_id
            if grant_type not in _GRANTS:
                raise OAuthError("unsupported_grant_type", f"grant_type {grant_type!r} is not supported")
            if grant_type not in caller.client.grant_types:
                raise OAuthError("unauthorized_client", f"this client may not use {grant_type}")
            result = await _GRANTS[grant_type](request, conn, caller, form, now)
            await record_auth_event(
                request,
                conn,
                kind="token",
                user=result.user,
                client_id=client_id,
                grant_type=grant_type,
                scope=result.body.get("scope"),
                patient=result.patient,
            )
            response: Response = JSONResponse(result.body, headers=NO_STORE)
        except OAuthError as exc:
            await record_auth_event(
                request,
                conn,
                kind="token",
                outcome=exc.outcome,
                description=f"{exc.error}: {exc.description}",
                client_id=client_id,
                grant_type=grant_type,
            )
            response = exc.response()
    return response


# -- introspection (RFC 7662) and revocation (RFC 7009) ----------------------------------------------------


def _looks_like_jwt(token: str) -> bool:
    return token.count(".") == 2


async def _introspect(
    request: Request, conn: AsyncConnection, caller: AuthenticatedClient, token: str, now: datetime
) -> dict[str, Any]:
    if _looks_like_jwt(token):
        try:
            claims = await _keys(request).verify_access_token(
                token, audience=fhir_base(request), issuer=issuer_of(request)
            )
        except InvalidToken:
            return {"active": False}
        if await identity.access_token_revoked(conn, jti=claims.token_id):
            return {"active": False}
        body = {
            "active": True,
            "token_type": "Bearer",
            "scope": claims.scope,
            "client_id": claims.client_id,
            "sub": claims.subject,
            "exp": claims.expires_at,
            "iat": claims.issued_at,
            "iss": claims.issuer,
            "aud": claims.audience,
            "jti": claims.token_id,
        }
        for name, value in (("patient", claims.patient), ("encounter", claims.encounter)):
            if value:
                body[name] = value
        if claims.fhir_user:
            body["fhirUser"] = claims.fhir_user
        return body
    record = await identity.find_refresh_token(conn, token)
    # A refresh token is only described to the client it was issued to.
    if record is None or not record.usable_at(now) or record.client_id != caller.client.client_id:
        return {"active": False}
    return {
        "active": True,
        "token_type": "refresh_token",
        "scope": record.scope,
        "client_id": record.client_id,
        "sub": str(record.user_id) if record.user_id else record.client_id,
        "exp": _epoch(record.expires_at),
        "iat": _epoch(record.issued_at),
        "iss": issuer_of(request),
    }


@router.post(
    "/oauth2/introspect",
    summary="Token introspection (RFC 7662); the caller must authenticate as a confidential client",
    response_model=IntrospectionResponse,
    responses={400: {"model": OAuthErrorBody}, 401: {"model": OAuthErrorBody}},
    openapi_extra=_form_body(
        {"token": "an access or refresh token", "token_type_hint": "optional"}, ["token"]
    ),
)
async def introspect(request: Request) -> Response:
    form, problem = await _read_form(request)
    now = _now()
    async with _db(request).transaction() as conn:
        try:
            if problem is not None:
                raise OAuthError("invalid_request", problem)
            caller = await authenticate_client(request, conn, form, now=now)
            if caller.method == "none":
                raise _invalid_client("introspection requires client authentication")
            token_value = form.get("token")
            if not token_value:
                raise OAuthError("invalid_request", "token is required")
            response: Response = JSONResponse(
                await _introspect(request, conn, caller, token_value, now), headers=NO_STORE
            )
        except OAuthError as exc:
            await record_auth_event(
                request,
                conn,
                kind="token",
                outcome=exc.outcome,
                description=f"introspection refused: {exc.error}: {exc.description}",
                client_id=form.get("client_id"),
                grant_type="introspection",
            )
            response = exc.response()
    return response


@router.post(
    "/oauth2/revoke",
    summary="Token revocation (RFC 7009); revoking a refresh token revokes its whole family",
    response_model=None,
    responses={200: {"description": "Revoked (or the token was unknown)"}, 400: {"model": OAuthErrorBody}},
    openapi_extra=_form_body(
        {"token": "a refresh or access token", "token_type_hint": "optional"}, ["token"]
    ),
)
async def revoke(request: Request) -> Response:
    form, problem = await _read_form(request)
    now = _now()
    async with _db(request).transaction() as conn:
        try:
            if problem is not None:
                raise OAuthError("invalid_request", problem)
            caller = await authenticate_client(request, conn, form, now=now)
            token_value = form.get("token")
            if not token_value:
                raise OAuthError("invalid_request", "token is required")
            revoked = await _revoke(request, conn, caller, token_value, now)
            if revoked:
                await record_auth_event(
                    request,
                    conn,
                    kind="token",
                    description=f"{revoked} revoked",
                    client_id=caller.client.client_id,
                    grant_type="revocation",
                )
            # §2.2: 200 whether or not the token was valid, so the answer reveals nothing.
            response: Response = Response(status_code=200, headers=NO_STORE)
        except OAuthError as exc:
            await record_auth_event(
                request,
                conn,
                kind="token",
                outcome=exc.outcome,
                description=f"revocation refused: {exc.error}: {exc.description}",
                client_id=form.get("client_id"),
                grant_type="revocation",
            )
            response = exc.response()
    return response


async def _revoke(
    request: Request, conn: AsyncConnection, caller: AuthenticatedClient, token: str, now: datetime
) -> str | None:
    """Revoke a token of the calling client; what was revoked, or None."""
    if not _looks_like_jwt(token):
        record = await identity.find_refresh_token(conn, token, for_update=True)
        if record is None or record.client_id != caller.client.client_id:
            return None
        count = await identity.revoke_family(conn, record.family_id)
        return f"refresh token family ({count} tokens)"
    try:
        claims = await _keys(request).verify_access_token(
            token, audience=fhir_base(request), issuer=issuer_of(request)
        )
    except InvalidToken:
        return None
    if claims.client_id != caller.client.client_id:
        return None
    await identity.revoke_access_token(conn, jti=claims.token_id, expires_at=claims.expires_at, now=now)
    return "access token"


# -- discovery ---------------------------------------------------------------------------------------------

CAPABILITIES = [
    "launch-ehr",
    "launch-standalone",
    "client-public",
    "client-confidential-symmetric",
    "client-confidential-asymmetric",
    "context-ehr-patient",
    "context-ehr-encounter",
    "context-standalone-patient",
    "permission-offline",
    "permission-online",
    "permission-patient",
    "permission-user",
    "permission-v1",
    "permission-v2",
    "sso-openid-connect",
    "authorize-post",
]
SCOPES_SUPPORTED = [
    "openid",
    "fhirUser",
    "profile",
    "launch",
    "launch/patient",
    "launch/encounter",
    "offline_access",
    "online_access",
    "patient/*.rs",
    "patient/*.cruds",
    "user/*.rs",
    "user/*.cruds",
    "system/*.rs",
    "system/*.cruds",
    "patient/*.read",
    "patient/*.write",
    "user/*.read",
    "user/*.write",
    "system/*.read",
    "system/*.write",
    "patient/*.*",
    "user/*.*",
    "system/*.*",
]


def smart_configuration(request: Request) -> dict[str, Any]:
    """SMART App Launch 2.0 conformance.html#metadata."""
    return {
        "issuer": issuer_of(request),
        "jwks_uri": endpoint(request, "/oauth2/jwks"),
        "authorization_endpoint": endpoint(request, "/oauth2/authorize"),
        "token_endpoint": endpoint(request, "/oauth2/token"),
        "introspection_endpoint": endpoint(request, "/oauth2/introspect"),
        "revocation_endpoint": endpoint(request, "/oauth2/revoke"),
        "end_session_endpoint": endpoint(request, "/oauth2/logout"),
        "userinfo_endpoint": endpoint(request, "/oauth2/userinfo"),
        "grant_types_supported": list(GRANT_TYPES),
        "token_endpoint_auth_methods_supported": list(AUTH_METHODS),
        "token_endpoint_auth_signing_alg_values_supported": ASSERTION_ALGS,
        "scopes_supported": SCOPES_SUPPORTED,
        "response_types_supported": ["code"],
        "code_challenge_methods_supported": [pkce.S256],
        "ui_locales_supported": list(LANGUAGES),  # the sign-in pages' languages (OIDC Discovery §3)
        "capabilities": CAPABILITIES,
    }


@router.get(
    "/fhir/.well-known/smart-configuration",
    summary="SMART App Launch discovery document",
    response_model=SmartConfiguration,
)
async def smart_configuration_document(request: Request) -> Response:
    return JSONResponse(smart_configuration(request), headers={"Cache-Control": "public, max-age=300"})


def openid_configuration(request: Request) -> dict[str, Any]:
    """OpenID Connect Discovery 1.0 §3."""
    smart = smart_configuration(request)
    return {
        key: smart[key]
        for key in (
            "issuer",
            "authorization_endpoint",
            "token_endpoint",
            "jwks_uri",
            "introspection_endpoint",
            "revocation_endpoint",
            "end_session_endpoint",
            "userinfo_endpoint",
            "grant_types_supported",
            "response_types_supported",
            "token_endpoint_auth_methods_supported",
            "token_endpoint_auth_signing_alg_values_supported",
            "code_challenge_methods_supported",
            "scopes_supported",
            "ui_locales_supported",
        )
    } | {
        "subject_types_supported": ["public"],
        "id_token_signing_alg_values_supported": ["RS256"],
        "response_modes_supported": ["query"],
        "claims_supported": ["iss", "sub", "aud", "exp", "iat", "auth_time", "nonce", "fhirUser"],
    }


@router.get(
    "/.well-known/openid-configuration",
    summary="OpenID Connect discovery document",
    response_model=dict[str, Any],
)
async def openid_configuration_document(request: Request) -> Response:
    return JSONResponse(openid_configuration(request), headers={"Cache-Control": "public, max-age=300"})


@router.get(
    "/fhir/.well-known/openid-configuration",
    summary="OpenID Connect discovery document (at the issuer, OIDC Discovery §4)",
    response_model=dict[str, Any],
)
async def openid_configuration_at_issuer(request: Request) -> Response:
    return JSONResponse(openid_configuration(request), headers={"Cache-Control": "public, max-age=300"})


@router.get(
    "/oauth2/jwks",
    summary="Public keys that verify our tokens (RFC 7517 JWK Set)",
    response_model=JsonWebKeySet,
)
async def jwks(request: Request) -> Response:
    ring = await _keys(request).ring()
    return JSONResponse(ring.jwks(), headers={"Cache-Control": "public, max-age=60"})


# -- authorize ---------------------------------------------------------------------------------------------


@dataclass
class AuthorizeRequest:
    """A checked authorization request (RFC 6749 §4.1.1; SMART app-launch.html)."""

    client: Client
    redirect_uri: str
    state: str
    scope: str
    scopes: ScopeSet
    code_challenge: str | None
    nonce: str | None
    launch: identity.Launch | None
    params: dict[str, str]  # carried through the sign-in steps in hidden fields


class AuthorizeRefusal(Exception):
    """Refused before (page) or after (redirect with `error`) the redirect URI is trusted."""

    def __init__(
        self,
        error: str,
        description: str,
        *,
        redirect: tuple[str, str | None] | None = None,
        page_text: str | None = None,
    ) -> None:
        super().__init__(description)
        self.error = error
        self.description = description  # English, for the app (error_description) and the audit trail
        self.redirect = redirect  # (redirect_uri, state) when the error goes back to the client
        self.page_text = page_text  # the page_text key that tells the user, when the answer is a page

    def response(self, request: Request, lang: str) -> Response:
        if self.redirect is None:
            # §4.1.2.1: never redirect to an unverified URI (no open redirector); tell the user instead.
            message = text(lang, self.page_text) if self.page_text else self.description
            return error_page(message, lang=lang)
        uri, state = self.redirect
        params = {"error": self.error, "error_description": self.description}
        if state:
            params["state"] = state
        params["iss"] = issuer_of(request)  # RFC 9207
        return _redirect(request, _with_query(uri, params))


def _with_query(uri: str, params: Mapping[str, str]) -> str:
    parts = urlsplit(uri)
    query = parts.query + ("&" if parts.query else "") + urlencode(params)
    return urlunsplit((parts.scheme, parts.netloc, parts.path, query, parts.fragment))


def _redirect(request: Request, location: str) -> Response:
    # 303 after a form POST so the browser follows with GET.
    status = 303 if request.method == "POST" else 302
    return RedirectResponse(location, status_code=status, headers=NO_STORE)


async def validate_authorize(
    request: Request, conn: AsyncConnection, params: Mapping[str, str], *, now: datetime
) -> AuthorizeRequest:
    client_id = params.get("client_id")
    client = await identity.get_client(conn, client_id) if client_id else None
    if client is None or client.disabled:
        raise AuthorizeRefusal(
            "invalid_request", "Unknown or disabled application (client_id).", page_text="unknown_client"
        )
    redirect_uri = params.get("redirect_uri")
    # Exact string match against the registration (OAuth Security BCP §4.1.3).
    if not redirect_uri or redirect_uri not in client.redirect_uris:
        raise AuthorizeRefusal(
            "invalid_request",
            "The redirect_uri is not registered for this application.",
            page_text="unregistered_redirect",
        )
    state = params.get("state")
    back = (redirect_uri, state)
    if params.get("response_type") != "code":
        raise AuthorizeRefusal("unsupported_response_type", "response_type must be code", redirect=back)
    if "authorization_code" not in client.grant_types:
        raise AuthorizeRefusal("unauthorized_client", "client may not use the code flow", redirect=back)
    if not state:
        raise AuthorizeRefusal("invalid_request", "state is required (SMART app launch)", redirect=back)
    aud = params.get("aud", "")
    if aud.rstrip("/") != fhir_base(request):
        # SMART: aud must be the FHIR server the app means to talk to, so tokens cannot leak elsewhere.
        raise AuthorizeRefusal("invalid_request", f"aud must be {fhir_base(request)}", redirect=back)
    try:
        challenge = pkce.check_challenge(
            params.get("code_challenge"), params.get("code_challenge_method"), required=client.is_public
        )
    except pkce.PkceError as exc:
        raise AuthorizeRefusal("invalid_request", str(exc), redirect=back) from exc
    scope = _scope_text(params.get("scope", ""))
    scopes = parse_scopes(scope)
    problem = check_requested_scopes(scopes, client, contexts=frozenset({"patient", "user"}))
    if problem is not None:
        raise AuthorizeRefusal("invalid_scope", problem, redirect=back)
    launch = None
    if params.get("launch"):
        if "launch" not in scopes.other:
            raise AuthorizeRefusal("invalid_scope", "an EHR launch needs the launch scope", redirect=back)
        launch = await identity.get_launch(conn, params["launch"], now=now)
        if launch is None:
            raise AuthorizeRefusal("invalid_request", "unknown or expired launch", redirect=back)
    carried = {name: params[name] for name in AUTHORIZE_PARAMS if params.get(name)}
    return AuthorizeRequest(
        client, redirect_uri, state, scope, scopes, challenge, params.get("nonce"), launch, carried
    )


@dataclass
class _Flow:
    """One step of the sign-in flow: the request, its transaction and the validated authorization request."""

    request: Request
    conn: AsyncConnection
    auth: AuthorizeRequest
    csrf: str
    now: datetime
    lang: str  # the pages' language (page_text.choose_language)
    session: Session | None = None
    user: UserAccount | None = None
    new_session_cookie: str | None = None
    clear_session: bool = False
    patient_choice: str | None = None
    cookies: dict[str, str] = field(default_factory=dict)

    @property
    def action(self) -> str:
        return "/oauth2/authorize"

    @property
    def carried(self) -> dict[str, str]:
        params = dict(self.auth.params)
        if self.patient_choice:
            params["patient"] = self.patient_choice
        return params

    @property
    def settings(self) -> Settings:
        return _settings(self.request)


def mfa_required(user: UserAccount, settings: Settings) -> bool:
    """TOTP is asked of everyone who enrolled, and of all staff when PMS_REQUIRE_2FA_FOR_STAFF is on."""
    staff = any(role not in STAFF_EXEMPT_ROLES for role in user.roles)
    return user.totp_enabled or (settings.require_2fa_for_staff and staff)


def _locked_message(until: datetime | None, now: datetime, lang: str) -> str:
    if until is None:
        return text(lang, "locked")
    minutes = max(1, int((until - now).total_seconds() + 59) // 60)
    return plural(lang, "locked_for", minutes, minutes=minutes, until=until.strftime("%H:%M"))


async def _load_session(flow: _Flow) -> None:
    cookie = flow.request.cookies.get(SESSION_COOKIE)
    if not cookie:
        return
    settings = flow.settings
    session = await identity.get_session(
        flow.conn, cookie=cookie, now=flow.now, idle_timeout=timedelta(seconds=settings.session_idle_timeout)
    )
    user = await accounts.get_user(flow.conn, user_id=session.user_id) if session is not None else None
    if session is None or user is None or user.disabled:
        flow.clear_session = True
        return
    flow.session, flow.user = session, user


async def _step_login(flow: _Flow, form: Mapping[str, str]) -> Response | None:
    username = form.get("username", "").strip()
    password = form.get("password", "")
    client_name = flow.auth.client.name
    if not username or not password:
        return login_page(
            action=flow.action,
            params=flow.carried,
            csrf=flow.csrf,
            client_name=client_name,
            lang=flow.lang,
            username=username,
            error=text(flow.lang, "missing_credentials"),
            status=400,
        )
    result = await accounts.authenticate(flow.conn, username=username, password=password, now=flow.now)
    if not result.ok:
        await record_auth_event(
            flow.request,
            flow.conn,
            kind="login",
            outcome=Outcome.MINOR_FAILURE,
            description=f"password sign-in failed: {result.status.value}",
            user=result.user,
            username=username,
            client_id=flow.auth.client.client_id,
        )
        if result.status is AuthStatus.LOCKED:
            message, status = _locked_message(result.locked_until, flow.now, flow.lang), 429
        elif result.status is AuthStatus.DISABLED:
            message, status = text(flow.lang, "account_disabled"), 403
        else:
            message, status = text(flow.lang, "wrong_password"), 400
        return login_page(
            action=flow.action,
            params=flow.carried,
            csrf=flow.csrf,
            client_name=client_name,
            lang=flow.lang,
            username=username,
            error=message,
            status=status,
        )
    assert result.user is not None
    old = flow.request.cookies.get(SESSION_COOKIE)
    if old:  # a new sign-in never reuses a session id (session fixation)
        await identity.revoke_session(flow.conn, cookie=old)
    cookie, session = await identity.create_session(
        flow.conn,
        user_id=result.user.user_id,
        now=flow.now,
        lifetime=timedelta(seconds=flow.settings.session_lifetime),
    )
    flow.session, flow.user, flow.new_session_cookie = session, result.user, cookie
    pending = mfa_required(result.user, flow.settings)
    await record_auth_event(
        flow.request,
        flow.conn,
        kind="login",
        description="password accepted; second factor pending" if pending else "signed in",
        user=result.user,
        client_id=flow.auth.client.client_id,
    )
    return None


async def _step_totp(flow: _Flow, form: Mapping[str, str]) -> Response | None:
    assert flow.session is not None and flow.user is not None
    result = await accounts.verify_second_factor(
        flow.conn, user_id=flow.user.user_id, code=form.get("code", ""), now=flow.now
    )
    if not result.ok:
        await record_auth_event(
            flow.request,
            flow.conn,
            kind="login",
            outcome=Outcome.MINOR_FAILURE,
            description=f"second factor failed: {result.status.value}",
            user=flow.user,
            client_id=flow.auth.client.client_id,
        )
        if result.status is AuthStatus.LOCKED:
            message, status = _locked_message(result.locked_until, flow.now, flow.lang), 429
        else:
            message, status = text(flow.lang, "bad_code"), 400
        return totp_page(
            action=flow.action,
            params=flow.carried,
            csrf=flow.csrf,
            lang=flow.lang,
            error=message,
            status=status,
        )
    await identity.pass_mfa(flow.conn, flow.session.session_hash)
    flow.session = _mfa_passed(flow.session)
    await record_auth_event(
        flow.request,
        flow.conn,
        kind="login",
        description=f"second factor passed ({result.method})",
        user=flow.user,
        client_id=flow.auth.client.client_id,
    )
    return None


def _mfa_passed(session: Session) -> Session:
    return Session(
        session.session_hash,
        session.user_id,
        True,
        session.created_at,
        session.last_seen_at,
        session.expires_at,
    )


async def _step_enroll(flow: _Flow, form: Mapping[str, str]) -> Response | None:
    assert flow.session is not None and flow.user is not None
    if flow.user.totp_enabled:
        return None  # already enrolled (e.g. a second tab): the TOTP step follows
    try:
        codes = await accounts.confirm_totp(
            flow.conn, user_id=flow.user.user_id, code=form.get("code", ""), now=flow.now
        )
    except AppError:
        return None  # no enrollment in progress: start one
    if codes is None:
        secret = form.get("enroll_secret", "")
        uri = totp.provisioning_uri(secret, username=flow.user.username)
        return enroll_page(
            action=flow.action,
            params=flow.carried,
            csrf=flow.csrf,
            qr_svg=totp.qr_svg(uri),
            secret=secret,
            lang=flow.lang,
            error=text(flow.lang, "bad_enroll_code"),
            status=400,
        )
    await identity.pass_mfa(flow.conn, flow.session.session_hash)
    await record_auth_event(
        flow.request,
        flow.conn,
        kind="login",
        description="two-step verification enrolled and passed",
        user=flow.user,
        client_id=flow.auth.client.client_id,
    )
    return recovery_codes_page(
        action=flow.action, params=flow.carried, csrf=flow.csrf, codes=codes, lang=flow.lang
    )


def _patient_label(content: Mapping[str, Any], patient_id: str, lang: str) -> str:
    names = content.get("name") or []
    label = ""
    if names and isinstance(names[0], Mapping):
        name = names[0]
        if name.get("text"):
            label = str(name["text"])
        else:
            given = " ".join(str(g) for g in name.get("given") or [])
            label = ", ".join(part for part in (str(name.get("family") or ""), given) if part)
    label = label or text(lang, "unnamed_patient")
    born = content.get("birthDate")
    if born:
        label = text(lang, "patient_born", name=label, born=born)
    return text(lang, "patient_label", name=label, id=patient_id)


async def _search_patients(flow: _Flow, query: str) -> list[PatientChoice]:
    """The picker's search: the FHIR search engine over Patient by name (read-only)."""
    provider: RegistryProvider = flow.request.app.state.registry_provider
    registry = await provider.get(flow.conn)
    params = [("_count", str(PATIENT_PICKER_SIZE))]
    if query:
        params.append(("name", query))
    search = parse_search("Patient", params, registry, handling="lenient", max_count=PATIENT_PICKER_SIZE)
    engine = SearchEngine(
        flow.conn, registry, base=fhir_base(flow.request), default_count=PATIENT_PICKER_SIZE
    )
    result = await engine.search(search)
    choices = []
    for match in result.matches:
        content = orjson.loads(match.content or b"{}")
        choices.append(PatientChoice(match.id, _patient_label(content, match.id, flow.lang)))
    return choices


async def _read_resource(flow: _Flow, resource_type: str, id_: str) -> dict[str, Any] | None:
    repo = await _repository(flow.request, flow.conn)
    stored = await repo.current_version(resource_type, id_)
    if stored is None or stored.deleted or stored.content is None:
        return None
    content: dict[str, Any] = orjson.loads(stored.content)
    return content


async def _own_patient(flow: _Flow, user: UserAccount) -> str | None:
    """The Patient a portal user acts for: their own (fhirUser Patient/x), or a RelatedPerson's patient."""
    kind, _, ident = (user.fhir_user or "").partition("/")
    if kind == "Patient":
        return ident
    if kind == "RelatedPerson":
        related = await _read_resource(flow, "RelatedPerson", ident)
        reference = ((related or {}).get("patient") or {}).get("reference", "")
        if isinstance(reference, str) and reference.startswith("Patient/"):
            return reference.removeprefix("Patient/")
    return None


def _is_staff(user: UserAccount) -> bool:
    return any(role not in STAFF_EXEMPT_ROLES for role in user.roles)


async def _next_page(flow: _Flow, *, approve: bool = False, error: str | None = None) -> Response:
    """Where the user stands: sign in, second factor, patient picker, consent - or, when the consent was
    just given, the redirect back to the app with the code."""
    auth, user, session = flow.auth, flow.user, flow.session
    if session is None or user is None:
        return login_page(
            action=flow.action,
            params=flow.carried,
            csrf=flow.csrf,
            client_name=auth.client.name,
            lang=flow.lang,
            error=error,
        )
    if mfa_required(user, flow.settings) and not session.mfa_passed:
        if user.totp_enabled:
            return totp_page(
                action=flow.action, params=flow.carried, csrf=flow.csrf, lang=flow.lang, error=error
            )
        enrollment = await accounts.enroll_totp(flow.conn, user_id=user.user_id)
        return enroll_page(
            action=flow.action,
            params=flow.carried,
            csrf=flow.csrf,
            qr_svg=enrollment.qr_svg,
            secret=enrollment.secret,
            lang=flow.lang,
            error=error,
        )
    context: dict[str, Any] = {}
    if auth.launch is not None:  # EHR launch (app-launch.html#launch-app-ehr-launch)
        if auth.launch.created_by not in (None, user.user_id):
            raise AuthorizeRefusal(
                "access_denied",
                "this launch belongs to another user",
                redirect=(auth.redirect_uri, auth.state),
            )
        context |= {k: v for k, v in auth.launch.context.items() if k in ("patient", "encounter") and v}
        context["need_patient_banner"] = False
    own = await _own_patient(flow, user)
    if own is not None:
        context["patient"] = own  # a portal user only ever acts for their own patient
    elif "launch/patient" in auth.scopes.other and "patient" not in context:
        if not _is_staff(user):
            raise AuthorizeRefusal(
                "access_denied",
                "no patient is linked to this account",
                redirect=(auth.redirect_uri, auth.state),
            )
        chosen = flow.patient_choice
        if not chosen or await _read_resource(flow, "Patient", chosen) is None:
            choices = await _search_patients(flow, "")
            return picker_page(
                action=flow.action,
                params=flow.carried,
                csrf=flow.csrf,
                query="",
                patients=choices,
                lang=flow.lang,
                error=error or (text(flow.lang, "patient_gone") if chosen else None),
            )
        context["patient"] = chosen
    if "patient" in context:
        context.setdefault("need_patient_banner", True)
    if not approve:
        label = None
        if "patient" in context:
            content = await _read_resource(flow, "Patient", context["patient"])
            label = _patient_label(content or {}, context["patient"], flow.lang)
        return consent_page(
            action=flow.action,
            params=flow.carried,
            csrf=flow.csrf,
            client_name=auth.client.name,
            scopes=auth.scope.split(),
            username=user.username,
            patient_label=label,
            lang=flow.lang,
        )
    return await _issue_code(flow, user, session, context)


async def _issue_code(flow: _Flow, user: UserAccount, session: Session, context: dict[str, Any]) -> Response:
    auth = flow.auth
    context |= {"sid": session.session_hash, "auth_time": _epoch(session.created_at)}
    if user.fhir_user:
        context["fhirUser"] = user.fhir_user
    code = await identity.create_code(
        flow.conn,
        client_id=auth.client.client_id,
        user_id=user.user_id,
        redirect_uri=auth.redirect_uri,
        scope=auth.scope,
        code_challenge=auth.code_challenge,
        code_challenge_method=pkce.S256 if auth.code_challenge else None,
        context=context,
        nonce=auth.nonce,
        expires_at=flow.now + timedelta(seconds=flow.settings.auth_code_lifetime),
    )
    # §4.1.2 (+ RFC 9207 iss): back to the app with the code and its state.
    location = _with_query(
        auth.redirect_uri, {"code": code, "state": auth.state, "iss": issuer_of(flow.request)}
    )
    return _redirect(flow.request, location)


async def _authorize_step(flow: _Flow, step: str | None, form: Mapping[str, str]) -> Response:
    await _load_session(flow)
    if step is None:
        return await _next_page(flow)
    if not hmac.compare_digest(form.get("csrf_token", ""), flow.request.cookies.get(CSRF_COOKIE, "")):
        return await _next_page(flow, error=text(flow.lang, "form_expired"))
    if step == "login":
        return await _step_login(flow, form) or await _next_page(flow)
    if flow.session is None:
        return await _next_page(flow, error=text(flow.lang, "session_ended"))
    flow.patient_choice = form.get("patient") or None
    if step == "totp":
        return await _step_totp(flow, form) or await _next_page(flow)
    if step == "enroll":
        return await _step_enroll(flow, form) or await _next_page(flow)
    if step == "search":
        choices = await _search_patients(flow, form.get("q", "").strip())
        return picker_page(
            action=flow.action,
            params=flow.auth.params,
            csrf=flow.csrf,
            query=form.get("q", ""),
            patients=choices,
            lang=flow.lang,
        )
    if step == "consent":
        if form.get("decision") != "approve":
            raise AuthorizeRefusal(
                "access_denied",
                "the user denied the request",
                redirect=(flow.auth.redirect_uri, flow.auth.state),
            )
        return await _next_page(flow, approve=True)
    return await _next_page(flow)  # "pick", "continue": the next page decides


def _finish(flow: _Flow, response: Response) -> Response:
    secure = _secure(flow.request)
    if flow.request.cookies.get(CSRF_COOKIE) != flow.csrf:
        response.set_cookie(
            CSRF_COOKIE, flow.csrf, httponly=True, samesite="lax", secure=secure, path=COOKIE_PATH
        )
    if flow.new_session_cookie is not None:
        response.set_cookie(
            SESSION_COOKIE,
            flow.new_session_cookie,
            httponly=True,
            samesite="lax",
            secure=secure,
            path=COOKIE_PATH,
        )
    elif flow.clear_session:
        response.delete_cookie(SESSION_COOKIE, path=COOKIE_PATH, httponly=True, samesite="lax", secure=secure)
    return response


_AUTHORIZE_SUMMARY = "Authorization endpoint (RFC 6749 §3.1; SMART standalone and EHR launch; HTML sign-in)"
_AUTHORIZE_RESPONSES: dict[int | str, dict[str, Any]] = {
    302: {"description": "Back to the app's redirect_uri with code and state (or error)"}
}


@router.get(
    "/oauth2/authorize",
    operation_id="oauth_authorize_get",
    summary=_AUTHORIZE_SUMMARY,
    response_class=HTMLResponse,
    responses=_AUTHORIZE_RESPONSES,
)
@router.post(
    "/oauth2/authorize",
    operation_id="oauth_authorize_post",
    summary=_AUTHORIZE_SUMMARY,
    response_class=HTMLResponse,
    responses=_AUTHORIZE_RESPONSES,
)
async def authorize(request: Request) -> Response:
    """Query parameters (GET) or form fields (POST, SMART `authorize-post`): response_type=code,
    client_id, redirect_uri, scope, state, aud, code_challenge, code_challenge_method=S256, and
    launch (EHR launch) / nonce, ui_locales (the pages' language, OpenID Connect Core §3.1.2.1; else
    Accept-Language, else English). The HTML steps post back here with `step` and `csrf_token`."""
    if request.method == "POST":
        form, problem = await _read_form(request)
    else:
        form, problem = _parse_pairs(request.url.query)
    lang = choose_language(form.get("ui_locales"), request.headers.get("accept-language"))
    if problem is not None:
        return error_page(text(lang, "malformed", problem=problem), lang=lang)
    params = {name: form[name] for name in AUTHORIZE_PARAMS if name in form}
    step = form.get("step") if request.method == "POST" else None
    now = _now()
    async with _db(request).transaction() as conn:
        try:
            auth = await validate_authorize(request, conn, params, now=now)
        except AuthorizeRefusal as refusal:
            await record_auth_event(
                request,
                conn,
                kind="token",
                outcome=Outcome.MINOR_FAILURE,
                description=f"authorization request refused: {refusal.error}: {refusal.description}",
                client_id=params.get("client_id"),
                grant_type="authorization_code",
            )
            return refusal.response(request, lang)
        csrf = request.cookies.get(CSRF_COOKIE) or secrets.token_urlsafe(32)
        flow = _Flow(request, conn, auth, csrf, now, lang)
        try:
            response = await _authorize_step(flow, step, form)
        except AuthorizeRefusal as refusal:  # denied consent, a launch of another user, no patient
            await record_auth_event(
                request,
                conn,
                kind="token",
                outcome=Outcome.MINOR_FAILURE,
                description=f"authorization refused: {refusal.error}: {refusal.description}",
                user=flow.user,
                client_id=auth.client.client_id,
                grant_type="authorization_code",
            )
            response = refusal.response(request, lang)
        response = _finish(flow, response)
    return response


# -- bearer tokens and EHR launch contexts -------------------------------------------------------------------


async def verify_bearer(request: Request, token: str) -> Claims:
    """Verify an access token presented to this server (the FHIR endpoints' entry point): RS256 with a
    key of ours (reloaded once on an unknown kid), `aud` = our FHIR base, `iss` = our issuer, within its
    lifetime. Raises `InvalidToken`. Revocation (RFC 7009) is `identity.access_token_revoked`."""
    return await _keys(request).verify_access_token(
        token, audience=fhir_base(request), issuer=issuer_of(request)
    )


async def _bearer_user(request: Request, conn: AsyncConnection, *, refusal: str) -> UserAccount | Response:
    """The signed-in, enabled user whose unrevoked access token the request carries; else the error
    answer (401 for a missing, invalid or revoked token; 403 with `refusal` for a token of no user)."""
    scheme, _, token = request.headers.get("authorization", "").partition(" ")
    if scheme.lower() != "bearer" or not token:
        return _bearer_error("invalid_request", "a Bearer access token is required", 401)
    try:
        claims = await verify_bearer(request, token.strip())
    except InvalidToken:
        return _bearer_error("invalid_token", "the access token is invalid or expired", 401)
    if await identity.access_token_revoked(conn, jti=claims.token_id):
        return _bearer_error("invalid_token", "the access token was revoked", 401)
    user = await accounts.get_user(conn, user_id=uuid.UUID(claims.user_id)) if claims.user_id else None
    if user is None or user.disabled:
        return _bearer_error("insufficient_scope", refusal, 403)
    return user


def _bearer_error(error: str, description: str, status: int) -> JSONResponse:
    # RFC 6750 §3: the WWW-Authenticate challenge names the error for invalid or missing tokens.
    challenge = f'Bearer realm="pms", error="{error}", error_description="{description}"'
    headers = {**NO_STORE, "WWW-Authenticate": challenge} if status == 401 else NO_STORE
    return JSONResponse(
        {"error": error, "error_description": description}, status_code=status, headers=headers
    )


class LaunchRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")
    patient: str
    encounter: str | None = None


class LaunchResponse(BaseModel):
    launch: str
    expires_in: int


async def _launch_context_problem(
    request: Request, conn: AsyncConnection, user: UserAccount, body: LaunchRequest
) -> str | None:
    repo = await _repository(request, conn)
    patient = await repo.current_version("Patient", body.patient)
    if patient is None or patient.deleted:
        return f"Patient/{body.patient} does not exist"
    if not _is_staff(user) and user.fhir_user != f"Patient/{body.patient}":
        return "a portal user can launch apps only for their own record"
    if body.encounter is not None:
        encounter = await repo.current_version("Encounter", body.encounter)
        if encounter is None or encounter.deleted or encounter.content is None:
            return f"Encounter/{body.encounter} does not exist"
        subject = (orjson.loads(encounter.content).get("subject") or {}).get("reference")
        if subject != f"Patient/{body.patient}":
            return "the encounter is not the patient's"
    return None


@router.post(
    "/oauth2/launch",
    summary="Create an EHR launch context (SMART `launch` parameter) for the signed-in user",
    response_model=LaunchResponse,
    responses={
        400: {"model": OAuthErrorBody},
        401: {"model": OAuthErrorBody},
        403: {"model": OAuthErrorBody},
    },
)
async def create_launch(request: Request, body: LaunchRequest) -> Response:
    """The EHR (our SPA) calls this with its user's access token before opening a SMART app with
    `?launch=<id>&iss=<FHIR base>` (app-launch.html#launch-app-ehr-launch). The launch id carries the
    patient (and encounter) into the app's authorization, for this user only, for a limited time."""
    settings = _settings(request)
    now = _now()
    async with _db(request).transaction() as conn:
        user = await _bearer_user(request, conn, refusal="only a signed-in user can create a launch")
        if isinstance(user, Response):
            return user
        problem = await _launch_context_problem(request, conn, user, body)
        if problem is not None:
            status = 403 if "own record" in problem else 400
            return _bearer_error("invalid_request", problem, status)
        context = {"patient": body.patient} | ({"encounter": body.encounter} if body.encounter else {})
        launch = await identity.create_launch(
            conn,
            context=context,
            created_by=user.user_id,
            expires_at=now + timedelta(seconds=settings.launch_lifetime),
        )
    return JSONResponse(
        LaunchResponse(launch=launch, expires_in=settings.launch_lifetime).model_dump(), headers=NO_STORE
    )


class UserInfo(BaseModel):
    sub: str
    preferred_username: str
    roles: list[str]
    fhirUser: str | None = None


@router.get(
    "/oauth2/userinfo",
    summary="OpenID Connect UserInfo: who the access token's user is (username, roles, fhirUser)",
    response_model=UserInfo,
    responses={401: {"model": OAuthErrorBody}, 403: {"model": OAuthErrorBody}},
)
async def userinfo(request: Request) -> Response:
    """OpenID Connect Core §5.3, for any app a user signed in to: `preferred_username`, the user's
    `roles` (what the app may offer them; the server enforces them either way) and `fhirUser`."""
    async with _db(request).transaction() as conn:
        user = await _bearer_user(request, conn, refusal="the token does not belong to a signed-in user")
    if isinstance(user, Response):
        return user
    info = UserInfo(
        sub=str(user.user_id),
        preferred_username=user.username,
        roles=list(user.roles),
        fhirUser=user.fhir_user,
    )
    return JSONResponse(info.model_dump(exclude_none=True), headers=NO_STORE)


# -- logout ------------------------------------------------------------------------------------------------


_LOGOUT_SUMMARY = "End the sign-in session and revoke the refresh tokens granted through it"


@router.get(
    "/oauth2/logout", operation_id="oauth_logout_get", summary=_LOGOUT_SUMMARY, response_class=HTMLResponse
)
@router.post(
    "/oauth2/logout", operation_id="oauth_logout_post", summary=_LOGOUT_SUMMARY, response_class=HTMLResponse
)
async def logout(request: Request) -> Response:
    """Optional `client_id` + `post_logout_redirect_uri` (exactly a registered redirect URI of that
    client) and `state` send the browser back to the app; otherwise a signed-out page, in the language of
    `ui_locales` (OpenID Connect RP-Initiated Logout §2) or Accept-Language."""
    if request.method == "POST":
        form, _ = await _read_form(request)
    else:
        form, _ = _parse_pairs(request.url.query)
    cookie = request.cookies.get(SESSION_COOKIE)
    async with _db(request).transaction() as conn:
        lang = choose_language(form.get("ui_locales"), request.headers.get("accept-language"))
        response: Response = signed_out_page(lang=lang)
        if cookie:
            session = await identity.revoke_session(conn, cookie=cookie)
            if session is not None:
                user = await accounts.get_user(conn, user_id=session.user_id)
                await record_auth_event(
                    request,
                    conn,
                    kind="logout",
                    description="signed out; session refresh tokens revoked",
                    user=user,
                    client_id=form.get("client_id"),
                )
        target = form.get("post_logout_redirect_uri")
        client = await identity.get_client(conn, form["client_id"]) if form.get("client_id") else None
        if target and client is not None and target in client.redirect_uris:
            response = _redirect(
                request, _with_query(target, {"state": form["state"]}) if form.get("state") else target
            )
    response.delete_cookie(
        SESSION_COOKIE, path=COOKIE_PATH, httponly=True, samesite="lax", secure=_secure(request)
    )
    response.headers.update(NO_STORE)
    return response
