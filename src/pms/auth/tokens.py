"""Access and id tokens: RS256 JWTs issued and verified with python-jose.

Access tokens follow the JWT profile for OAuth 2.0 access tokens (RFC 9068): header `typ: at+jwt` and
`kid`; claims `iss`, `aud` (the FHIR base URL), `sub`, `exp`, `iat`, `nbf`, `jti`, `scope`, `client_id`,
plus the SMART launch context (`patient`, `encounter`) and `fhirUser`
(https://hl7.org/fhir/smart-app-launch/scopes-and-launch-context.html).

Verification trusts nothing in the token before the signature is checked: the header must name exactly
RS256 (no `none`, no HS256 - an HMAC "signed" with our public key is the classic confusion attack) and a
`kid` of a key we hold; only then is the signature verified, with `algorithms=["RS256"]` and an RSA key
object, and then the registered claims are checked against an explicit clock (RFC 7519 §4.1).
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

import orjson
from jose import jws
from jose.exceptions import JOSEError

from pms.auth.keys import SIGNING_ALGORITHM, KeyRing, SigningKey

ACCESS_TOKEN_TYPE = "at+jwt"  # RFC 9068 §2.1
ID_TOKEN_TYPE = "JWT"
DEFAULT_LEEWAY = 30  # seconds of clock skew tolerated on exp/nbf/iat
# Private claim: whose token it is. "user": `sub` is an auth_user id (a person signed in through an app);
# "client": `sub` is the client_id (SMART Backend Services, client_credentials).
PRINCIPAL_CLAIM = "principal"
PrincipalKind = Literal["user", "client"]


class InvalidToken(Exception):
    """A token that must not be honoured. `reason` is for logs and audit, never for the client."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


@dataclass(frozen=True)
class Claims:
    """The verified claims of an access token."""

    subject: str
    issuer: str
    audience: str
    client_id: str
    scope: str
    expires_at: int
    issued_at: int
    token_id: str
    patient: str | None = None
    encounter: str | None = None
    fhir_user: str | None = None
    principal: PrincipalKind = "user"
    raw: Mapping[str, Any] = field(default_factory=dict)

    @property
    def scopes(self) -> list[str]:
        return self.scope.split()

    @property
    def user_id(self) -> str | None:
        """The `auth_user.user_id` of a user's token (None for a backend service's token)."""
        return self.subject if self.principal == "user" else None


def _sign(key: SigningKey, claims: dict[str, Any], *, typ: str) -> str:
    headers = {"kid": key.kid, "typ": typ}
    token: str = jws.sign(claims, key.signer, headers=headers, algorithm=SIGNING_ALGORITHM)
    return token


def issue_access_token(
    key: SigningKey,
    *,
    issuer: str,
    audience: str,
    subject: str,
    client_id: str,
    scope: str,
    lifetime: int,
    principal: PrincipalKind = "user",
    context: Mapping[str, Any] | None = None,
    fhir_user: str | None = None,
    now: int | None = None,
) -> str:
    """A signed access token valid for `lifetime` seconds. `context` may carry `patient`/`encounter`;
    `fhir_user` is a relative reference (`Practitioner/123`)."""
    issued = int(time.time()) if now is None else now
    claims: dict[str, Any] = {
        "iss": issuer,
        "aud": audience,
        "sub": subject,
        "client_id": client_id,
        "scope": scope,
        "iat": issued,
        "nbf": issued,
        "exp": issued + lifetime,
        "jti": uuid.uuid4().hex,
        PRINCIPAL_CLAIM: principal,
    }
    for name in ("patient", "encounter"):
        value = (context or {}).get(name)
        if value:
            claims[name] = value
    if fhir_user:
        claims["fhirUser"] = fhir_user
    return _sign(key, claims, typ=ACCESS_TOKEN_TYPE)


def issue_id_token(
    key: SigningKey,
    *,
    issuer: str,
    subject: str,
    client_id: str,
    lifetime: int,
    nonce: str | None = None,
    fhir_user: str | None = None,
    auth_time: int | None = None,
    now: int | None = None,
) -> str:
    """An OpenID Connect id_token (OIDC Core §2): `aud` is the client; `fhirUser` per SMART §sso."""
    issued = int(time.time()) if now is None else now
    claims: dict[str, Any] = {
        "iss": issuer,
        "sub": subject,
        "aud": client_id,
        "iat": issued,
        "exp": issued + lifetime,
        "jti": uuid.uuid4().hex,
    }
    if nonce:
        claims["nonce"] = nonce
    if fhir_user:
        claims["fhirUser"] = fhir_user
    if auth_time is not None:
        claims["auth_time"] = auth_time
    return _sign(key, claims, typ=ID_TOKEN_TYPE)


def unverified_header(token: str) -> dict[str, Any]:
    """The JOSE header, parsed but NOT trusted: only for choosing how to verify."""
    try:
        header = jws.get_unverified_header(token)
    except JOSEError as exc:
        raise InvalidToken(f"malformed token: {exc}") from exc
    if not isinstance(header, dict):
        raise InvalidToken("malformed token header")
    return header


