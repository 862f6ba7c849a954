"""Client authentication with a signed JWT (`private_key_jwt`) for SMART Backend Services.

https://hl7.org/fhir/smart-app-launch/client-confidential-asymmetric.html and RFC 7523 §2.2/§3:
the client posts `client_assertion_type=urn:ietf:params:oauth:client-assertion-type:jwt-bearer` and a
`client_assertion` JWT signed (RS384 or ES384; RS256 accepted too) with a key from the JWKS it
registered, inline or by URL. Its claims: `iss` = `sub` = client_id, `aud` = our token endpoint URL,
`exp` no more than five minutes ahead, and a `jti` never seen before (replay protection).

No database access here: remembering used `jti`s is behind the `JtiStore` protocol, which the storage
layer implements (`auth_used_jti`).
"""

from __future__ import annotations

import base64
import ipaddress
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol
from urllib.parse import urlsplit

import httpx
import orjson
from jose import jwk, jws
from jose.exceptions import JOSEError

CLIENT_ASSERTION_TYPE = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"
ACCEPTED_ALGORITHMS = ("RS384", "ES384", "RS256")
MAX_LIFETIME = 300  # SMART: exp "no more than five minutes in the future"
DEFAULT_LEEWAY = 30
_KTY = {"RS384": "RSA", "RS256": "RSA", "ES384": "EC"}
_EC_CURVE = {"ES384": "P-384"}


