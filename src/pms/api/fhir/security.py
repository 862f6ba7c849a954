"""Who is calling: every FHIR request carries a bearer token (SMART App Launch; RFC 6750), verified here
and resolved to the AccessContext that the storage layer enforces."""

from __future__ import annotations

from starlette.requests import Request

from pms.api.oauth import verify_bearer
from pms.auth.context import AccessContext
from pms.auth.tokens import InvalidToken
from pms.storage.principals import PrincipalDirectory, unauthorized
from pms.storage.registry_provider import RegistryProvider


async def access_for(request: Request) -> AccessContext:
    scheme, _, token = request.headers.get("authorization", "").partition(" ")
    token = token.strip()
    if scheme.lower() != "bearer" or not token:
        raise unauthorized("This FHIR server needs an OAuth 2.0 bearer access token (SMART on FHIR)")
    try:
        claims = await verify_bearer(request, token)
    except InvalidToken as exc:
        raise unauthorized("The access token is invalid or expired") from exc
    provider: RegistryProvider = request.app.state.registry_provider
    registry = await provider.current(request.app.state.db)
    directory: PrincipalDirectory = request.app.state.principals
    return await directory.context(claims, registry)
