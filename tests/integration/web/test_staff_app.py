"""The staff web app as the API process serves it: its public OAuth client registered at start-up (a real
PKCE sign-in with 2FA through it), its files at `/` with client-side routes falling back to index.html,
the API's own paths never shadowed, and OpenID Connect UserInfo (the app shows the user's role)."""

from __future__ import annotations

import base64
import hashlib
import secrets
import uuid
from collections.abc import AsyncIterator
from urllib.parse import urlencode

import httpx
import pytest
from tests.integration.auth.test_oauth_flows import PASSWORD, Browser, sign_in
from tests.support import free_port, served

from pms.api import spa
from pms.config import Settings
from pms.core.db import Database
from pms.main import create_app
from pms.storage import accounts, identity

INDEX = "<!doctype html><title>PMS</title><div id=root></div>"


@pytest.fixture(scope="module")
async def app_url(settings: Settings, tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[str]:
    dist = tmp_path_factory.mktemp("dist")
    (dist / "index.html").write_text(INDEX)
    (dist / "assets").mkdir()
    (dist / "assets" / "index-abc123.js").write_text("console.log('app')")
    port = free_port()
    app_settings = settings.model_copy(
        update={"spa_dir": str(dist), "host": "127.0.0.1", "port": port, "spa_client_id": "staff-app-test"}
    )
    async with served(create_app(app_settings), port) as url:
        yield url


async def test_the_app_and_its_client_routes_are_served_at_the_root(app_url: str) -> None:
    async with httpx.AsyncClient(base_url=app_url) as http:
        for path in ("/", "/callback", "/patients/123", "/calendar"):
            response = await http.get(path)
            assert response.status_code == 200, path
            assert response.text == INDEX
            assert response.headers["cache-control"] == "no-cache"
        asset = await http.get("/assets/index-abc123.js")
        assert asset.text == "console.log('app')"
        assert "immutable" in asset.headers["cache-control"]
        assert (await http.get("/assets/missing.js")).status_code == 404
        assert (await http.get("/favicon-missing.png")).status_code == 404
        assert (await http.get("/../pyproject.toml")).status_code in (400, 404)


async def test_api_paths_are_never_answered_with_the_app(app_url: str) -> None:
    async with httpx.AsyncClient(base_url=app_url) as http:
        assert (await http.get("/health")).json()["status"] == "ok"
        assert (await http.get("/fhir/metadata")).json()["resourceType"] == "CapabilityStatement"
        assert (await http.get("/fhir/.well-known/smart-configuration")).json()["userinfo_endpoint"]
        assert (await http.get("/openapi.json")).json()["info"]["title"]
        for path in ("/.well-known/nothing", "/oauth2/nothing", "/fhir/Nothing/x", "/docs/nothing"):
            response = await http.get(path)
            assert response.text != INDEX, path
        for path in ("/.well-known/nothing", "/oauth2/nothing", "/fhir/Patient/1/2/3/4"):
            response = await http.get(path)
            assert response.status_code == 404, path
            assert response.json()["resourceType"] == "OperationOutcome", path


def test_redirect_uris_follow_the_public_base_url() -> None:
    public = Settings(DATABASE_URL="postgresql://x/y", base_url="https://clinic.example/fhir")
    assert spa.redirect_uris(public) == ["https://clinic.example/callback"]
    local = Settings(DATABASE_URL="postgresql://x/y", HOST="0.0.0.0", PORT=9000)
    uris = spa.redirect_uris(local)
    assert "http://127.0.0.1:9000/callback" in uris and "http://localhost:9000/callback" in uris
    assert "http://localhost:5173/callback" in uris  # the dev server
    extra = Settings(DATABASE_URL="postgresql://x/y", spa_redirect_uris=["https://x.example/callback"])
    assert spa.redirect_uris(extra)[-1] == "https://x.example/callback"


async def test_start_up_registers_the_app_and_refreshes_its_registration(settings: Settings) -> None:
    db = await Database.open(settings)
    try:
        async with db.transaction() as conn:
            stale = settings.model_copy(update={"spa_client_id": f"spa-{uuid.uuid4().hex[:6]}", "port": 1})
            await spa.register_client(conn, stale)
            moved = stale.model_copy(update={"port": 2})
            client = await spa.register_client(conn, moved)
            stored = await identity.get_client(conn, stale.spa_client_id)
        assert stored == client
        assert client.is_public and client.secret_hash is None
        assert "http://127.0.0.1:2/callback" in client.redirect_uris
        assert "http://127.0.0.1:1/callback" not in client.redirect_uris
        assert set(client.grant_types) == {"authorization_code", "refresh_token"}
    finally:
        await db.dispose()


async def test_a_staff_member_signs_in_to_the_app_with_pkce_and_2fa_and_sees_their_role(
    settings: Settings, app_url: str
) -> None:
    username = f"desk-{uuid.uuid4().hex[:6]}"
    db = await Database.open(settings)
    try:
        async with db.transaction() as conn:
            await accounts.create_user(
                conn, username=username, password=PASSWORD, roles=["receptionist"], fhir_user=None
            )
    finally:
        await db.dispose()
    verifier = secrets.token_urlsafe(48)
    challenge = base64.urlsafe_b64encode(hashlib.sha256(verifier.encode()).digest()).rstrip(b"=").decode()
    redirect = f"{app_url}/callback"
    query = {
        "response_type": "code",
        "client_id": "staff-app-test",
        "redirect_uri": redirect,
        "scope": " ".join(spa.SPA_SCOPES[:2]) + " online_access user/*.*",
        "state": "s1",
        "aud": f"{app_url}/fhir",
        "code_challenge": challenge,
        "code_challenge_method": "S256",
    }
    browser = Browser(app_url)
    try:
        result = await sign_in(browser, f"/oauth2/authorize?{urlencode(query)}", username=username)
    finally:
        await browser.aclose()
    assert result.totp_secret, "a staff member without 2FA enrolls first"
    assert result.location.startswith(redirect + "?")
    async with httpx.AsyncClient(base_url=app_url) as http:
        token = await http.post(
            "/oauth2/token",
            data={
                "grant_type": "authorization_code",
                "code": result.params["code"],
                "redirect_uri": redirect,
                "client_id": "staff-app-test",
                "code_verifier": verifier,
            },
        )
        assert token.status_code == 200, token.text
        access = token.json()["access_token"]
        assert token.json()["refresh_token"]
        info = await http.get("/oauth2/userinfo", headers={"Authorization": f"Bearer {access}"})
        assert info.status_code == 200, info.text
        assert info.json()["preferred_username"] == username
        assert info.json()["roles"] == ["receptionist"]
        patients = await http.get("/fhir/Patient?_count=1", headers={"Authorization": f"Bearer {access}"})
        assert patients.status_code == 200
        assert (await http.get("/oauth2/userinfo")).status_code == 401
        bad = await http.get("/oauth2/userinfo", headers={"Authorization": "Bearer nope.nope.nope"})
        assert bad.status_code == 401
