"""private_key_jwt client assertions for SMART Backend Services (RFC 7523, SMART backend-services.html)."""

from __future__ import annotations

import hashlib
import hmac
import json
import time
import uuid
from typing import Any

import httpx
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from jose import jwk, jws

from pms.auth.assertions import (
    CLIENT_ASSERTION_TYPE,
    InvalidAssertion,
    JwksFetcher,
    claimed_client_id,
    verify_client_assertion,
)
from pms.auth.keys import b64url

CLIENT = "lab-client"
TOKEN_URL = "https://pms.example/oauth2/token"
JWKS_URL = "https://lab.example/.well-known/jwks.json"


def _pem(key: rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey) -> str:
    return key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    ).decode()


class ClientKey:
    def __init__(self, alg: str, kid: str | None = None) -> None:
        self.alg = alg
        self.kid = kid or uuid.uuid4().hex
        private = (
            ec.generate_private_key(ec.SECP384R1())
            if alg.startswith("ES")
            else rsa.generate_private_key(65537, 2048)
        )
        self.pem = _pem(private)
        public = jwk.construct(self.pem, alg).public_key().to_dict()
        self.public_jwk = {**public, "kid": self.kid, "alg": alg, "use": "sig"}

    def sign(self, claims: dict[str, Any], **header: Any) -> str:
        headers = {"kid": self.kid, "typ": "JWT", **header}
        token: str = jws.sign(claims, self.pem, headers=headers, algorithm=self.alg)
        return token


def _claims(**overrides: Any) -> dict[str, Any]:
    now = int(time.time())
    claims: dict[str, Any] = {
        "iss": CLIENT,
        "sub": CLIENT,
        "aud": TOKEN_URL,
        "exp": now + 240,
        "iat": now,
        "jti": uuid.uuid4().hex,
    }
    claims.update(overrides)
    return {k: v for k, v in claims.items() if v is not None}


class MemoryJtis:
    def __init__(self) -> None:
        self.seen: dict[str, int] = {}

    async def remember(self, jti: str, expires_at: int) -> bool:
        if jti in self.seen:
            return False
        self.seen[jti] = expires_at
        return True


async def _verify(
    assertion: str,
    keys: list[ClientKey] | None = None,
    *,
    jwks_uri: str | None = None,
    fetcher: JwksFetcher | None = None,
    jtis: MemoryJtis | None = None,
) -> Any:
    return await verify_client_assertion(
        assertion,
        client_id=CLIENT,
        token_endpoint=TOKEN_URL,
        jwks={"keys": [k.public_jwk for k in keys]} if keys is not None else None,
        jwks_uri=jwks_uri,
        fetcher=fetcher or JwksFetcher(),
        jti_store=jtis or MemoryJtis(),
    )


@pytest.fixture(scope="module")
def rs384() -> ClientKey:
    return ClientKey("RS384")


@pytest.fixture(scope="module")
def es384() -> ClientKey:
    return ClientKey("ES384")


def test_assertion_type_constant() -> None:
    assert CLIENT_ASSERTION_TYPE == "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"


@pytest.mark.parametrize("alg", ["RS384", "ES384", "RS256"])
async def test_accepted_algorithms(alg: str) -> None:
    key = ClientKey(alg)
    assertion = key.sign(_claims())
    assert claimed_client_id(assertion) == CLIENT
    result = await _verify(assertion, [key])
    assert result.client_id == CLIENT and result.algorithm == alg and result.kid == key.kid


async def test_key_chosen_by_kid_among_several(rs384: ClientKey, es384: ClientKey) -> None:
    await _verify(es384.sign(_claims()), [rs384, es384])


async def test_replayed_jti_refused(rs384: ClientKey) -> None:
    jtis = MemoryJtis()
    claims = _claims()
    await _verify(rs384.sign(claims), [rs384], jtis=jtis)
    with pytest.raises(InvalidAssertion, match="already used"):
        await _verify(rs384.sign(claims), [rs384], jtis=jtis)


