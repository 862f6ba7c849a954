"""SMART-on-FHIR flows against the real server: discovery, standalone and EHR launch (browser steps driven
with httpx through the real sign-in, 2FA enrollment/TOTP, patient picker and consent pages; the token
part by the `fhirclient` library), refresh, backend services, introspection, revocation, logout, keys.
"""

from __future__ import annotations

import asyncio
import base64
import json
import sys
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
from cryptography.hazmat.primitives.asymmetric import ec
from fhirclient import client as fhir_client
from fhirclient.auth import FHIRAuth
from jose import jwk, jws

from pms.auth import pkce, rbac
from pms.auth.keys import KeyRing, SigningKey
from pms.auth.tokens import verify_access_token, verify_id_token
from pms.config import Settings
from pms.core.db import Database
from pms.fhir.validation import validate_resource
from pms.storage import accounts, identity
from pms.storage.indexer import Indexer
from pms.storage.registry_provider import load_registry
from pms.storage.repository import FhirRepository

PASSWORD = "Correct-Horse-Battery-Staple-9"
REDIRECT = "https://app.example/callback"
APP_SCOPES = (
    "openid fhirUser launch launch/patient offline_access online_access patient/*.rs patient/*.read "
    "user/*.rs user/*.cruds"
)


# -- a tiny browser: follow the server's HTML forms ---------------------------------------------------------


@dataclass
class Form:
    action: str
    fields: dict[str, str] = field(default_factory=dict)
    options: dict[str, list[str]] = field(default_factory=dict)  # radio buttons


class _FormParser(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.forms: list[Form] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        attr = {k: v or "" for k, v in attrs}
        if tag == "form":
            self.forms.append(Form(attr.get("action", "")))
        elif tag == "input" and self.forms and "name" in attr:
            if attr.get("type") == "radio":
                self.forms[-1].options.setdefault(attr["name"], []).append(attr.get("value", ""))
            else:
                self.forms[-1].fields[attr["name"]] = attr.get("value", "")


def forms_of(html: str) -> dict[str, Form]:
    parser = _FormParser()
    parser.feed(html)
    return {form.fields.get("step", ""): form for form in parser.forms}


class Browser:
    def __init__(self, server_url: str) -> None:
        self.http = httpx.AsyncClient(base_url=server_url, follow_redirects=False, timeout=60)

    async def get(self, url: str) -> httpx.Response:
        return await self.http.get(url)

    async def submit(self, page: httpx.Response, step: str, **values: str) -> httpx.Response:
        form = forms_of(page.text)[step]
        return await self.http.post(form.action, data={**form.fields, **values})

    @classmethod
    def wrap(cls, http: httpx.AsyncClient) -> Browser:
        browser = cls.__new__(cls)
        browser.http = http
        return browser

    async def aclose(self) -> None:
        await self.http.aclose()


@dataclass
class SignIn:
    location: str
    totp_secret: str | None = None
    pages: list[str] = field(default_factory=list)

    @property
    def params(self) -> dict[str, str]:
        return {k: v[0] for k, v in parse_qs(urlsplit(self.location).query).items()}


async def sign_in(
    browser: Browser,
    authorize_url: str,
    *,
    username: str,
    password: str = PASSWORD,
    totp_secret: str | None = None,
    totp_offset: int = 0,
    patient: str | None = None,
    patient_name: str = "",
    decision: str = "approve",
) -> SignIn:
    """Walk the HTML steps until the server redirects back to the app. At the patient picker, `patient`
    is chosen, after searching for `patient_name` when the first list does not show it."""
    page = await browser.get(authorize_url)
    result = SignIn("", totp_secret)
    if page.status_code == 200 and "login" in forms_of(page.text):  # else: already signed in
        page = await browser.submit(page, "login", username=username, password=password)
    for _ in range(8):
        if page.status_code in (302, 303):
            result.location = page.headers["location"]
            return result
        assert page.status_code == 200, page.text
        forms = forms_of(page.text)
        result.pages.append(",".join(sorted(forms)))
        if "enroll" in forms:
            result.totp_secret = forms["enroll"].fields["enroll_secret"]
            code = pyotp.TOTP(result.totp_secret).now()
            page = await browser.submit(page, "enroll", code=code)
        elif "continue" in forms:  # recovery codes shown once
            page = await browser.submit(page, "continue")
        elif "totp" in forms:
            assert result.totp_secret, "a TOTP step needs the secret enrolled earlier"
            code = pyotp.TOTP(result.totp_secret).at(datetime.now(UTC) + timedelta(seconds=totp_offset))
            page = await browser.submit(page, "totp", code=code)
        elif "pick" in forms or "search" in forms:
            assert patient is not None, "the patient picker was shown"
            if patient not in forms.get("pick", Form("")).options.get("patient", []):
                page = await browser.submit(page, "search", q=patient_name)
                assert patient in forms_of(page.text)["pick"].options["patient"]
            page = await browser.submit(page, "pick", patient=patient)
        elif "consent" in forms:
            page = await browser.submit(page, "consent", decision=decision)
        else:
            raise AssertionError(f"unexpected page: {page.text[:500]}")
    raise AssertionError("too many steps")


# -- the world: roles, users, patients, clients -------------------------------------------------------------


@dataclass
class World:
    server_url: str
    fhir: str
    tag: str
    patients: list[str]
    encounter: str
    doctor: accounts.UserAccount
    portal: accounts.UserAccount
    public_app: identity.Client
    confidential_app: identity.Client
    app_secret: str
    backend: identity.Client
    backend_key: dict[str, Any]
    basic_backend: identity.Client
    basic_secret: str
    db: Database
    settings: Settings
    smart: dict[str, Any] = field(default_factory=dict)


def _private_pem(key: ec.EllipticCurvePrivateKey) -> str:
    return key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    ).decode()


def make_backend_key() -> dict[str, Any]:
    pem = _private_pem(ec.generate_private_key(ec.SECP384R1()))
    public = jwk.construct(pem, "ES384").public_key().to_dict()
    kid = uuid.uuid4().hex
    return {"pem": pem, "kid": kid, "jwk": {**public, "kid": kid, "alg": "ES384", "use": "sig"}}