class InvalidAssertion(Exception):
    """The client assertion does not authenticate the client (an `invalid_client` error)."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class JtiStore(Protocol):
    async def remember(self, jti: str, expires_at: int) -> bool:
        """Record a used jti until `expires_at`; False if it was already recorded (a replay)."""
        ...


@dataclass(frozen=True)
class AssertionClaims:
    client_id: str
    token_id: str
    expires_at: int
    algorithm: str
    kid: str
    raw: Mapping[str, Any] = field(default_factory=dict)


def _segments_json(token: str, index: int) -> dict[str, Any]:
    """Decode one base64url JSON segment WITHOUT verifying anything (used to find the client)."""
    parts = token.split(".")
    if len(parts) != 3:
        raise InvalidAssertion("client_assertion is not a compact JWS")
    segment = parts[index]
    try:
        value = orjson.loads(base64.urlsafe_b64decode(segment + "=" * (-len(segment) % 4)))
    except (ValueError, orjson.JSONDecodeError) as exc:
        raise InvalidAssertion("client_assertion is not valid base64url JSON") from exc
    if not isinstance(value, dict):
        raise InvalidAssertion("client_assertion segment is not a JSON object")
    return value


def claimed_client_id(assertion: str) -> str:
    """The client an assertion claims to come from (its `iss`, RFC 7523 §3), before verification."""
    issuer = _segments_json(assertion, 1).get("iss")
    if not isinstance(issuer, str) or not issuer:
        raise InvalidAssertion("client_assertion has no iss")
    return issuer


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


class JwksFetcher:
    """Fetches registered JWKS URLs with httpx, caching each set for `ttl` seconds.

    An unknown `kid` forces one refetch (the client may have rotated), at most every `min_refetch`
    seconds per URL, so a flood of bogus kids cannot turn us into a request amplifier.
    """

    def __init__(
        self,
        *,
        ttl: float = 300.0,
        min_refetch: float = 10.0,
        timeout: float = 5.0,
        max_bytes: int = 256 * 1024,
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        self.ttl = ttl
        self.min_refetch = min_refetch
        self.timeout = timeout
        self.max_bytes = max_bytes
        self.transport = transport
        self._cache: dict[str, tuple[float, list[dict[str, Any]]]] = {}

    async def get(self, uri: str, *, force: bool = False) -> list[dict[str, Any]]:
        now = time.monotonic()
        cached = self._cache.get(uri)
        if cached is not None:
            age = now - cached[0]
            if age < self.ttl and not (force and age >= self.min_refetch):
                return cached[1]
        keys = await self._fetch(uri)
        self._cache[uri] = (now, keys)
        return keys

    async def _fetch(self, uri: str) -> list[dict[str, Any]]:
        parts = urlsplit(uri)
        if parts.scheme != "https" and not (parts.scheme == "http" and _is_loopback(parts.hostname or "")):
            raise InvalidAssertion("jwks_uri must use https")
        try:
            async with httpx.AsyncClient(
                timeout=self.timeout, follow_redirects=False, transport=self.transport
            ) as http:
                response = await http.get(uri, headers={"Accept": "application/json"})
        except httpx.HTTPError as exc:
            raise InvalidAssertion(f"could not fetch the client's JWKS: {exc}") from exc
        if response.status_code != 200 or len(response.content) > self.max_bytes:
            raise InvalidAssertion(f"client's JWKS answered HTTP {response.status_code}")
        return jwks_keys(_parse_json(response.content))


def _parse_json(content: bytes) -> Any:
    try:
        return orjson.loads(content)
    except orjson.JSONDecodeError as exc:
        raise InvalidAssertion("client's JWKS is not JSON") from exc


def jwks_keys(document: Any) -> list[dict[str, Any]]:
    """The keys of a JWK Set document (RFC 7517 §5), or an error."""
    if not isinstance(document, Mapping) or not isinstance(document.get("keys"), list):
        raise InvalidAssertion("a JWKS must be an object with a 'keys' array")
    return [dict(key) for key in document["keys"] if isinstance(key, Mapping)]


def _candidates(keys: Sequence[Mapping[str, Any]], *, kid: str, alg: str) -> list[Mapping[str, Any]]:
    def fits(key: Mapping[str, Any]) -> bool:
        if key.get("kid") != kid or key.get("kty") != _KTY[alg]:
            return False
        if key.get("use") not in (None, "sig"):
            return False
        if "key_ops" in key and "verify" not in (key.get("key_ops") or []):
            return False
        if key.get("alg") not in (None, alg):
            return False
        return alg not in _EC_CURVE or key.get("crv") == _EC_CURVE[alg]

    return [key for key in keys if fits(key)]


def _check_claims(
    claims: Mapping[str, Any], *, client_id: str, token_endpoint: str, now: int, leeway: int
) -> tuple[str, int]:
    if claims.get("iss") != client_id or claims.get("sub") != client_id:
        raise InvalidAssertion("iss and sub must both be the client_id")
    aud = claims.get("aud")
    if not (aud == token_endpoint or (isinstance(aud, list) and token_endpoint in aud)):
        raise InvalidAssertion("aud must be the token endpoint URL")
    exp = claims.get("exp")
    if not isinstance(exp, int) or isinstance(exp, bool):
        raise InvalidAssertion("exp is required")
    if exp <= now - leeway:
        raise InvalidAssertion("client_assertion expired")
    if exp > now + MAX_LIFETIME + leeway:
        raise InvalidAssertion("exp is more than five minutes in the future")
    for name in ("nbf", "iat"):
        value = claims.get(name)
        if value is not None and (not isinstance(value, int) or value > now + leeway):
            raise InvalidAssertion(f"{name} is in the future")
    jti = claims.get("jti")
    if not isinstance(jti, str) or not jti or len(jti) > 255:
        raise InvalidAssertion("jti is required")
    return jti, exp


async def verify_client_assertion(
    assertion: str,
    *,
    client_id: str,
    token_endpoint: str,
    jwks: Mapping[str, Any] | None,
    jwks_uri: str | None,
    fetcher: JwksFetcher,
    jti_store: JtiStore,
    now: int | None = None,
    leeway: int = DEFAULT_LEEWAY,
) -> AssertionClaims:
    """Authenticate `client_id` by its assertion; raise `InvalidAssertion` on any failure."""
    header = _segments_json(assertion, 0)
    alg = header.get("alg")
    if alg not in ACCEPTED_ALGORITHMS:
        raise InvalidAssertion(f"algorithm {alg!r} is not accepted (use RS384 or ES384)")
    kid = header.get("kid")
    if not isinstance(kid, str) or not kid:
        raise InvalidAssertion("the assertion header must carry the kid of the signing key")
    jku = header.get("jku")
    if jku is not None and jku != jwks_uri:
        raise InvalidAssertion("jku does not match the client's registered JWKS URL")

    if jwks is not None:
        candidates = _candidates(jwks_keys(jwks), kid=kid, alg=alg)
    elif jwks_uri:
        candidates = _candidates(await fetcher.get(jwks_uri), kid=kid, alg=alg)
        if not candidates:  # the client may have rotated its keys since we cached them
            candidates = _candidates(await fetcher.get(jwks_uri, force=True), kid=kid, alg=alg)
    else:
        raise InvalidAssertion("the client has no registered public keys")
    if not candidates:
        raise InvalidAssertion(f"no registered {alg} key with kid {kid!r}")

    payload: bytes | None = None
    for candidate in candidates:
        try:
            payload = jws.verify(assertion, jwk.construct(dict(candidate), alg), algorithms=[alg])
            break
        except JOSEError:
            continue
    if payload is None:
        raise InvalidAssertion("client_assertion signature does not verify")
    claims = _parse_json(payload)
    if not isinstance(claims, dict):
        raise InvalidAssertion("client_assertion payload is not an object")
    current = int(time.time()) if now is None else now
    jti, exp = _check_claims(
        claims, client_id=client_id, token_endpoint=token_endpoint, now=current, leeway=leeway
    )
    # Replay protection (RFC 7523 §3 item 7): jtis are unique per client, so namespace them.
    if not await jti_store.remember(f"assertion:{client_id}:{jti}", exp + leeway):
        raise InvalidAssertion("client_assertion jti was already used")
    return AssertionClaims(client_id, jti, exp, alg, kid, claims)
