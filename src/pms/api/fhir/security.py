"""Who is calling: every FHIR request carries a bearer token (SMART App Launch; RFC 6750), verified here
and resolved to the AccessContext that the storage layer enforces."""

from __future__ import annotations

import time

from starlette.requests import Request

from pms.api.oauth import verify_bearer
from pms.auth.context import AccessContext
from pms.auth.tokens import Claims, InvalidToken
from pms.storage.principals import PrincipalDirectory, unauthorized
from pms.storage.registry_provider import RegistryProvider


class VerifiedTokens:
    """Tokens whose RS256 signature this process already checked, until they expire: verifying on every
    request costs more than the read it guards. Expiry is re-checked on each hit; revocation and the
    user's state are the principal directory's job."""

    def __init__(self, *, max_entries: int = 10_000) -> None:
        self.max_entries = max_entries
        self._claims: dict[str, Claims] = {}

    def get(self, token: str) -> Claims | None:
        claims = self._claims.get(token)
        if claims is not None and claims.expires_at <= time.time():
            del self._claims[token]
            return None
        return claims

    def put(self, token: str, claims: Claims) -> None:
        if len(self._claims) >= self.max_entries:
            self._claims.clear()
        self._claims[token] = claims


async def access_for(request: Request) -> AccessContext:
    scheme, _, token = request.headers.get("authorization", "").partition(" ")
    token = token.strip()
    if scheme.lower() != "bearer" or not token:
        raise unauthorized("This FHIR server needs an OAuth 2.0 bearer access token (SMART on FHIR)")
    verified: VerifiedTokens = request.app.state.verified_tokens
    claims = verified.get(token)
    if claims is None:
        try:
            claims = await verify_bearer(request, token)
        except InvalidToken as exc:
            raise unauthorized("The access token is invalid or expired") from exc
        verified.put(token, claims)
    provider: RegistryProvider = request.app.state.registry_provider
    registry = await provider.current(request.app.state.db)
    directory: PrincipalDirectory = request.app.state.principals
    return await directory.context(claims, registry)


def token_id_of(request: Request) -> str | None:
    """The `jti` of the request's already verified bearer token."""
    token = request.headers.get("authorization", "").partition(" ")[2].strip()
    verified: VerifiedTokens = request.app.state.verified_tokens
    claims = verified.get(token)
    return claims.token_id if claims else None