def client_assertion(key: dict[str, Any], client_id: str, token_url: str, **overrides: Any) -> str:
    now = int(time.time())
    claims = {"iss": client_id, "sub": client_id, "aud": token_url, "exp": now + 240, "jti": uuid.uuid4().hex}
    claims.update(overrides)
    token: str = jws.sign(claims, key["pem"], headers={"kid": key["kid"], "typ": "JWT"}, algorithm="ES384")
    return token


async def _seed(database_url: Settings, tag: str) -> tuple[Database, dict[str, Any]]:
    db = await Database.open(database_url)
    now = datetime.now(UTC)
    out: dict[str, Any] = {}
    async with db.transaction() as conn:
        await accounts.seed_roles(conn, roles=rbac.role_rows())
        repo = FhirRepository(conn, validator=validate_resource, indexer=Indexer(await load_registry(conn)))
        patients = []
        for given in ("Alice", "Bob", "Carol"):
            stored = await repo.create(
                {
                    "resourceType": "Patient",
                    "name": [{"family": f"Zz{tag}", "given": [given]}],
                    "birthDate": "1980-01-02",
                }
            )
            patients.append(stored.id)
        encounter = await repo.create(
            {
                "resourceType": "Encounter",
                "status": "in-progress",
                "class": {"system": "http://terminology.hl7.org/CodeSystem/v3-ActCode", "code": "AMB"},
                "subject": {"reference": f"Patient/{patients[1]}"},
            }
        )
        await repo.flush()
        out["patients"], out["encounter"] = patients, encounter.id
        out["doctor"] = await accounts.create_user(
            conn,
            username=f"dr-{tag}",
            password=PASSWORD,
            roles=["physician"],
            fhir_user=f"Practitioner/dr-{tag}",
        )
        out["portal"] = await accounts.create_user(
            conn,
            username=f"pt-{tag}",
            password=PASSWORD,
            roles=["patient"],
            fhir_user=f"Patient/{patients[0]}",
        )
        out["public_app"] = await identity.create_client(
            conn,
            name=f"Patient app {tag}",
            kind="public",
            grant_types=["authorization_code", "refresh_token"],
            scopes=APP_SCOPES.split(),
            redirect_uris=[REDIRECT],
            now=now,
        )
        out["app_secret"] = identity.new_secret()
        out["confidential_app"] = await identity.create_client(
            conn,
            name=f"Clinic app {tag}",
            kind="confidential",
            grant_types=["authorization_code", "refresh_token"],
            scopes=APP_SCOPES.split(),
            redirect_uris=[REDIRECT, "https://clinic.example/cb?tenant=1"],
            secret=out["app_secret"],
            now=now,
        )
        out["backend_key"] = make_backend_key()
        out["backend"] = await identity.create_client(
            conn,
            name=f"Lab {tag}",
            kind="backend",
            grant_types=["client_credentials"],
            scopes=["system/Observation.cruds", "system/DiagnosticReport.cruds", "system/Patient.rs"],
            jwks={"keys": [out["backend_key"]["jwk"]]},
            now=now,
        )
        out["basic_secret"] = identity.new_secret()
        out["basic_backend"] = await identity.create_client(
            conn,
            name=f"Pharmacy {tag}",
            kind="confidential",
            grant_types=["client_credentials"],
            scopes=["system/MedicationRequest.rs"],
            secret=out["basic_secret"],
            now=now,
        )
    return db, out


@pytest.fixture(scope="module")
async def world(settings: Settings, server_url: str) -> AsyncIterator[World]:
    tag = uuid.uuid4().hex[:8]
    db, seeded = await _seed(settings, tag)
    async with httpx.AsyncClient() as http:
        smart = (await http.get(f"{server_url}/fhir/.well-known/smart-configuration")).json()
    try:
        yield World(
            server_url=server_url,
            fhir=f"{server_url}/fhir",
            tag=tag,
            db=db,
            settings=settings,
            smart=smart,
            **seeded,
        )
    finally:
        await db.dispose()


@pytest.fixture
async def browser(server_url: str) -> AsyncIterator[Browser]:
    b = Browser(server_url)
    yield b
    await b.aclose()


async def jwks_ring(world: World) -> KeyRing:
    async with httpx.AsyncClient() as http:
        keys = (await http.get(world.smart["jwks_uri"])).json()["keys"]
    now = datetime.now(UTC)
    return KeyRing.of([SigningKey(k["kid"], "", k, now) for k in keys], now=now)


def authorize_url(world: World, client: identity.Client, **params: str) -> str:
    verifier = params.pop("verifier", None)
    query = {
        "response_type": "code",
        "client_id": client.client_id,
        "redirect_uri": REDIRECT,
        "scope": "launch/patient openid fhirUser patient/*.rs offline_access",
        "state": uuid.uuid4().hex,
        "aud": world.fhir,
    }
    if verifier is not None:
        query |= {"code_challenge": pkce.challenge_for(verifier), "code_challenge_method": "S256"}
    query.update(params)
    return f"/oauth2/authorize?{urlencode(query)}"


async def token_request(
    world: World, data: dict[str, str], *, auth: tuple[str, str] | None = None
) -> httpx.Response:
    async with httpx.AsyncClient(timeout=60) as http:
        if auth is None:
            return await http.post(world.smart["token_endpoint"], data=data)
        return await http.post(world.smart["token_endpoint"], data=data, auth=auth)


def fhirclient_for(world: World, client: identity.Client, scope: str, **settings: Any) -> Any:
    """A `fhirclient` SMART client. Endpoints come from the CapabilityStatement's oauth-uris extension
    when the server advertises it there, else from .well-known/smart-configuration."""
    smart = fhir_client.FHIRClient(
        settings={
            "app_id": client.client_id,
            "api_base": world.fhir,
            "redirect_uri": REDIRECT,
            "scope": scope,
        }
        | settings
    )
    smart.wants_patient = False  # the scope below says exactly what to ask
    state = {
        "app_id": client.client_id,
        "app_secret": settings.get("app_secret"),
        "aud": world.fhir,
        "redirect_uri": REDIRECT,
        "authorize_uri": world.smart["authorization_endpoint"],
        "token_uri": world.smart["token_endpoint"],
    }
    smart.server.auth = FHIRAuth.create("oauth2", state=state)
    return smart