def verify_signed(
    token: str, keys: KeyRing | Mapping[str, SigningKey], *, typ: str | None = ACCESS_TOKEN_TYPE
) -> dict[str, Any]:
    """Check header and RS256 signature; return the payload (claims NOT yet validated)."""
    header = unverified_header(token)
    if header.get("alg") != SIGNING_ALGORITHM:
        raise InvalidToken(f"algorithm {header.get('alg')!r} is not accepted")
    if typ is not None and header.get("typ") != typ:
        raise InvalidToken(f"token type {header.get('typ')!r} is not {typ!r}")
    kid = header.get("kid")
    if not isinstance(kid, str):
        raise InvalidToken("token has no kid")
    key = keys.get(kid)
    if key is None:
        raise InvalidToken(f"unknown kid {kid!r}")
    try:
        payload = jws.verify(token, key.verifier, algorithms=[SIGNING_ALGORITHM])
        claims = orjson.loads(payload)
    except (JOSEError, orjson.JSONDecodeError) as exc:
        raise InvalidToken(f"signature check failed: {exc}") from exc
    if not isinstance(claims, dict):
        raise InvalidToken("token payload is not a JSON object")
    return claims


def check_times(claims: Mapping[str, Any], *, now: int, leeway: int = DEFAULT_LEEWAY) -> None:
    """RFC 7519 §4.1.4-4.1.6: exp in the future, nbf and iat not in the future (with leeway)."""
    for name in ("exp", "iat", "nbf"):
        value = claims.get(name)
        if not isinstance(value, int) or isinstance(value, bool):
            raise InvalidToken(f"claim {name} missing or not an integer")
    if claims["exp"] <= now - leeway:
        raise InvalidToken("token expired")
    if claims["nbf"] > now + leeway:
        raise InvalidToken("token not yet valid")
    if claims["iat"] > now + leeway:
        raise InvalidToken("token issued in the future")


def _text(claims: Mapping[str, Any], name: str, *, required: bool = True) -> str | None:
    value = claims.get(name)
    if value is None and not required:
        return None
    if not isinstance(value, str) or not value:
        raise InvalidToken(f"claim {name} missing or not a string")
    return value


def verify_access_token(
    token: str,
    keys: KeyRing | Mapping[str, SigningKey],
    *,
    audience: str,
    issuer: str,
    now: int | None = None,
    leeway: int = DEFAULT_LEEWAY,
) -> Claims:
    """Verify one of our access tokens; raise `InvalidToken` unless every check passes.

    `audience` is the FHIR base URL the resource server answers as; `issuer` is ours.
    """
    claims = verify_signed(token, keys, typ=ACCESS_TOKEN_TYPE)
    check_times(claims, now=int(time.time()) if now is None else now, leeway=leeway)
    if claims.get("iss") != issuer:
        raise InvalidToken("wrong issuer")
    aud = claims.get("aud")
    if not (aud == audience or (isinstance(aud, list) and audience in aud)):
        raise InvalidToken("wrong audience")
    scope = claims.get("scope")
    if not isinstance(scope, str):
        raise InvalidToken("claim scope missing")
    principal = claims.get(PRINCIPAL_CLAIM)
    if principal not in ("user", "client"):
        raise InvalidToken("claim principal missing")
    return Claims(
        subject=_text(claims, "sub") or "",
        issuer=issuer,
        audience=audience,
        client_id=_text(claims, "client_id") or "",
        scope=scope,
        expires_at=claims["exp"],
        issued_at=claims["iat"],
        token_id=_text(claims, "jti") or "",
        patient=_text(claims, "patient", required=False),
        encounter=_text(claims, "encounter", required=False),
        fhir_user=_text(claims, "fhirUser", required=False),
        principal=principal,
        raw=claims,
    )


def verify_id_token(
    token: str,
    keys: KeyRing | Mapping[str, SigningKey],
    *,
    client_id: str,
    issuer: str,
    now: int | None = None,
    leeway: int = DEFAULT_LEEWAY,
) -> dict[str, Any]:
    """Verify an id_token we issued (OIDC Core §3.1.3.7), e.g. an `id_token_hint` at logout."""
    claims = verify_signed(token, keys, typ=ID_TOKEN_TYPE)
    for name in ("exp", "iat"):
        if not isinstance(claims.get(name), int):
            raise InvalidToken(f"claim {name} missing")
    current = int(time.time()) if now is None else now
    if claims["exp"] <= current - leeway:
        raise InvalidToken("token expired")
    if claims.get("iss") != issuer or claims.get("aud") != client_id:
        raise InvalidToken("wrong issuer or audience")
    return claims


LINK_TOKEN_TYPE = "link+jwt"


def issue_link_token(
    key: SigningKey,
    *,
    issuer: str,
    purpose: str,
    subject: str,
    lifetime: int,
    extra: Mapping[str, Any] | None = None,
    now: int | None = None,
) -> str:
    """A token that goes into a URL for one purpose (a calendar feed, a confirm link): signed like access
    tokens, but its own `typ` and an audience naming the purpose, so it can never pass as a bearer token
    and a token for one purpose never opens another."""
    issued = int(time.time()) if now is None else now
    claims: dict[str, Any] = {
        **(extra or {}),
        "iss": issuer,
        "aud": f"{issuer}#{purpose}",
        "sub": subject,
        "iat": issued,
        "nbf": issued,
        "exp": issued + lifetime,
        "jti": uuid.uuid4().hex,
    }
    return _sign(key, claims, typ=LINK_TOKEN_TYPE)


def verify_link_token(
    token: str, keys: KeyRing | Mapping[str, SigningKey], *, issuer: str, purpose: str, now: int | None = None
) -> dict[str, Any]:
    """The claims of a valid, unexpired link token for `purpose`; InvalidToken otherwise."""
    claims = verify_signed(token, keys, typ=LINK_TOKEN_TYPE)
    check_times(claims, now=int(time.time()) if now is None else now)
    if claims.get("iss") != issuer or claims.get("aud") != f"{issuer}#{purpose}":
        raise InvalidToken("the link is not for this")
    if not isinstance(claims.get("sub"), str):
        raise InvalidToken("the link names nobody")
    return claims
