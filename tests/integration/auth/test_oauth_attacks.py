"""Attacks on the authorization server, against the real server: every one refused, audited, never a 500.

Forged tokens are checked where this server verifies them (introspection; the FHIR endpoints use the same
`verify_access_token`): alg=none, HS256 keyed with our public key, expired, not yet valid, wrong aud/iss,
tampered. Then the protocol attacks: code replay, PKCE mismatch/downgrade, unregistered redirect URIs (no
open redirect), refresh-token replay, scope escalation, assertion replay, brute-force sign-in, CSRF,
skipping the second factor, session timeouts and malformed requests.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import time
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from html.parser import HTMLParser
from typing import Any
from urllib.parse import parse_qs, urlencode, urlsplit

import httpx
import pyotp
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from jose import jwk, jws
from sqlalchemy import text

from pms.auth import pkce, rbac
from pms.auth.keys import SigningKey, b64url, generate_rsa_key
from pms.auth.tokens import issue_access_token
from pms.config import Settings
from pms.core.db import Database
from pms.fhir.validation import validate_resource
from pms.storage import accounts, identity
from pms.storage.indexer import Indexer
from pms.storage.registry_provider import load_registry
from pms.storage.repository import FhirRepository

PASSWORD = "Correct-Horse-Battery-Staple-9"
REDIRECT = "https://app.example/callback"
ASSERTION_TYPE = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"
SCOPES = "openid fhirUser launch/patient offline_access patient/*.rs user/*.rs"


# -- browser helpers (the same walk as test_oauth_flows, kept local to this module) --------------------------


class _Forms(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.forms: dict[str, dict[str, str]] = {}
        self._current: dict[str, str] | None = None

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        attr = {k: v or "" for k, v in attrs}
        if tag == "form":
            self._current = {}
        elif tag == "input" and self._current is not None and attr.get("type") != "radio" and "name" in attr:
            self._current[attr["name"]] = attr.get("value", "")
            if attr["name"] == "step":
                self.forms[attr["value"]] = self._current


def forms_of(html: str) -> dict[str, dict[str, str]]:
    parser = _Forms()
    parser.feed(html)
    return parser.forms


async def submit(http: httpx.AsyncClient, page: httpx.Response, step: str, **values: str) -> httpx.Response:
    return await http.post("/oauth2/authorize", data={**forms_of(page.text)[step], **values})


@dataclass
class World:
    server_url: str
    fhir: str
    token_url: str
    db: Database
    app: identity.Client
    other_app: identity.Client
    backend: identity.Client
    backend_key: dict[str, Any]
    patient: str
    tag: str
    portal: accounts.UserAccount
    extra: dict[str, Any] = field(default_factory=dict)


@pytest.fixture(scope="module")
async def world(settings: Settings, server_url: str) -> AsyncIterator[World]:
    tag = uuid.uuid4().hex[:8]
    db = await Database.open(settings)
    now = datetime.now(UTC)
    pem = (
        rsa.generate_private_key(65537, 2048)
        .private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )
        .decode()
    )
    kid = uuid.uuid4().hex
    backend_key = {
        "pem": pem,
        "kid": kid,
        "jwk": {**jwk.construct(pem, "RS384").public_key().to_dict(), "kid": kid},
    }
    async with db.transaction() as conn:
        await accounts.seed_roles(conn, roles=rbac.role_rows())
        repo = FhirRepository(conn, validator=validate_resource, indexer=Indexer(await load_registry(conn)))
        patient = await repo.create({"resourceType": "Patient", "name": [{"family": f"Atk{tag}"}]})
        await repo.flush()
        portal = await accounts.create_user(
            conn,
            username=f"atk-pt-{tag}",
            password=PASSWORD,
            roles=["patient"],
            fhir_user=f"Patient/{patient.id}",
        )
        app, other = [
            await identity.create_client(
                conn,
                name=name,
                kind="public",
                grant_types=["authorization_code", "refresh_token"],
                scopes=SCOPES.split(),
                redirect_uris=[REDIRECT],
                now=now,
            )
            for name in ("App", "Other")
        ]
        backend = await identity.create_client(
            conn,
            name="Lab",
            kind="backend",
            grant_types=["client_credentials"],
            scopes=["system/Observation.cruds"],
            jwks={"keys": [backend_key["jwk"]]},
            now=now,
        )
    try:
        yield World(
            server_url=server_url,
            fhir=f"{server_url}/fhir",
            token_url=f"{server_url}/oauth2/token",
            db=db,
            app=app,
            other_app=other,
            backend=backend,
            backend_key=backend_key,
            patient=patient.id,
            tag=tag,
            portal=portal,
        )
    finally:
        await db.dispose()


@pytest.fixture
async def http(server_url: str) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(base_url=server_url, follow_redirects=False, timeout=60) as client:
        yield client


def authorize_query(world: World, **params: str) -> dict[str, str]:
    query = {
        "response_type": "code",
        "client_id": world.app.client_id,
        "redirect_uri": REDIRECT,
        "scope": "patient/*.rs offline_access",
        "state": uuid.uuid4().hex,
        "aud": world.fhir,
    }
    query.update(params)
    return {k: v for k, v in query.items() if v != ""}


async def portal_code(
    world: World, http: httpx.AsyncClient, *, verifier: str, username: str | None = None, **params: str
) -> str:
    query = authorize_query(
        world, code_challenge=pkce.challenge_for(verifier), code_challenge_method="S256", **params
    )
    page = await http.get(f"/oauth2/authorize?{urlencode(query)}")
    if "login" in forms_of(page.text):
        page = await submit(
            http, page, "login", username=username or world.portal.username, password=PASSWORD
        )
    page = await submit(http, page, "consent", decision="approve")
    assert page.status_code == 303, page.text
    code: str = parse_qs(urlsplit(page.headers["location"]).query)["code"][0]
    return code


async def exchange(
    http: httpx.AsyncClient, world: World, code: str, verifier: str | None, **extra: str
) -> httpx.Response:
    data = {
        "grant_type": "authorization_code",
        "code": code,
        "redirect_uri": REDIRECT,
        "client_id": world.app.client_id,
    }
    if verifier is not None:
        data["code_verifier"] = verifier
    data.update(extra)
    return await http.post("/oauth2/token", data=data)


async def refresh(http: httpx.AsyncClient, world: World, token: str, **extra: str) -> httpx.Response:
    data = {"grant_type": "refresh_token", "refresh_token": token, "client_id": world.app.client_id, **extra}
    return await http.post("/oauth2/token", data=data)


async def tokens(world: World, http: httpx.AsyncClient, **params: str) -> dict[str, Any]:
    verifier = pkce.make_verifier()
    code = await portal_code(world, http, verifier=verifier, **params)
    response = await exchange(http, world, code, verifier)
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


def assert_oauth_error(response: httpx.Response, error: str, status: int = 400) -> None:
    assert response.status_code == status, response.text
    assert response.json()["error"] == error
    assert response.headers["cache-control"] == "no-store"


# -- forged and invalid access tokens -----------------------------------------------------------------------


async def _server_key(world: World) -> SigningKey:
    async with world.db.reader() as conn:
        keys = await identity.load_keys(conn, now=datetime.now(UTC))
    current = [k for k in keys if k.retired_at is None]
    assert current
    return max(current, key=lambda k: k.created_at)


def _segments(token: str) -> tuple[dict[str, Any], dict[str, Any]]:
    head, body, _ = token.split(".")

    def dec(part: str) -> dict[str, Any]:
        value: dict[str, Any] = json.loads(base64.urlsafe_b64decode(part + "=" * (-len(part) % 4)))
        return value

    return dec(head), dec(body)


def _encode(value: dict[str, Any]) -> str:
    return b64url(json.dumps(value).encode())


class TestForgedAccessTokens:
    async def _introspect(self, world: World, http: httpx.AsyncClient, token: str) -> dict[str, Any]:
        assertion = backend_assertion(world)
        response = await http.post(
            "/oauth2/introspect",
            data={"token": token, "client_assertion_type": ASSERTION_TYPE, "client_assertion": assertion},
        )
        assert response.status_code == 200, response.text
        body: dict[str, Any] = response.json()
        return body

    async def _genuine(self, world: World, http: httpx.AsyncClient) -> str:
        response = await http.post(
            "/oauth2/token",
            data={
                "grant_type": "client_credentials",
                "client_assertion_type": ASSERTION_TYPE,
                "client_assertion": backend_assertion(world),
            },
        )
        token: str = response.json()["access_token"]
        return token

    async def test_genuine_token_is_active(self, world: World, http: httpx.AsyncClient) -> None:
        assert (await self._introspect(world, http, await self._genuine(world, http)))["active"] is True

    async def test_alg_none(self, world: World, http: httpx.AsyncClient) -> None:
        header, claims = _segments(await self._genuine(world, http))
        claims["scope"] = "system/*.*"
        for alg in ("none", "None"):
            forged = f"{_encode({**header, 'alg': alg})}.{_encode(claims)}."
            assert await self._introspect(world, http, forged) == {"active": False}

    async def test_hs256_keyed_with_our_public_key(self, world: World, http: httpx.AsyncClient) -> None:
        header, claims = _segments(await self._genuine(world, http))
        claims["scope"] = "system/*.*"
        jwks = (await http.get("/oauth2/jwks")).json()["keys"]
        public = next(k for k in jwks if k["kid"] == header["kid"])
        public_pem = jwk.construct(public, "RS256").to_pem()
        for secret in (public_pem, json.dumps(public).encode(), public["n"].encode()):
            signing_input = f"{_encode({**header, 'alg': 'HS256'})}.{_encode(claims)}"
            mac = hmac.new(secret, signing_input.encode(), hashlib.sha256).digest()
            assert await self._introspect(world, http, f"{signing_input}.{b64url(mac)}") == {"active": False}

    async def test_bad_claims_signed_with_the_real_key(self, world: World, http: httpx.AsyncClient) -> None:
        key = await _server_key(world)
        now = int(time.time())
        good: dict[str, Any] = {
            "issuer": world.fhir,
            "audience": world.fhir,
            "subject": world.backend.client_id,
            "client_id": world.backend.client_id,
            "scope": "system/Observation.rs",
            "lifetime": 300,
            "principal": "client",
        }
        assert (await self._introspect(world, http, issue_access_token(key, **good)))["active"] is True
        cases: dict[str, dict[str, Any]] = {
            "expired": {"now": now - 3600},
            "not yet valid": {"now": now + 3600},
            "wrong audience": {"audience": "https://other.example/fhir"},
            "wrong issuer": {"issuer": "https://other.example/fhir"},
        }
        for name, change in cases.items():
            token = issue_access_token(key, **(good | change))
            assert await self._introspect(world, http, token) == {"active": False}, name

    async def test_tampered(self, world: World, http: httpx.AsyncClient) -> None:
        token = await self._genuine(world, http)
        head, body, signature = token.split(".")
        _, claims = _segments(token)
        claims["scope"] = "system/*.*"
        assert await self._introspect(world, http, f"{head}.{_encode(claims)}.{signature}") == {
            "active": False
        }
        flipped = signature[:-6] + ("AAAAAA" if not signature.endswith("AAAAAA") else "BBBBBB")
        assert await self._introspect(world, http, f"{head}.{body}.{flipped}") == {"active": False}

    async def test_unknown_kid(self, world: World, http: httpx.AsyncClient) -> None:
        pem, public = generate_rsa_key()
        stranger = SigningKey(public["kid"], pem, public, datetime.now(UTC))
        token = issue_access_token(
            stranger,
            issuer=world.fhir,
            audience=world.fhir,
            subject="x",
            client_id="x",
            scope="system/*.*",
            lifetime=300,
            principal="client",
        )
        assert await self._introspect(world, http, token) == {"active": False}


# -- authorization code and PKCE ----------------------------------------------------------------------------


class TestCodeAttacks:
    async def test_reused_code_is_refused_and_revokes_what_it_granted(
        self, world: World, http: httpx.AsyncClient
    ) -> None:
        verifier = pkce.make_verifier()
        code = await portal_code(world, http, verifier=verifier)
        first = await exchange(http, world, code, verifier)
        assert first.status_code == 200
        replay = await exchange(http, world, code, verifier)
        assert_oauth_error(replay, "invalid_grant")
        # The refresh token from the first exchange died with the replay (RFC 6749 §4.1.2).
        assert_oauth_error(await refresh(http, world, first.json()["refresh_token"]), "invalid_grant")

    async def test_wrong_or_missing_pkce_verifier(self, world: World, http: httpx.AsyncClient) -> None:
        verifier = pkce.make_verifier()
        for attempt in (pkce.make_verifier(), None, pkce.challenge_for(verifier)):
            code = await portal_code(world, http, verifier=verifier)
            assert_oauth_error(await exchange(http, world, code, attempt), "invalid_grant")
            # and the code is spent: the right verifier does not rescue it afterwards
            assert_oauth_error(await exchange(http, world, code, verifier), "invalid_grant")

    async def test_public_client_without_pkce_or_with_plain(
        self, world: World, http: httpx.AsyncClient
    ) -> None:
        for params in ({}, {"code_challenge": "x" * 43, "code_challenge_method": "plain"}):
            response = await http.get(f"/oauth2/authorize?{urlencode(authorize_query(world, **params))}")
            assert response.status_code == 302
            location = response.headers["location"]
            assert location.startswith(REDIRECT) and "error=invalid_request" in location

    async def test_code_of_another_client(self, world: World, http: httpx.AsyncClient) -> None:
        verifier = pkce.make_verifier()
        code = await portal_code(world, http, verifier=verifier)
        response = await exchange(http, world, code, verifier, client_id=world.other_app.client_id)
        assert_oauth_error(response, "invalid_grant")

    async def test_redirect_uri_must_match_at_the_token_endpoint(
        self, world: World, http: httpx.AsyncClient
    ) -> None:
        verifier = pkce.make_verifier()
        code = await portal_code(world, http, verifier=verifier)
        response = await exchange(http, world, code, verifier, redirect_uri=REDIRECT + "/other")
        assert_oauth_error(response, "invalid_grant")

    async def test_garbage_codes(self, world: World, http: httpx.AsyncClient) -> None:
        for code in ("", "x", "' OR 1=1 --", "\x00", "a" * 5000):
            assert (await exchange(http, world, code, pkce.make_verifier())).status_code == 400


class TestRedirectUris:
    @pytest.mark.parametrize(
        "redirect_uri",
        [
            "https://evil.example/callback",
            REDIRECT + "/",
            REDIRECT + "?next=https://evil.example",
            REDIRECT + "#frag",
            REDIRECT.replace("https", "http"),
            REDIRECT.upper(),
            "https://app.example.evil.example/callback",
            "https://app.example@evil.example/callback",
            "//evil.example/callback",
            "",
        ],
    )
    async def test_unregistered_redirect_uri_gets_a_page_never_a_redirect(
        self, world: World, http: httpx.AsyncClient, redirect_uri: str
    ) -> None:
        query = authorize_query(
            world, redirect_uri=redirect_uri, code_challenge="x" * 43, code_challenge_method="S256"
        )
        response = await http.get(f"/oauth2/authorize?{urlencode(query)}")
        assert response.status_code == 400
        assert "location" not in response.headers
        assert "redirect_uri is not registered" in response.text
        assert "evil.example" not in response.text

    async def test_unknown_client_gets_a_page(self, world: World, http: httpx.AsyncClient) -> None:
        for client_id in ("nope", "", "x' OR '1'='1"):
            response = await http.get(
                f"/oauth2/authorize?{urlencode(authorize_query(world, client_id=client_id))}"
            )
            assert response.status_code == 400 and "location" not in response.headers

    async def test_post_to_authorize_with_bad_redirect_is_also_a_page(
        self, world: World, http: httpx.AsyncClient
    ) -> None:
        response = await http.post(
            "/oauth2/authorize", data=authorize_query(world, redirect_uri="https://evil.example/")
        )
        assert response.status_code == 400 and "location" not in response.headers

    async def test_wrong_aud_and_unknown_scopes_go_back_as_errors(
        self, world: World, http: httpx.AsyncClient
    ) -> None:
        pk = {"code_challenge": pkce.challenge_for(pkce.make_verifier()), "code_challenge_method": "S256"}
        cases = [
            ({"aud": "https://evil.example/fhir"}, "invalid_request"),
            ({"aud": ""}, "invalid_request"),
            ({"scope": "system/*.*"}, "invalid_scope"),
            ({"scope": "patient/*.rs admin"}, "invalid_scope"),
            ({"scope": "user/*.cruds"}, "invalid_scope"),  # beyond the registration (user/*.rs)
            ({"scope": ""}, "invalid_scope"),
            ({"response_type": "token"}, "unsupported_response_type"),
            ({"state": ""}, "invalid_request"),
        ]
        for params, error in cases:
            query = authorize_query(world, **pk, **params)
            response = await http.get(f"/oauth2/authorize?{urlencode(query)}")
            assert response.status_code == 302, (params, response.text)
            assert f"error={error}" in response.headers["location"], params


# -- refresh tokens ------------------------------------------------------------------------------------------


class TestRefreshAttacks:
    async def test_replay_revokes_the_family(self, world: World, http: httpx.AsyncClient) -> None:
        first = (await tokens(world, http))["refresh_token"]
        second_response = await refresh(http, world, first)
        assert second_response.status_code == 200
        second = second_response.json()["refresh_token"]
        assert second != first
        assert_oauth_error(await refresh(http, world, first), "invalid_grant")  # replay of a spent token
        assert_oauth_error(await refresh(http, world, second), "invalid_grant")  # the family died with it

    async def test_scope_escalation_refused_and_narrowing_allowed(
        self, world: World, http: httpx.AsyncClient
    ) -> None:
        token = (await tokens(world, http, scope="patient/Observation.rs offline_access"))["refresh_token"]
        for wider in (
            "patient/*.rs offline_access",
            "patient/Observation.cruds",
            "user/*.rs",
            "system/*.*",
            "openid",
        ):
            assert_oauth_error(await refresh(http, world, token, scope=wider), "invalid_scope")
        # The refused attempts did not spend the token; a narrower scope is fine.
        narrowed = await refresh(http, world, token, scope="patient/Observation.r offline_access")
        assert narrowed.status_code == 200, narrowed.text
        assert narrowed.json()["scope"] == "patient/Observation.r offline_access"

    async def test_refresh_token_of_another_client(self, world: World, http: httpx.AsyncClient) -> None:
        token = (await tokens(world, http))["refresh_token"]
        stolen = await http.post(
            "/oauth2/token",
            data={
                "grant_type": "refresh_token",
                "refresh_token": token,
                "client_id": world.other_app.client_id,
            },
        )
        assert_oauth_error(stolen, "invalid_grant")
        assert_oauth_error(await refresh(http, world, token), "invalid_grant")  # revoked as compromised

    async def test_garbage_refresh_tokens(self, world: World, http: httpx.AsyncClient) -> None:
        for token in ("", "x", "a.b.c", "%00", "\u2603" * 100):
            assert (await refresh(http, world, token)).status_code == 400


# -- backend services ---------------------------------------------------------------------------------------


def backend_assertion(world: World, *, alg: str = "RS384", **overrides: Any) -> str:
    now = int(time.time())
    claims = {
        "iss": world.backend.client_id,
        "sub": world.backend.client_id,
        "aud": world.token_url,
        "exp": now + 240,
        "jti": uuid.uuid4().hex,
    } | overrides
    token: str = jws.sign(
        claims, world.backend_key["pem"], headers={"kid": world.backend_key["kid"]}, algorithm=alg
    )
    return token


class TestAssertionAttacks:
    async def _token(self, http: httpx.AsyncClient, assertion: str, **extra: str) -> httpx.Response:
        data = {
            "grant_type": "client_credentials",
            "client_assertion_type": ASSERTION_TYPE,
            "client_assertion": assertion,
        }
        return await http.post("/oauth2/token", data=data | extra)

    async def test_replayed_assertion(self, world: World, http: httpx.AsyncClient) -> None:
        assertion = backend_assertion(world)
        assert (await self._token(http, assertion)).status_code == 200
        assert_oauth_error(await self._token(http, assertion), "invalid_client", 401)

    async def test_bad_assertions(self, world: World, http: httpx.AsyncClient) -> None:
        now = int(time.time())
        header, claims = _segments(backend_assertion(world))
        unsigned = f"{_encode({**header, 'alg': 'none'})}.{_encode(claims)}."
        cases = [
            backend_assertion(world, aud="https://evil.example/token"),
            backend_assertion(world, exp=now - 600),
            backend_assertion(world, exp=now + 3600),
            backend_assertion(world, iss="someone-else"),
            backend_assertion(world, sub="someone-else"),
            unsigned,
            "not-a-jwt",
        ]
        for assertion in cases:
            assert_oauth_error(await self._token(http, assertion), "invalid_client", 401)

    async def test_wrong_assertion_type_and_client_id_mismatch(
        self, world: World, http: httpx.AsyncClient
    ) -> None:
        response = await http.post(
            "/oauth2/token",
            data={
                "grant_type": "client_credentials",
                "client_assertion_type": "urn:other",
                "client_assertion": backend_assertion(world),
            },
        )
        assert_oauth_error(response, "invalid_client", 401)
        mismatch = await self._token(http, backend_assertion(world), client_id=world.app.client_id)
        assert_oauth_error(mismatch, "invalid_client", 401)

    async def test_public_client_cannot_use_client_credentials(
        self, world: World, http: httpx.AsyncClient
    ) -> None:
        response = await http.post(
            "/oauth2/token", data={"grant_type": "client_credentials", "client_id": world.app.client_id}
        )
        assert response.status_code in (400, 401) and response.json()["error"] in (
            "unauthorized_client",
            "invalid_client",
        )

    async def test_wrong_basic_secret(self, world: World, http: httpx.AsyncClient) -> None:
        response = await http.post(
            "/oauth2/token",
            data={"grant_type": "client_credentials"},
            auth=(world.backend.client_id, "guess"),
        )
        assert_oauth_error(response, "invalid_client", 401)
        assert response.headers["www-authenticate"].startswith("Basic")


# -- sign-in ------------------------------------------------------------------------------------------------


class TestSignInAttacks:
    async def test_brute_force_locks_the_account(self, world: World, http: httpx.AsyncClient) -> None:
        async with world.db.transaction() as conn:
            victim = await accounts.create_user(
                conn, username=f"victim-{world.tag}", password=PASSWORD, roles=["patient"], fhir_user=None
            )
        query = authorize_query(
            world, code_challenge=pkce.challenge_for(pkce.make_verifier()), code_challenge_method="S256"
        )
        page = await http.get(f"/oauth2/authorize?{urlencode(query)}")
        statuses = []
        for attempt in range(7):
            page = await submit(http, page, "login", username=victim.username, password=f"wrong-{attempt}")
            statuses.append(page.status_code)
        assert statuses[:4] == [400] * 4 and statuses[4:] == [429] * 3
        assert "locked" in page.text
        # Even the right password is refused while the account is locked.
        page = await submit(http, page, "login", username=victim.username, password=PASSWORD)
        assert page.status_code == 429 and "consent" not in forms_of(page.text)

    async def test_unknown_user_and_wrong_password_look_the_same(
        self, world: World, http: httpx.AsyncClient
    ) -> None:
        query = authorize_query(
            world, code_challenge=pkce.challenge_for(pkce.make_verifier()), code_challenge_method="S256"
        )
        page = await http.get(f"/oauth2/authorize?{urlencode(query)}")
        unknown = await submit(http, page, "login", username=f"ghost-{world.tag}", password=PASSWORD)
        wrong = await submit(
            http, page, "login", username=world.portal.username, password="Wrong-Password-123"
        )
        assert unknown.status_code == wrong.status_code == 400
        assert "Wrong username or password" in unknown.text and "Wrong username or password" in wrong.text

    async def test_login_without_the_csrf_token_is_refused(
        self, world: World, http: httpx.AsyncClient
    ) -> None:
        query = authorize_query(
            world, code_challenge=pkce.challenge_for(pkce.make_verifier()), code_challenge_method="S256"
        )
        page = await http.get(f"/oauth2/authorize?{urlencode(query)}")
        fields = forms_of(page.text)["login"]
        for csrf in ("", "forged"):
            response = await http.post(
                "/oauth2/authorize",
                data={**fields, "csrf_token": csrf, "username": world.portal.username, "password": PASSWORD},
            )
            assert "login" in forms_of(response.text) and "expired" in response.text
            assert "pms_session" not in response.headers.get("set-cookie", "")

    async def test_staff_cannot_skip_the_second_factor(self, world: World, http: httpx.AsyncClient) -> None:
        async with world.db.transaction() as conn:
            nurse = await accounts.create_user(
                conn, username=f"nurse-{world.tag}", password=PASSWORD, roles=["nurse"], fhir_user=None
            )
        query = authorize_query(
            world, code_challenge=pkce.challenge_for(pkce.make_verifier()), code_challenge_method="S256"
        )
        page = await http.get(f"/oauth2/authorize?{urlencode(query)}")
        page = await submit(http, page, "login", username=nurse.username, password=PASSWORD)
        assert "enroll" in forms_of(page.text)
        fields = forms_of(page.text)["enroll"]
        # Straight to consent with the half-authenticated session: the 2FA step comes back instead.
        skipped = await http.post(
            "/oauth2/authorize", data={**fields, "step": "consent", "decision": "approve"}
        )
        assert skipped.status_code == 200 and "enroll" in forms_of(skipped.text)
        # A wrong enrollment code is refused too.
        wrong = await http.post(
            "/oauth2/authorize", data={**forms_of(skipped.text)["enroll"], "code": "000000"}
        )
        assert wrong.status_code == 400 and "enroll" in forms_of(wrong.text)
        secret = forms_of(wrong.text)["enroll"]["enroll_secret"]
        done = await http.post(
            "/oauth2/authorize", data={**forms_of(wrong.text)["enroll"], "code": pyotp.TOTP(secret).now()}
        )
        assert "continue" in forms_of(done.text)  # recovery codes

    async def test_portal_user_cannot_pick_another_patient(
        self, world: World, http: httpx.AsyncClient
    ) -> None:
        verifier = pkce.make_verifier()
        query = authorize_query(
            world,
            scope="launch/patient patient/*.rs",
            code_challenge=pkce.challenge_for(verifier),
            code_challenge_method="S256",
        )
        page = await http.get(f"/oauth2/authorize?{urlencode(query)}")
        page = await submit(http, page, "login", username=world.portal.username, password=PASSWORD)
        page = await submit(http, page, "consent", decision="approve", patient="someone-else")
        code = parse_qs(urlsplit(page.headers["location"]).query)["code"][0]
        body = (await exchange(http, world, code, verifier)).json()
        assert body["patient"] == world.patient

    async def test_idle_and_absolute_session_timeouts(self, world: World, http: httpx.AsyncClient) -> None:
        for column, age in (("last_seen_at", timedelta(minutes=16)), ("expires_at", timedelta(seconds=1))):
            await portal_code(world, http, verifier=pkce.make_verifier())  # signed in
            async with world.db.transaction() as conn:
                value = datetime.now(UTC) - age
                await conn.execute(
                    text(f"UPDATE auth_session SET {column} = :value WHERE user_id = :user AND NOT revoked"),
                    {"value": value, "user": world.portal.user_id},
                )
            query = authorize_query(
                world, code_challenge=pkce.challenge_for(pkce.make_verifier()), code_challenge_method="S256"
            )
            page = await http.get(f"/oauth2/authorize?{urlencode(query)}")
            assert "login" in forms_of(page.text), column


# -- malformed requests -------------------------------------------------------------------------------------


class TestMalformed:
    @pytest.mark.parametrize(
        ("body", "content_type"),
        [
            (b"", "application/x-www-form-urlencoded"),
            (b'{"grant_type": "client_credentials"}', "application/json"),
            (b"grant_type=refresh_token&grant_type=client_credentials", "application/x-www-form-urlencoded"),
            (b"grant_type=password&username=a&password=b", "application/x-www-form-urlencoded"),
            (b"grant_type=%ff%fe", "application/x-www-form-urlencoded"),
            (b"\xff\xfe\x00", "application/x-www-form-urlencoded"),
            (b"grant_type=authorization_code&" + b"a=b&" * 200, "application/x-www-form-urlencoded"),
            (b"x=" + b"a" * 70_000, "application/x-www-form-urlencoded"),
        ],
    )
    async def test_token_endpoint(self, http: httpx.AsyncClient, body: bytes, content_type: str) -> None:
        response = await http.post("/oauth2/token", content=body, headers={"content-type": content_type})
        assert 400 <= response.status_code < 500, response.text
        assert "error" in response.json()

    @pytest.mark.parametrize("path", ["/oauth2/introspect", "/oauth2/revoke"])
    async def test_introspect_and_revoke(self, world: World, http: httpx.AsyncClient, path: str) -> None:
        for data in ({}, {"token": ""}, {"token": "x", "client_id": "nope"}):
            response = await http.post(path, data=data)
            assert 400 <= response.status_code < 500, response.text
        missing = await http.post(path, data={"client_id": world.app.client_id})
        if path.endswith("introspect"):  # only confidential clients may introspect (RFC 7662 §2.1)
            assert_oauth_error(missing, "invalid_client", 401)
        else:
            assert_oauth_error(missing, "invalid_request")

    @pytest.mark.parametrize(
        "query",
        [
            "",
            "client_id=a&client_id=b",
            "%ff=%fe",
            "step=consent",
            "redirect_uri=javascript:alert(1)",
            "a=" + "b" * 9000,
        ],
    )
    async def test_authorize(self, http: httpx.AsyncClient, query: str) -> None:
        response = await http.get(f"/oauth2/authorize?{query}")
        assert response.status_code == 400 and "location" not in response.headers

    async def test_basic_header_garbage(self, http: httpx.AsyncClient) -> None:
        for header in ("Basic", "Basic !!!", "Basic " + base64.b64encode(b"no-colon").decode(), "Bearer x"):
            response = await http.post(
                "/oauth2/token", data={"grant_type": "client_credentials"}, headers={"authorization": header}
            )
            assert response.status_code == 401, (header, response.text)


# -- all of it audited --------------------------------------------------------------------------------------


async def test_refusals_are_audited(world: World) -> None:
    async with world.db.reader() as conn:
        rows = (
            await conn.execute(
                text(
                    "SELECT content->>'outcome' AS outcome, content->>'outcomeDesc' AS description "
                    "FROM resource WHERE resource_type = 'AuditEvent' AND content->>'outcome' <> '0'"
                )
            )
        ).all()
    descriptions = " | ".join(row.description or "" for row in rows)
    for expected in (
        "authorization code was already used",
        "code_verifier does not match",
        "refresh token was already used",
        "scope exceeds the original grant",
        "jti was already used",
        "password sign-in failed",
        "redirect_uri is not registered",
    ):
        assert expected in descriptions, expected
    assert any(row.outcome == "8" for row in rows)  # replays are serious failures