# -- discovery ----------------------------------------------------------------------------------------------


class TestDiscovery:
    async def test_smart_configuration(self, world: World) -> None:
        smart = world.smart
        root = world.server_url
        assert smart["issuer"] == world.fhir
        assert smart["authorization_endpoint"] == f"{root}/oauth2/authorize"
        assert smart["token_endpoint"] == f"{root}/oauth2/token"
        assert smart["jwks_uri"] == f"{root}/oauth2/jwks"
        assert smart["introspection_endpoint"] == f"{root}/oauth2/introspect"
        assert smart["revocation_endpoint"] == f"{root}/oauth2/revoke"
        assert smart["code_challenge_methods_supported"] == ["S256"]
        assert smart["response_types_supported"] == ["code"]
        assert set(smart["token_endpoint_auth_methods_supported"]) == {
            "client_secret_basic",
            "private_key_jwt",
        }
        assert {"RS384", "ES384"} <= set(smart["token_endpoint_auth_signing_alg_values_supported"])
        assert set(smart["grant_types_supported"]) == {
            "authorization_code",
            "refresh_token",
            "client_credentials",
        }
        for capability in (
            "launch-ehr",
            "launch-standalone",
            "client-public",
            "client-confidential-symmetric",
            "client-confidential-asymmetric",
            "context-ehr-patient",
            "context-standalone-patient",
            "permission-offline",
            "permission-patient",
            "permission-user",
            "permission-v1",
            "permission-v2",
            "sso-openid-connect",
            "authorize-post",
        ):
            assert capability in smart["capabilities"]

    async def test_openid_configuration(self, world: World) -> None:
        async with httpx.AsyncClient() as http:
            for url in (
                f"{world.server_url}/.well-known/openid-configuration",
                f"{world.fhir}/.well-known/openid-configuration",
            ):
                config = (await http.get(url)).json()
                assert config["issuer"] == world.fhir
                assert config["id_token_signing_alg_values_supported"] == ["RS256"]
                assert config["jwks_uri"] == world.smart["jwks_uri"]
                assert config["ui_locales_supported"] == ["en", "zh-CN"]
        assert world.smart["ui_locales_supported"] == ["en", "zh-CN"]

    async def test_jwks(self, world: World) -> None:
        async with httpx.AsyncClient() as http:
            keys = (await http.get(world.smart["jwks_uri"])).json()["keys"]
        assert keys and all(k["kty"] == "RSA" and k["alg"] == "RS256" and "d" not in k for k in keys)


# -- standalone launch --------------------------------------------------------------------------------------


class TestStandaloneLaunch:
    async def test_practitioner_with_2fa_enrollment_and_patient_picker_via_fhirclient(
        self, world: World, browser: Browser
    ) -> None:
        scope = "launch/patient openid fhirUser patient/*.rs offline_access"
        smart = fhirclient_for(world, world.public_app, scope)
        url = await asyncio.to_thread(lambda: smart.authorize_url)
        assert (
            "code_challenge_method=S256" in url
            and f"aud={world.fhir}".replace(":", "%3A").replace("/", "%2F") in url
        )
        signed = await sign_in(
            browser,
            url,
            username=world.doctor.username,
            patient=world.patients[1],
            patient_name=f"Zz{world.tag}",
        )
        assert signed.totp_secret, "a physician without TOTP is enrolled on first sign-in"
        assert any("enroll" in p for p in signed.pages) and any("pick" in p for p in signed.pages)
        assert signed.location.startswith(REDIRECT + "?")
        assert signed.params["iss"] == world.fhir
        await asyncio.to_thread(smart.handle_callback, signed.location)
        assert smart.patient_id == world.patients[1]
        auth = smart.server.auth
        assert auth.access_token and auth.refresh_token
        claims = verify_access_token(
            auth.access_token, await jwks_ring(world), audience=world.fhir, issuer=world.fhir
        )
        assert claims.patient == world.patients[1] and claims.client_id == world.public_app.client_id
        assert claims.subject == str(world.doctor.user_id) and claims.fhir_user == world.doctor.fhir_user
        assert claims.scopes == scope.split()
        # The refresh token works through fhirclient too (rotated: a new one replaces it).
        first_refresh = auth.refresh_token
        assert await asyncio.to_thread(smart.reauthorize)
        assert smart.server.auth.refresh_token != first_refresh
        assert smart.patient_id == world.patients[1]
        # Signed in already: a second authorization needs only the 2FA-backed session + consent.
        again = await sign_in(
            browser,
            authorize_url(world, world.public_app, verifier=pkce.make_verifier()),
            username=world.doctor.username,
            totp_secret=signed.totp_secret,
            patient=world.patients[2],
            patient_name=f"Zz{world.tag}",
        )
        assert "code" in again.params

    async def test_portal_patient_gets_their_own_patient_and_an_id_token(
        self, world: World, browser: Browser
    ) -> None:
        verifier = pkce.make_verifier()
        nonce = uuid.uuid4().hex
        url = authorize_url(
            world,
            world.public_app,
            verifier=verifier,
            scope="launch/patient openid fhirUser patient/*.read online_access",
            nonce=nonce,
        )
        signed = await sign_in(browser, url, username=world.portal.username)
        assert not any("pick" in p or "totp" in p or "enroll" in p for p in signed.pages)
        response = await token_request(
            world,
            {
                "grant_type": "authorization_code",
                "code": signed.params["code"],
                "redirect_uri": REDIRECT,
                "code_verifier": verifier,
                "client_id": world.public_app.client_id,
            },
        )
        assert response.status_code == 200, response.text
        assert response.headers["cache-control"] == "no-store"
        body = response.json()
        assert body["token_type"] == "Bearer" and body["expires_in"] == world.settings.access_token_lifetime
        assert body["patient"] == world.patients[0] and body["need_patient_banner"] is True
        assert body["scope"] == "launch/patient openid fhirUser patient/*.read online_access"
        assert "refresh_token" in body
        ring = await jwks_ring(world)
        id_claims = verify_id_token(
            body["id_token"], ring, client_id=world.public_app.client_id, issuer=world.fhir
        )
        assert id_claims["nonce"] == nonce
        assert id_claims["fhirUser"] == f"{world.fhir}/Patient/{world.patients[0]}"
        assert id_claims["sub"] == str(world.portal.user_id)

    async def test_confidential_client_with_basic_auth(self, world: World, browser: Browser) -> None:
        url = authorize_url(world, world.confidential_app, scope="openid fhirUser user/*.rs")
        signed = await sign_in(browser, url, username=world.portal.username)
        data = {"grant_type": "authorization_code", "code": signed.params["code"], "redirect_uri": REDIRECT}
        response = await token_request(world, data, auth=(world.confidential_app.client_id, world.app_secret))
        assert response.status_code == 200, response.text
        assert "refresh_token" not in response.json()  # neither offline_access nor online_access asked

    async def test_deny_redirects_with_access_denied(self, world: World, browser: Browser) -> None:
        url = authorize_url(world, world.public_app, verifier=pkce.make_verifier(), scope="patient/*.rs")
        signed = await sign_in(browser, url, username=world.portal.username, decision="deny")
        assert signed.params["error"] == "access_denied" and "code" not in signed.params
        assert signed.params["state"] == parse_qs(urlsplit(url).query)["state"][0]

    async def test_authorize_by_post(self, world: World, browser: Browser) -> None:
        url = authorize_url(world, world.public_app, verifier=pkce.make_verifier(), scope="patient/*.rs")
        params = {k: v[0] for k, v in parse_qs(urlsplit(url).query).items()}
        page = await browser.http.post("/oauth2/authorize", data=params)
        assert page.status_code == 200 and "login" in forms_of(page.text)

    async def test_pages_are_accessible_and_not_cached(self, world: World, browser: Browser) -> None:
        page = await browser.get(authorize_url(world, world.public_app, verifier=pkce.make_verifier()))
        assert page.headers["cache-control"] == "no-store"
        assert "frame-ancestors 'none'" in page.headers["content-security-policy"]
        assert '<html lang="en">' in page.text
        assert '<label for="username">' in page.text and '<label for="password">' in page.text
        assert 'name="csrf_token"' in page.text
        assert "<script" not in page.text and "http://" not in page.text.replace(world.server_url, "")
        cookie = page.headers["set-cookie"]
        assert "HttpOnly" in cookie and "SameSite=lax" in cookie.replace("Lax", "lax")


