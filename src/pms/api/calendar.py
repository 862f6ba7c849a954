"""Practitioners' calendar feeds (iCalendar): a link to subscribe to from a phone, and the feed itself.

The link carries a signed link token (auth/tokens.py) naming the user who made it, their app (client)
and the practitioner. Each fetch acts as that user, through the same access checks and audit as any FHIR
search: when the user or the app is disabled, or their role no longer reads Appointments, the feed stops.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from urllib.parse import urlsplit

from fastapi import APIRouter, Query, Request
from pydantic import BaseModel
from starlette.responses import Response

from pms.api.fhir.routes import ResourceId, run_audited
from pms.api.fhir.security import access_for
from pms.api.oauth import issuer_of, server_root
from pms.auth.context import AccessContext
from pms.auth.tokens import Claims, InvalidToken, issue_link_token, verify_link_token
from pms.config import Settings
from pms.core.errors import AppError, Issue
from pms.domains.scheduling.config import SchedulingConfig
from pms.domains.scheduling.feed import practitioner_feed
from pms.domains.scheduling.store import SchedulingStore
from pms.storage.guard import Guard
from pms.storage.identity import KeyCache
from pms.storage.interactions import Interactions, Outcome
from pms.storage.principals import PrincipalDirectory, unauthorized
from pms.storage.registry_provider import RegistryProvider

router = APIRouter(prefix="/api", tags=["calendar"])

PURPOSE = "calendar-feed"
FEED_SCOPE = "user/Appointment.rs user/Patient.rs user/Location.rs user/Practitioner.rs"


class FeedLink(BaseModel):
    url: str
    expires_at: datetime


def _settings(request: Request) -> Settings:
    settings: Settings = request.app.state.settings
    return settings


@router.post(
    "/calendar-feeds/{practitioner_id}",
    response_model=FeedLink,
    summary="A private iCalendar link to a practitioner's appointments (for a phone's calendar app)",
    description="Needs a bearer token of the practitioner themself (fhirUser) or of staff who may search "
    "every Appointment. Anyone holding the link can read the feed until it expires: treat it as a password.",
)
async def create_feed(request: Request, practitioner_id: ResourceId) -> FeedLink:
    access = await access_for(request)
    guard = Guard(access)
    guard.require_type("search", "Appointment")
    principal = access.principal
    if principal.fhir_user != f"Practitioner/{practitioner_id}":
        guard.require_unrestricted("search", ("Appointment",))
    if principal.kind != "user" or not principal.client_id:
        raise AppError(403, [Issue("forbidden", "Calendar feeds are for staff users")])
    keys: KeyCache = request.app.state.keys
    key = (await keys.ring()).signing
    if key is None:
        raise AppError(503, [Issue("transient", "No signing key is available; try again")])
    lifetime = _settings(request).calendar_feed_lifetime
    token = issue_link_token(
        key,
        issuer=issuer_of(request),
        purpose=PURPOSE,
        subject=principal.subject,
        lifetime=lifetime,
        extra={"client_id": principal.client_id, "practitioner": practitioner_id},
    )
    url = f"{server_root(request)}/api/calendar/{practitioner_id}.ics?token={token}"
    return FeedLink(url=url, expires_at=datetime.now(UTC) + timedelta(seconds=lifetime))


async def _feed_access(request: Request, practitioner_id: str, token: str) -> AccessContext:
    keys: KeyCache = request.app.state.keys
    try:
        claims = verify_link_token(token, await keys.ring(), issuer=issuer_of(request), purpose=PURPOSE)
    except InvalidToken as exc:
        raise unauthorized("This calendar link is invalid or has expired; make a new one") from exc
    if claims.get("practitioner") != practitioner_id or not isinstance(claims.get("client_id"), str):
        raise unauthorized("This calendar link is for another calendar")
    acting = Claims(
        subject=claims["sub"],
        issuer=claims["iss"],
        audience=claims["aud"],
        client_id=claims["client_id"],
        scope=FEED_SCOPE,
        expires_at=claims["exp"],
        issued_at=claims["iat"],
        token_id=str(claims.get("jti")),
        principal="user",
        raw=claims,
    )
    provider: RegistryProvider = request.app.state.registry_provider
    directory: PrincipalDirectory = request.app.state.principals
    return await directory.context(acting, await provider.current(request.app.state.db))


@router.get(
    "/calendar/{practitioner_id}.ics",
    summary="A practitioner's appointments as iCalendar (RFC 5545)",
    response_class=Response,
    responses={200: {"content": {"text/calendar": {}}}, 401: {"description": "Invalid or expired link"}},
)
async def feed(
    request: Request,
    practitioner_id: ResourceId,
    token: str = Query(description="From POST /api/calendar-feeds"),
) -> Response:
    config: SchedulingConfig = request.app.state.scheduling
    text = ""

    async def authenticate(request: Request) -> AccessContext:
        return await _feed_access(request, practitioner_id, token)

    async def action(fhir: Interactions) -> Outcome:
        nonlocal text
        fhir.repo.guard.require_type("search", "Appointment")
        host = urlsplit(str(request.base_url)).hostname or "pms"
        text, shown = await practitioner_feed(SchedulingStore(fhir.repo), config, practitioner_id, host=host)
        return Outcome(200, touched=shown)

    await run_audited(request, "search-type", action, write=False, authenticate=authenticate)
    return Response(
        text,
        media_type="text/calendar; charset=utf-8",
        headers={
            "Cache-Control": "private, max-age=300",
            "Content-Disposition": "inline; filename=calendar.ics",
        },
    )