class TestRefused:
    async def test_alg_none(self, rs384: ClientKey) -> None:
        header = b64url(b'{"alg":"none","kid":"%s"}' % rs384.kid.encode())
        body = b64url(json.dumps(_claims()).encode())
        with pytest.raises(InvalidAssertion, match="algorithm"):
            await _verify(f"{header}.{body}.", [rs384])

    async def test_hs256_with_the_public_key(self, rs384: ClientKey) -> None:
        secret = jwk.construct(rs384.pem, "RS384").public_key().to_pem()
        header = b64url(json.dumps({"alg": "HS256", "kid": rs384.kid}).encode())
        body = b64url(json.dumps(_claims()).encode())
        mac = hmac.new(secret, f"{header}.{body}".encode(), hashlib.sha256).digest()
        forged = f"{header}.{body}.{b64url(mac)}"
        with pytest.raises(InvalidAssertion, match="algorithm"):
            await _verify(forged, [rs384])

    async def test_rs512_not_accepted(self) -> None:
        key = ClientKey("RS512")
        with pytest.raises(InvalidAssertion, match="algorithm"):
            await _verify(key.sign(_claims()), [key])

    async def test_signed_by_an_unregistered_key_under_a_registered_kid(self, rs384: ClientKey) -> None:
        impostor = ClientKey("RS384", kid=rs384.kid)
        with pytest.raises(InvalidAssertion, match="signature"):
            await _verify(impostor.sign(_claims()), [rs384])

    async def test_unknown_or_missing_kid(self, rs384: ClientKey) -> None:
        with pytest.raises(InvalidAssertion, match="no registered"):
            await _verify(ClientKey("RS384").sign(_claims()), [rs384])
        no_kid = jws.sign(_claims(), rs384.pem, headers={}, algorithm="RS384")
        with pytest.raises(InvalidAssertion, match="kid"):
            await _verify(no_kid, [rs384])

    async def test_key_type_must_match_alg(self, rs384: ClientKey) -> None:
        # An RS384 key listed, but the header claims ES384 with its kid.
        header = b64url(json.dumps({"alg": "ES384", "kid": rs384.kid}).encode())
        with pytest.raises(InvalidAssertion, match="no registered"):
            await _verify(f"{header}.e30.AAAA", [rs384])

    @pytest.mark.parametrize(
        ("overrides", "reason"),
        [
            ({"iss": "other"}, "iss and sub"),
            ({"sub": "other"}, "iss and sub"),
            ({"aud": "https://evil.example/token"}, "aud"),
            ({"exp": None}, "exp"),
            ({"exp": int(time.time()) - 120}, "expired"),
            ({"exp": int(time.time()) + 3600}, "five minutes"),
            ({"jti": None}, "jti"),
            ({"nbf": int(time.time()) + 600}, "future"),
        ],
    )
    async def test_bad_claims(self, rs384: ClientKey, overrides: dict[str, Any], reason: str) -> None:
        with pytest.raises(InvalidAssertion, match=reason):
            await _verify(rs384.sign(_claims(**overrides)), [rs384])

    async def test_jku_must_be_the_registered_url(self, rs384: ClientKey) -> None:
        assertion = rs384.sign(_claims(), jku="https://evil.example/jwks.json")
        with pytest.raises(InvalidAssertion, match="jku"):
            await _verify(assertion, [rs384])

    async def test_client_without_keys(self, rs384: ClientKey) -> None:
        with pytest.raises(InvalidAssertion, match="no registered public keys"):
            await _verify(rs384.sign(_claims()), None)

    @pytest.mark.parametrize("garbage", ["", "abc", "a.b.c", "e30.e30.e30", "x" * 3000])
    async def test_garbage(self, rs384: ClientKey, garbage: str) -> None:
        with pytest.raises(InvalidAssertion):
            await _verify(garbage, [rs384])


class TestJwksUrl:
    def _fetcher(self, sets: list[list[ClientKey]], calls: list[str]) -> JwksFetcher:
        def handler(request: httpx.Request) -> httpx.Response:
            calls.append(str(request.url))
            current = sets[min(len(calls), len(sets)) - 1]
            return httpx.Response(200, json={"keys": [k.public_jwk for k in current]})

        return JwksFetcher(transport=httpx.MockTransport(handler), min_refetch=0)

    async def test_fetched_and_cached(self, rs384: ClientKey) -> None:
        calls: list[str] = []
        fetcher = self._fetcher([[rs384]], calls)
        for _ in range(3):
            await _verify(rs384.sign(_claims()), jwks_uri=JWKS_URL, fetcher=fetcher)
        assert calls == [JWKS_URL]

    async def test_refetched_when_the_client_rotated(self, rs384: ClientKey) -> None:
        rotated = ClientKey("RS384")
        calls: list[str] = []
        fetcher = self._fetcher([[rs384], [rotated]], calls)
        await _verify(rs384.sign(_claims()), jwks_uri=JWKS_URL, fetcher=fetcher)
        await _verify(rotated.sign(_claims()), jwks_uri=JWKS_URL, fetcher=fetcher)
        assert len(calls) == 2

    async def test_registered_jku_accepted(self, rs384: ClientKey) -> None:
        fetcher = self._fetcher([[rs384]], [])
        await _verify(rs384.sign(_claims(), jku=JWKS_URL), jwks_uri=JWKS_URL, fetcher=fetcher)

    async def test_plain_http_refused_except_loopback(self, rs384: ClientKey) -> None:
        calls: list[str] = []
        fetcher = self._fetcher([[rs384]], calls)
        with pytest.raises(InvalidAssertion, match="https"):
            await _verify(rs384.sign(_claims()), jwks_uri="http://lab.example/jwks", fetcher=fetcher)
        await _verify(rs384.sign(_claims()), jwks_uri="http://127.0.0.1:9/jwks", fetcher=fetcher)
        assert calls == ["http://127.0.0.1:9/jwks"]

    async def test_unreachable_or_broken_jwks(self, rs384: ClientKey) -> None:
        def broken(request: httpx.Request) -> httpx.Response:
            return httpx.Response(200, content=b"not json")

        fetcher = JwksFetcher(transport=httpx.MockTransport(broken))
        with pytest.raises(InvalidAssertion, match="JSON"):
            await _verify(rs384.sign(_claims()), jwks_uri=JWKS_URL, fetcher=fetcher)

        def down(request: httpx.Request) -> httpx.Response:
            raise httpx.ConnectError("refused", request=request)

        fetcher = JwksFetcher(transport=httpx.MockTransport(down))
        with pytest.raises(InvalidAssertion, match="could not fetch"):
            await _verify(rs384.sign(_claims()), jwks_uri=JWKS_URL, fetcher=fetcher)