# -- the pages' language (OpenID Connect Core §3.1.2.1 ui_locales, else Accept-Language, else English) ----


def page_lang(page: httpx.Response) -> str:
    start = page.text.index('<html lang="') + len('<html lang="')
    return page.text[start : page.text.index('"', start)]


class TestPageLanguage:
    """Every step of the sign-in in Chinese when the app asks for it with `ui_locales` (carried through the
    steps in the hidden fields) or when only the browser's Accept-Language says so."""

    async def _walk_in_chinese(self, world: World, browser: Browser, **params: str) -> None:
        staff = await _new_staff(world, "zh")
        scope = "launch/patient openid fhirUser patient/*.rs offline_access"
        url = authorize_url(world, world.public_app, verifier=pkce.make_verifier(), scope=scope, **params)

        login = await browser.get(url)
        assert login.status_code == 200 and page_lang(login) == "zh-CN"
        assert login.headers["content-language"] == "zh-CN"
        assert "<title>登录 - PMS</title>" in login.text
        assert '<label for="username">用户名</label>' in login.text
        assert '<label for="password">密码</label>' in login.text
        assert '<button type="submit">登录</button>' in login.text
        assert f"<strong>Patient app {world.tag}</strong> 请求连接到您的健康档案" in login.text
        assert forms_of(login.text)["login"].fields.get("ui_locales") == params.get("ui_locales")

        wrong = await browser.submit(login, "login", username=staff.username, password="not-it")
        assert wrong.status_code == 400 and page_lang(wrong) == "zh-CN"
        assert "用户名或密码错误。" in wrong.text

        enroll = await browser.submit(wrong, "login", username=staff.username, password=PASSWORD)
        assert (
            enroll.status_code == 200 and page_lang(enroll) == "zh-CN" and "enroll" in forms_of(enroll.text)
        )
        assert "设置两步验证" in enroll.text and "启用两步验证" in enroll.text
        secret = forms_of(enroll.text)["enroll"].fields["enroll_secret"]
        bad = await browser.submit(enroll, "enroll", code="000000")
        assert bad.status_code == 400 and "验证码无效" in bad.text and page_lang(bad) == "zh-CN"
        codes = await browser.submit(bad, "enroll", code=pyotp.TOTP(secret).now())
        assert page_lang(codes) == "zh-CN" and "保存您的恢复码" in codes.text
        assert 'aria-label="恢复码"' in codes.text and "我已保存恢复码，继续" in codes.text

        picker = await browser.submit(codes, "continue")
        assert page_lang(picker) == "zh-CN" and "search" in forms_of(picker.text)
        assert "<title>选择患者 - PMS</title>" in picker.text
        assert '<label for="q">按姓名查找患者</label>' in picker.text and ">搜索</button>" in picker.text
        found = await browser.submit(picker, "search", q=f"Zz{world.tag}")
        assert page_lang(found) == "zh-CN" and "<legend>选择患者</legend>" in found.text
        assert f"Zz{world.tag}, Bob（出生日期 1980-01-02） - 编号 {world.patients[1]}" in found.text
        nobody = await browser.submit(picker, "search", q=f"Nobody{world.tag}")
        assert "没有与该姓名匹配的患者。" in nobody.text

        consent = await browser.submit(found, "pick", patient=world.patients[1])
        assert page_lang(consent) == "zh-CN" and "consent" in forms_of(consent.text)
        assert "<title>允许访问？ - PMS</title>" in consent.text
        assert "读取和搜索所选患者的所有类型的记录" in consent.text
        assert "处理您选择的一位患者的信息" in consent.text and "确认您的身份" in consent.text
        assert f"患者：<strong>Zz{world.tag}, Bob" in consent.text
        assert f"当前登录用户：{staff.username}。" in consent.text
        assert ">允许</button>" in consent.text and ">拒绝</button>" in consent.text
        done = await browser.submit(consent, "consent", decision="approve")
        assert done.status_code == 303 and "code=" in done.headers["location"]

        # A new browser session: the password, then the TOTP step, still in Chinese.
        async with httpx.AsyncClient(
            base_url=world.server_url, headers=browser.http.headers, timeout=60
        ) as fresh:
            again = Browser.wrap(fresh)
            login = await again.get(url)
            totp_page = await again.submit(login, "login", username=staff.username, password=PASSWORD)
            assert page_lang(totp_page) == "zh-CN" and "totp" in forms_of(totp_page.text)
            assert "<title>两步验证 - PMS</title>" in totp_page.text
            assert '<label for="code">身份验证器应用中的验证码</label>' in totp_page.text
            assert '<button type="submit">验证</button>' in totp_page.text
            wrong_code = await again.submit(totp_page, "totp", code="000000")
            assert (
                wrong_code.status_code == 400
                and "验证码无效。请输入应用中当前显示的验证码。" in wrong_code.text
            )
            assert page_lang(wrong_code) == "zh-CN"

    async def test_ui_locales_zh_cn_through_every_step(self, world: World, browser: Browser) -> None:
        await self._walk_in_chinese(world, browser, ui_locales="zh-CN")

    async def test_accept_language_when_the_app_does_not_say(self, world: World, browser: Browser) -> None:
        browser.http.headers["Accept-Language"] = "zh-CN,zh;q=0.9"
        await self._walk_in_chinese(world, browser)

    async def test_ui_locales_in_order_of_preference(self, world: World, browser: Browser) -> None:
        url = authorize_url(world, world.public_app, verifier=pkce.make_verifier(), ui_locales="tlh fr-CA zh")
        page = await browser.get(url)
        assert page_lang(page) == "zh-CN" and "用户名" in page.text

    async def test_ui_locales_win_over_accept_language(self, world: World, browser: Browser) -> None:
        browser.http.headers["Accept-Language"] = "zh-CN,zh;q=0.9"
        url = authorize_url(world, world.public_app, verifier=pkce.make_verifier(), ui_locales="en-GB")
        page = await browser.get(url)
        assert page_lang(page) == "en" and '<label for="username">Username</label>' in page.text

    @pytest.mark.parametrize(
        ("ui_locales", "accept_language"),
        [("fr-FR tlh", None), (None, "fr-FR,de;q=0.9"), ("xx", "zh-TW"), (None, None)],
    )
    async def test_unknown_locale_falls_back_to_english(
        self, world: World, browser: Browser, ui_locales: str | None, accept_language: str | None
    ) -> None:
        if accept_language is not None:
            browser.http.headers["Accept-Language"] = accept_language
        extra = {"ui_locales": ui_locales} if ui_locales is not None else {}
        url = authorize_url(world, world.public_app, verifier=pkce.make_verifier(), **extra)
        page = await browser.get(url)
        assert page.status_code == 200 and page_lang(page) == "en"
        assert page.headers["content-language"] == "en"
        assert '<label for="username">Username</label>' in page.text and ">Sign in</button>" in page.text
        wrong = await browser.submit(page, "login", username=world.portal.username, password="not-it")
        assert page_lang(wrong) == "en" and "Wrong username or password." in wrong.text

    async def test_refusals_and_messages_in_chinese(self, world: World, browser: Browser) -> None:
        unknown = await browser.get(
            f"/oauth2/authorize?{urlencode({'client_id': 'nobody', 'ui_locales': 'zh-CN'})}"
        )
        assert unknown.status_code == 400 and page_lang(unknown) == "zh-CN"
        assert "应用程序未知或已停用（client_id）。" in unknown.text and "无法完成此请求" in unknown.text
        query = urlencode({"client_id": world.public_app.client_id, "redirect_uri": "https://evil.example/"})
        browser.http.headers["Accept-Language"] = "zh"
        unregistered = await browser.get(f"/oauth2/authorize?{query}")
        assert "此应用程序未登记该 redirect_uri。" in unregistered.text
        repeated = await browser.get("/oauth2/authorize?state=a&state=b")
        assert (
            page_lang(repeated) == "zh-CN"
            and "请求格式不正确：parameter state is repeated。" in repeated.text
        )

        url = authorize_url(world, world.public_app, verifier=pkce.make_verifier(), ui_locales="zh-CN")
        login = await browser.get(url)
        fields = forms_of(login.text)["login"].fields | {"csrf_token": "forged"}
        expired = await browser.http.post("/oauth2/authorize", data=fields)
        assert page_lang(expired) == "zh-CN" and "此表单已过期。请重试。" in expired.text
        empty = await browser.submit(login, "login", username="", password="")
        assert "请输入用户名和密码。" in empty.text
        fields = forms_of(login.text)["login"].fields | {"step": "consent", "decision": "approve"}
        ended = await browser.http.post("/oauth2/authorize", data=fields)
        assert page_lang(ended) == "zh-CN" and "您的会话已结束。请重新登录。" in ended.text

    async def test_signed_out_page(self, world: World, browser: Browser) -> None:
        page = await browser.get("/oauth2/logout?ui_locales=zh-CN")
        assert page.status_code == 200 and page_lang(page) == "zh-CN" and "您已退出登录" in page.text
        browser.http.headers["Accept-Language"] = "zh-CN,zh;q=0.9"
        assert "已退出登录" in (await browser.get("/oauth2/logout")).text
        assert page_lang(await browser.get("/oauth2/logout?ui_locales=en")) == "en"


