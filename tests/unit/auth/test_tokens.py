"""Access/id tokens: what verification accepts and, above all, what it refuses (RFC 7519, RFC 8725)."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import time
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from jose import jws

from pms.auth.keys import KeyRing, SigningKey, b64url, generate_rsa_key, jwk_thumbprint
from pms.auth.tokens import (
    InvalidToken,
    issue_access_token,
    issue_id_token,
    verify_access_token,
    verify_id_token,
)

ISS = "https://pms.example/fhir"
AUD = "https://pms.example/fhir"
NOW = datetime.now(UTC)


def _key(created: datetime = NOW, **kwargs: Any) -> SigningKey:
    pem, public = generate_rsa_key()
    return SigningKey(public["kid"], pem, public, created, **kwargs)


@pytest.fixture(scope="module")
def key() -> SigningKey:
    return _key()


@pytest.fixture(scope="module")
def ring(key: SigningKey) -> KeyRing:
    return KeyRing.of([key], now=NOW)


def _token(key: SigningKey, **overrides: Any) -> str:
    args: dict[str, Any] = {
        "issuer": ISS,
        "audience": AUD,
        "subject": "u-1",
        "client_id": "app",
        "scope": "patient/*.rs openid",
        "lifetime": 300,
        "context": {"patient": "p1", "encounter": None},
        "fhir_user": "Patient/p1",
    }
    args.update(overrides)
    return issue_access_token(key, **args)


def _segments(token: str) -> list[dict[str, Any]]:
    head, body, _ = token.split(".")
    return [json.loads(base64.urlsafe_b64decode(part + "=" * (-len(part) % 4))) for part in (head, body)]


def _forge(header: dict[str, Any], claims: dict[str, Any], signature: bytes = b"") -> str:
    def enc(value: dict[str, Any]) -> str:
        return b64url(json.dumps(value).encode())

    return f"{enc(header)}.{enc(claims)}.{b64url(signature)}"


class TestKeys:
    def test_kid_is_the_rfc7638_thumbprint(self, key: SigningKey) -> None:
        assert key.kid == jwk_thumbprint(key.public_jwk)
        assert key.public_jwk["alg"] == "RS256" and key.public_jwk["use"] == "sig"
        assert "d" not in key.public_jwk  # nothing private in the JWK

    def test_rfc7638_example(self) -> None:
        # RFC 7638 §3.1's worked example.
        jwk = {
            "kty": "RSA",
            "n": (
                "0vx7agoebGcQSuuPiLJXZptN9nndrQmbXEps2aiAFbWhM78LhWx4cbbfAAtVT86zwu1RK7aPFFxuhDR1L6tSoc_BJECP"
                "ebWKRXjBZCiFV4n3oknjhMstn64tZ_2W-5JsGY4Hc5n9yBXArwl93lqt7_RN5w6Cf0h4QyQ5v-65YGjQR0_FDW2QvzqY"
                "368QQMicAtaSqzs8KJZgnYb9c7d0zgdAZHzu6qMQvRL5hajrn1n91CbOpbISD08qNLyrdkt-bFTWhAI4vMQFh6WeZu0f"
                "M4lFd2NcRwr3XPksINHaQ-G_xBniIqbw0Ls1jF44-csFCur-kEgU8awapJzKnqDKgw"
            ),
            "e": "AQAB",
            "alg": "RS256",
            "kid": "2011-04-29",
        }
        assert jwk_thumbprint(jwk) == "NzbLsXh8uDCcd-6MNwXF4W_7noWXFZAfHkxZsRGC9Xs"

    def test_ring_signs_with_the_newest_current_key_and_verifies_retired_ones(self) -> None:
        old = _key(NOW - timedelta(days=1), retired_at=NOW, expires_at=NOW + timedelta(minutes=15))
        expired = _key(NOW - timedelta(days=2), retired_at=NOW, expires_at=NOW - timedelta(seconds=1))
        new = _key(NOW)
        ring = KeyRing.of([old, expired, new], now=NOW)
        assert ring.signing == new
        assert set(ring.verifying) == {old.kid, new.kid}
        assert [k["kid"] for k in ring.jwks()["keys"]] == [new.kid, old.kid]


class TestAccepted:
    def test_round_trip(self, key: SigningKey, ring: KeyRing) -> None:
        token = _token(key)
        header, _ = _segments(token)
        assert header == {"alg": "RS256", "kid": key.kid, "typ": "at+jwt"}
        claims = verify_access_token(token, ring, audience=AUD, issuer=ISS)
        assert (claims.subject, claims.client_id, claims.patient, claims.fhir_user) == (
            "u-1",
            "app",
            "p1",
            "Patient/p1",
        )
        assert claims.encounter is None and claims.principal == "user" and claims.user_id == "u-1"
        assert claims.scopes == ["patient/*.rs", "openid"]
        assert claims.expires_at - claims.issued_at == 300 and claims.token_id

    def test_backend_token(self, key: SigningKey, ring: KeyRing) -> None:
        token = _token(key, subject="lab", client_id="lab", principal="client", context=None, fhir_user=None)
        claims = verify_access_token(token, ring, audience=AUD, issuer=ISS)
        assert claims.principal == "client" and claims.user_id is None and claims.patient is None

    def test_retired_key_still_verifies_until_it_expires(self, key: SigningKey) -> None:
        retired = SigningKey(key.kid, key.private_pem, key.public_jwk, NOW, NOW, NOW + timedelta(minutes=15))
        token = _token(retired)
        verify_access_token(token, KeyRing.of([retired, _key()], now=NOW), audience=AUD, issuer=ISS)
        later = NOW + timedelta(minutes=16)
        with pytest.raises(InvalidToken, match="unknown kid"):
            verify_access_token(token, KeyRing.of([retired], now=later), audience=AUD, issuer=ISS)

    def test_id_token(self, key: SigningKey, ring: KeyRing) -> None:
        token = issue_id_token(
            key,
            issuer=ISS,
            subject="u-1",
            client_id="app",
            lifetime=300,
            nonce="n-1",
            fhir_user=f"{ISS}/Patient/1",
        )
        claims = verify_id_token(token, ring, client_id="app", issuer=ISS)
        assert (
            claims["aud"] == "app" and claims["nonce"] == "n-1" and claims["fhirUser"].endswith("/Patient/1")
        )
        with pytest.raises(InvalidToken):  # an id_token is not an access token
            verify_access_token(token, ring, audience="app", issuer=ISS)


class TestRefused:
    def test_alg_none(self, key: SigningKey, ring: KeyRing) -> None:
        _, claims = _segments(_token(key))
        for alg in ("none", "None", "NONE"):
            forged = _forge({"alg": alg, "kid": key.kid, "typ": "at+jwt"}, claims)
            with pytest.raises(InvalidToken, match="algorithm"):
                verify_access_token(forged, ring, audience=AUD, issuer=ISS)

    def test_hs256_signed_with_the_public_key(self, key: SigningKey, ring: KeyRing) -> None:
        """The key-confusion attack: HMAC keyed with our (public) RSA key, in PEM and JWK forms."""
        _, claims = _segments(_token(key))
        claims["scope"] = "system/*.*"
        public_pem = key.verifier.to_pem()
        header = {"alg": "HS256", "kid": key.kid, "typ": "at+jwt"}
        for secret in (public_pem, json.dumps(key.public_jwk).encode()):
            signing_input = ".".join(_forge(header, claims).split(".")[:2]).encode()
            mac = hmac.new(secret, signing_input, hashlib.sha256).digest()
            forged = signing_input.decode() + "." + b64url(mac)
            with pytest.raises(InvalidToken, match="algorithm"):
                verify_access_token(forged, ring, audience=AUD, issuer=ISS)

    def test_other_asymmetric_algorithms(self, key: SigningKey, ring: KeyRing) -> None:
        _, claims = _segments(_token(key))
        forged = jws.sign(
            claims, key.private_pem, headers={"kid": key.kid, "typ": "at+jwt"}, algorithm="RS512"
        )
        with pytest.raises(InvalidToken, match="algorithm"):
            verify_access_token(forged, ring, audience=AUD, issuer=ISS)

    def test_unknown_kid_and_missing_kid(self, key: SigningKey, ring: KeyRing) -> None:
        stranger = _key()
        with pytest.raises(InvalidToken, match="unknown kid"):
            verify_access_token(_token(stranger), ring, audience=AUD, issuer=ISS)
        _, claims = _segments(_token(key))
        no_kid = jws.sign(claims, key.private_pem, headers={"typ": "at+jwt"}, algorithm="RS256")
        with pytest.raises(InvalidToken, match="kid"):
            verify_access_token(no_kid, ring, audience=AUD, issuer=ISS)

    def test_signed_by_another_key_under_our_kid(self, key: SigningKey, ring: KeyRing) -> None:
        stranger = _key()
        impostor = SigningKey(key.kid, stranger.private_pem, stranger.public_jwk, NOW)
        with pytest.raises(InvalidToken, match="signature"):
            verify_access_token(_token(impostor), ring, audience=AUD, issuer=ISS)

    def test_tampered_payload(self, key: SigningKey, ring: KeyRing) -> None:
        head, _, signature = _token(key).split(".")
        _, claims = _segments(_token(key))
        claims["patient"] = "someone-else"
        tampered = f"{head}.{b64url(json.dumps(claims).encode())}.{signature}"
        with pytest.raises(InvalidToken, match="signature"):
            verify_access_token(tampered, ring, audience=AUD, issuer=ISS)

    def test_tampered_signature(self, key: SigningKey, ring: KeyRing) -> None:
        head, body, signature = _token(key).split(".")
        flipped = ("A" if signature[0] != "A" else "B") + signature[1:]
        with pytest.raises(InvalidToken):
            verify_access_token(f"{head}.{body}.{flipped}", ring, audience=AUD, issuer=ISS)

    def test_expired(self, key: SigningKey, ring: KeyRing) -> None:
        token = _token(key, now=int(time.time()) - 3600, lifetime=300)
        with pytest.raises(InvalidToken, match="expired"):
            verify_access_token(token, ring, audience=AUD, issuer=ISS)

    def test_not_yet_valid(self, key: SigningKey, ring: KeyRing) -> None:
        token = _token(key, now=int(time.time()) + 3600)
        with pytest.raises(InvalidToken, match="not yet valid"):
            verify_access_token(token, ring, audience=AUD, issuer=ISS)

    def test_leeway_tolerates_small_skew(self, key: SigningKey, ring: KeyRing) -> None:
        token = _token(key, now=int(time.time()) + 10)
        verify_access_token(token, ring, audience=AUD, issuer=ISS)

    def test_wrong_audience_and_issuer(self, key: SigningKey, ring: KeyRing) -> None:
        with pytest.raises(InvalidToken, match="audience"):
            verify_access_token(
                _token(key, audience="https://evil.example/fhir"), ring, audience=AUD, issuer=ISS
            )
        with pytest.raises(InvalidToken, match="issuer"):
            verify_access_token(_token(key, issuer="https://evil.example"), ring, audience=AUD, issuer=ISS)

    def test_missing_claims(self, key: SigningKey, ring: KeyRing) -> None:
        _, claims = _segments(_token(key))
        for name in ("exp", "nbf", "iat", "sub", "jti", "client_id", "scope", "principal"):
            partial = {k: v for k, v in claims.items() if k != name}
            token = jws.sign(
                partial, key.signer, headers={"kid": key.kid, "typ": "at+jwt"}, algorithm="RS256"
            )
            with pytest.raises(InvalidToken):
                verify_access_token(token, ring, audience=AUD, issuer=ISS)

    @pytest.mark.parametrize(
        "garbage",
        ["", "abc", "a.b.c", "..", "e30.e30.", "eyJhbGciOiJSUzI1NiJ9.!!!.sig", "x" * 5000],
    )
    def test_garbage(self, ring: KeyRing, garbage: str) -> None:
        with pytest.raises(InvalidToken):
            verify_access_token(garbage, ring, audience=AUD, issuer=ISS)