# -- EHR launch ---------------------------------------------------------------------------------------------


class TestEhrLaunch:
    async def test_launch_context_via_fhirclient(self, world: World, browser: Browser) -> None:
        async with world.db.transaction() as conn:
            launch = await identity.create_launch(
                conn,
                context={"patient": world.patients[1], "encounter": world.encounter},
                created_by=None,
                expires_at=datetime.now(UTC) + timedelta(minutes=5),
            )
        smart = fhirclient_for(
            world,
            world.confidential_app,
            "launch openid fhirUser user/*.rs",
            launch_token=launch,
            app_secret=world.app_secret,
        )
        url = await asyncio.to_thread(lambda: smart.authorize_url)
        assert f"launch={launch}" in url
        signed = await sign_in(browser, url, username=world.portal.username)
        await asyncio.to_thread(smart.handle_callback, signed.location)
        # A portal user always acts for their own patient; the launch's encounter stays in context.
        assert smart.launch_context["encounter"] == world.encounter
        assert smart.launch_context["need_patient_banner"] is False

    async def test_practitioner_ehr_launch_skips_the_picker(self, world: World, browser: Browser) -> None:
        """The EHR (a user's app session) creates the launch at /oauth2/launch; the SMART app launched with
        it gets the patient and encounter without a picker."""
        doctor = await _new_staff(world, "ehr")
        ehr = await _exchange(world, browser, username=doctor.username, scope="openid fhirUser user/*.rs")
        created = await _create_launch(
            world, ehr["access_token"], {"patient": world.patients[1], "encounter": world.encounter}
        )
        assert created.status_code == 200, created.text
        launch = created.json()["launch"]
        assert created.json()["expires_in"] == world.settings.launch_lifetime
        verifier = pkce.make_verifier()
        url = authorize_url(
            world,
            world.public_app,
            verifier=verifier,
            launch=launch,
            scope="launch launch/patient patient/*.rs",
        )
        signed = await sign_in(browser, url, username=doctor.username)  # same browser session: no sign-in
        assert not any("pick" in p for p in signed.pages)
        body = await _redeem(world, signed.params["code"], verifier)
        assert body["patient"] == world.patients[1] and body["encounter"] == world.encounter
        assert body["need_patient_banner"] is False

    async def test_launch_endpoint_refusals(self, world: World, browser: Browser) -> None:
        missing = await _create_launch(world, None, {"patient": world.patients[0]})
        assert missing.status_code == 401 and missing.headers["www-authenticate"].startswith("Bearer")
        bogus = await _create_launch(world, "a.b.c", {"patient": world.patients[0]})
        assert bogus.status_code == 401 and 'error="invalid_token"' in bogus.headers["www-authenticate"]
        backend = await token_request(
            world,
            {"grant_type": "client_credentials", "scope": "system/MedicationRequest.rs"},
            auth=(world.basic_backend.client_id, world.basic_secret),
        )
        as_backend = await _create_launch(
            world, backend.json()["access_token"], {"patient": world.patients[0]}
        )
        assert as_backend.status_code == 403
        portal = await _exchange(world, browser, username=world.portal.username, scope="openid user/*.rs")
        own = await _create_launch(world, portal["access_token"], {"patient": world.patients[0]})
        assert own.status_code == 200
        other = await _create_launch(world, portal["access_token"], {"patient": world.patients[1]})
        assert other.status_code == 403
        doctor = await _new_staff(world, "ehr2")
        async with httpx.AsyncClient(base_url=world.server_url) as fresh:
            staff = await _exchange(world, Browser.wrap(fresh), username=doctor.username, scope="user/*.rs")
        for context in (
            {"patient": "does-not-exist"},
            {"patient": world.patients[0], "encounter": world.encounter},  # the encounter is patients[1]'s
            {"patient": world.patients[0], "extra": "x"},
        ):
            refused = await _create_launch(world, staff["access_token"], context)
            assert refused.status_code == 400, (context, refused.text)
        # A launch belongs to the user who created it: someone else cannot redeem it.
        theirs = (await _create_launch(world, staff["access_token"], {"patient": world.patients[0]})).json()
        url = authorize_url(
            world,
            world.public_app,
            verifier=pkce.make_verifier(),
            launch=theirs["launch"],
            scope="launch patient/*.rs",
        )
        signed = await sign_in(browser, url, username=world.portal.username)
        assert signed.params["error"] == "access_denied"

    async def test_unknown_launch_is_refused(self, world: World, browser: Browser) -> None:
        url = authorize_url(
            world, world.public_app, verifier=pkce.make_verifier(), launch="nope", scope="launch patient/*.rs"
        )
        response = await browser.get(url)
        assert response.status_code == 302
        assert "error=invalid_request" in response.headers["location"]


async def _new_staff(
    world: World, suffix: str, roles: tuple[str, ...] = ("physician",)
) -> accounts.UserAccount:
    async with world.db.transaction() as conn:
        return await accounts.create_user(
            conn,
            username=f"{suffix}-{uuid.uuid4().hex[:8]}",
            password=PASSWORD,
            roles=list(roles),
            fhir_user=f"Practitioner/{suffix}",
        )


async def _redeem(world: World, code: str, verifier: str) -> dict[str, Any]:
    response = await token_request(
        world,
        {
            "grant_type": "authorization_code",
            "code": code,
            "redirect_uri": REDIRECT,
            "code_verifier": verifier,
            "client_id": world.public_app.client_id,
        },
    )
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


async def _exchange(world: World, browser: Browser, *, username: str, scope: str) -> dict[str, Any]:
    """Sign `username` in (enrolling 2FA if needed) and redeem the code for tokens."""
    verifier = pkce.make_verifier()
    signed = await sign_in(
        browser, authorize_url(world, world.public_app, verifier=verifier, scope=scope), username=username
    )
    return await _redeem(world, signed.params["code"], verifier)


async def _create_launch(world: World, token: str | None, context: dict[str, Any]) -> httpx.Response:
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    async with httpx.AsyncClient(base_url=world.server_url) as http:
        return await http.post("/oauth2/launch", json=context, headers=headers)


# -- backend services ---------------------------------------------------------------------------------------


class TestBackendServices:
    async def test_signed_assertion_obtains_a_system_token(self, world: World) -> None:
        assertion = client_assertion(
            world.backend_key, world.backend.client_id, world.smart["token_endpoint"]
        )
        response = await token_request(
            world,
            {
                "grant_type": "client_credentials",
                "scope": "system/Observation.cruds system/Patient.rs",
                "client_assertion_type": "urn:ietf:params:oauth:client-assertion-type:jwt-bearer",
                "client_assertion": assertion,
            },
        )
        assert response.status_code == 200, response.text
        body = response.json()
        assert (
            body["expires_in"] == world.settings.backend_token_lifetime
            and "refresh_token" not in body
            and "id_token" not in body
        )
        claims = verify_access_token(
            body["access_token"], await jwks_ring(world), audience=world.fhir, issuer=world.fhir
        )
        assert claims.principal == "client" and claims.subject == world.backend.client_id
        assert claims.scopes == ["system/Observation.cruds", "system/Patient.rs"]

    async def test_default_scope_is_the_registration(self, world: World) -> None:
        assertion = client_assertion(
            world.backend_key, world.backend.client_id, world.smart["token_endpoint"]
        )
        response = await token_request(
            world,
            {
                "grant_type": "client_credentials",
                "client_assertion_type": "urn:ietf:params:oauth:client-assertion-type:jwt-bearer",
                "client_assertion": assertion,
            },
        )
        assert response.json()["scope"].split() == list(world.backend.allowed_scopes)

    async def test_client_secret_basic(self, world: World) -> None:
        response = await token_request(
            world,
            {"grant_type": "client_credentials", "scope": "system/MedicationRequest.rs"},
            auth=(world.basic_backend.client_id, world.basic_secret),
        )
        assert response.status_code == 200, response.text

    async def test_scope_beyond_registration_refused(self, world: World) -> None:
        assertion = client_assertion(
            world.backend_key, world.backend.client_id, world.smart["token_endpoint"]
        )
        response = await token_request(
            world,
            {
                "grant_type": "client_credentials",
                "scope": "system/Condition.rs",
                "client_assertion_type": "urn:ietf:params:oauth:client-assertion-type:jwt-bearer",
                "client_assertion": assertion,
            },
        )
        assert response.status_code == 400 and response.json()["error"] == "invalid_scope"


# -- introspection, revocation, logout ----------------------------------------------------------------------


class TestTokenLifecycle:
    async def _backend_token(self, world: World) -> str:
        response = await token_request(
            world,
            {"grant_type": "client_credentials", "scope": "system/MedicationRequest.rs"},
            auth=(world.basic_backend.client_id, world.basic_secret),
        )
        token: str = response.json()["access_token"]
        return token

    async def test_introspection(self, world: World) -> None:
        token = await self._backend_token(world)
        auth = (world.basic_backend.client_id, world.basic_secret)
        async with httpx.AsyncClient() as http:
            url = world.smart["introspection_endpoint"]
            active = (await http.post(url, data={"token": token}, auth=auth)).json()
            assert active["active"] is True and active["scope"] == "system/MedicationRequest.rs"
            assert active["client_id"] == world.basic_backend.client_id and active["exp"] > time.time()
            inactive = (await http.post(url, data={"token": token[:-4] + "AAAA"}, auth=auth)).json()
            assert inactive == {"active": False}
            unauthenticated = await http.post(
                url, data={"token": token, "client_id": world.public_app.client_id}
            )
            assert unauthenticated.status_code == 401

    async def test_revoking_an_access_token(self, world: World) -> None:
        token = await self._backend_token(world)
        auth = (world.basic_backend.client_id, world.basic_secret)
        async with httpx.AsyncClient() as http:
            revoked = await http.post(world.smart["revocation_endpoint"], data={"token": token}, auth=auth)
            assert revoked.status_code == 200
            state = (
                await http.post(world.smart["introspection_endpoint"], data={"token": token}, auth=auth)
            ).json()
        assert state == {"active": False}

    async def test_revoking_a_refresh_token_revokes_its_family(self, world: World, browser: Browser) -> None:
        tokens = await _portal_tokens(world, browser)
        rotated = await _refresh(world, tokens["refresh_token"])
        assert rotated.status_code == 200
        async with httpx.AsyncClient() as http:
            response = await http.post(
                world.smart["revocation_endpoint"],
                data={"token": rotated.json()["refresh_token"], "client_id": world.public_app.client_id},
            )
        assert response.status_code == 200
        again = await _refresh(world, rotated.json()["refresh_token"])
        assert again.status_code == 400 and again.json()["error"] == "invalid_grant"

    async def test_logout_ends_the_session_and_revokes_its_refresh_tokens(
        self, world: World, browser: Browser
    ) -> None:
        tokens = await _portal_tokens(world, browser, scope="patient/*.rs online_access")
        response = await browser.get("/oauth2/logout")
        assert response.status_code == 200 and "signed out" in response.text.lower()
        refreshed = await _refresh(world, tokens["refresh_token"])
        assert refreshed.status_code == 400 and refreshed.json()["error"] == "invalid_grant"
        # Signed out: the next authorization starts at the sign-in page again.
        page = await browser.get(authorize_url(world, world.public_app, verifier=pkce.make_verifier()))
        assert "login" in forms_of(page.text)

    async def test_logout_redirects_only_to_a_registered_uri(self, world: World, browser: Browser) -> None:
        ok = await browser.get(
            "/oauth2/logout?"
            + urlencode(
                {"client_id": world.public_app.client_id, "post_logout_redirect_uri": REDIRECT, "state": "s"}
            )
        )
        assert ok.status_code == 302 and ok.headers["location"] == f"{REDIRECT}?state=s"
        evil = await browser.get(
            "/oauth2/logout?"
            + urlencode(
                {"client_id": world.public_app.client_id, "post_logout_redirect_uri": "https://evil.example/"}
            )
        )
        assert evil.status_code == 200


async def _portal_tokens(
    world: World, browser: Browser, *, scope: str = "launch/patient patient/*.rs offline_access"
) -> dict[str, Any]:
    verifier = pkce.make_verifier()
    url = authorize_url(world, world.public_app, verifier=verifier, scope=scope)
    signed = await sign_in(browser, url, username=world.portal.username)
    response = await token_request(
        world,
        {
            "grant_type": "authorization_code",
            "code": signed.params["code"],
            "redirect_uri": REDIRECT,
            "code_verifier": verifier,
            "client_id": world.public_app.client_id,
        },
    )
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


async def _refresh(world: World, refresh_token: str, **extra: str) -> httpx.Response:
    return await token_request(
        world,
        {
            "grant_type": "refresh_token",
            "refresh_token": refresh_token,
            "client_id": world.public_app.client_id,
            **extra,
        },
    )


# -- keys ---------------------------------------------------------------------------------------------------


class TestKeyRotation:
    async def test_rotated_keys_keep_verifying_until_they_expire(self, world: World) -> None:
        async def backend_token() -> str:
            response = await token_request(
                world,
                {"grant_type": "client_credentials", "scope": "system/MedicationRequest.rs"},
                auth=(world.basic_backend.client_id, world.basic_secret),
            )
            token: str = response.json()["access_token"]
            return token

        def kid(token: str) -> str:
            head = token.split(".")[0]
            value: str = json.loads(base64.urlsafe_b64decode(head + "=" * (-len(head) % 4)))["kid"]
            return value

        before = await backend_token()
        async with world.db.transaction() as conn:
            new_key = await identity.rotate_signing_key(
                conn, now=datetime.now(UTC), retain_for=timedelta(minutes=15)
            )
        # The server's cache reloads within its TTL; until then it may still sign with the old key.
        ring = await jwks_ring(world)
        deadline = time.monotonic() + 20
        while new_key.kid not in ring.verifying and time.monotonic() < deadline:
            await asyncio.sleep(1)
            ring = await jwks_ring(world)
        assert new_key.kid in ring.verifying and kid(before) in ring.verifying
        after = await backend_token()
        assert kid(after) == new_key.kid
        # Both verify (the old key is retired, not gone), through introspection too.
        for token in (before, after):
            verify_access_token(token, ring, audience=world.fhir, issuer=world.fhir)
            async with httpx.AsyncClient() as http:
                state = await http.post(
                    world.smart["introspection_endpoint"],
                    data={"token": token},
                    auth=(world.basic_backend.client_id, world.basic_secret),
                )
            assert state.json()["active"] is True


# -- audit --------------------------------------------------------------------------------------------------


async def test_logins_and_grants_are_audited(world: World, browser: Browser) -> None:
    await _portal_tokens(world, browser)
    async with world.db.reader() as conn:
        from sqlalchemy import text

        rows = (
            await conn.execute(
                text(
                    "SELECT content FROM resource WHERE resource_type = 'AuditEvent' "
                    "AND content::text LIKE :needle ORDER BY last_updated"
                ),
                {"needle": f"%{world.portal.username}%"},
            )
        ).all()
    events = [row.content if isinstance(row.content, dict) else json.loads(row.content) for row in rows]
    subtypes = {e["subtype"][0]["code"] for e in events}
    assert {"110122", "ITI-71"} <= subtypes  # Login, Get Access Token


# -- the operator's bootstrap path: `pms client create` / `pms keys rotate` ---------------------------------


async def pms(database_url: str, *args: str, stdin: str = "") -> tuple[int, str, str]:
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "pms.cli",
        *args,
        "--database-url",
        database_url,
        stdin=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    stdout, stderr = await asyncio.wait_for(process.communicate(stdin.encode()), timeout=120)
    assert process.returncode is not None
    return process.returncode, stdout.decode(), stderr.decode()


def _printed(output: str) -> dict[str, str]:
    return dict(line.split(": ", 1) for line in output.splitlines() if ": " in line)


class TestCli:
    async def test_client_create_prints_credentials_usable_at_the_token_endpoint(
        self, world: World, database_url: str
    ) -> None:
        name = f"bootstrap-{world.tag}"
        code, out, err = await pms(
            database_url,
            "client",
            "create",
            "--name",
            name,
            "--grant",
            "client_credentials",
            "--scopes",
            "system/*.*",
            "--secret",
            "s3cret-for-tests-only",
        )
        assert code == 0, err
        printed = _printed(out)
        assert printed["client_secret"] == "s3cret-for-tests-only" and printed["kind"] == "backend"
        response = await token_request(
            world,
            {"grant_type": "client_credentials", "scope": "system/*.*"},
            auth=(printed["client_id"], printed["client_secret"]),
        )
        assert response.status_code == 200, response.text
        assert response.json()["scope"] == "system/*.*"
        code, out, err = await pms(database_url, "client", "list")
        assert code == 0 and printed["client_id"] in out and name in out

    async def test_generated_secret_and_private_key_jwt_registration(
        self, world: World, database_url: str, tmp_path: Any
    ) -> None:
        code, out, err = await pms(
            database_url,
            "client",
            "create",
            "--name",
            "generated",
            "--grant",
            "client_credentials",
            "--scopes",
            "system/Patient.rs",
        )
        assert code == 0, err
        assert len(_printed(out)["client_secret"]) >= 40
        key = make_backend_key()
        jwks_file = tmp_path / "jwks.json"
        jwks_file.write_text(json.dumps({"keys": [key["jwk"]]}))
        code, out, err = await pms(
            database_url,
            "client",
            "create",
            "--name",
            "lab",
            "--grant",
            "client_credentials",
            "--scopes",
            "system/Observation.cruds",
            "--jwks-file",
            str(jwks_file),
        )
        assert code == 0, err
        printed = _printed(out)
        assert "client_secret" not in printed and printed["token_endpoint_auth_method"] == "private_key_jwt"
        assertion = client_assertion(key, printed["client_id"], world.smart["token_endpoint"])
        response = await token_request(
            world,
            {
                "grant_type": "client_credentials",
                "client_assertion_type": "urn:ietf:params:oauth:client-assertion-type:jwt-bearer",
                "client_assertion": assertion,
            },
        )
        assert response.status_code == 200, response.text

    async def test_refusals(self, database_url: str, tmp_path: Any) -> None:
        private = tmp_path / "private.json"
        private.write_text(json.dumps({"keys": [{**make_backend_key()["jwk"], "d": "secret"}]}))
        cases = [
            ("--grant", "authorization_code", "--scopes", "patient/*.rs"),  # no redirect URI
            ("--grant", "client_credentials", "--scopes", "not-a-scope"),
            ("--grant", "client_credentials", "--scopes", "system/*.*", "--public"),
            ("--grant", "client_credentials", "--scopes", "system/*.*", "--jwks-file", str(private)),
            (
                "--grant",
                "authorization_code",
                "--scopes",
                "openid",
                "--redirect-uri",
                "https://a.example/cb#x",
            ),
        ]
        for args in cases:
            code, _, err = await pms(database_url, "client", "create", "--name", "bad", *args)
            assert code == 1 and err, args

    async def test_keys_rotate(self, world: World, database_url: str) -> None:
        code, out, err = await pms(database_url, "keys", "rotate")
        assert code == 0, err
        kid = out.split()[3].rstrip(".")
        code, out, _ = await pms(database_url, "keys", "list")
        assert code == 0 and kid in out and "retired" in out
