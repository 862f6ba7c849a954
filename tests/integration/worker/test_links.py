"""The confirm / cancel links in reminders: GET shows, POST acts, bad or expired tokens are refused."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import httpx
import pytest
from tests.integration.worker.conftest import Mailbox
from tests.integration.worker.helpers import appointment, email_of, patient

from pms.api.page_text import when
from pms.config import Settings
from pms.domains.reminders.sweep import Reminders, sweep

LINK = re.compile(r"https://clinic\.test(/api/appointments/\S+)")


async def links(
    client: httpx.AsyncClient, reminders: Reminders, mailbox: Mailbox, now: datetime, language: str = "en"
) -> tuple[dict[str, Any], dict[str, Any], dict[str, str]]:
    """A patient, their booked appointment, and the {action: path} links of the reminder they got."""
    person = await patient(client, mobile=False, language=language)
    booked = await appointment(client, person, start=now + timedelta(hours=1))
    assert (await sweep(reminders, now=now)).sent == 1
    [mail] = mailbox.to(email_of(person))
    found = LINK.findall(mail.get_content())
    return person, booked, {path.split("action=")[1].split("&")[0]: path for path in found}


async def current(client: httpx.AsyncClient, booked: dict[str, Any]) -> dict[str, Any]:
    response = await client.get(f"/Appointment/{booked['id']}")
    assert response.status_code == 200
    resource: dict[str, Any] = response.json()
    return resource


def form(path: str) -> dict[str, str]:
    """What the page's form posts: the link's action, token and language."""
    query = dict(httpx.URL(path).params)
    return {name: query[name] for name in ("action", "token", "lang") if name in query}


@pytest.fixture
async def web(server_url: str) -> Any:
    async with httpx.AsyncClient(base_url=server_url, timeout=30) as http:
        yield http


async def audit_trail(client: httpx.AsyncClient, booked: dict[str, Any]) -> list[dict[str, Any]]:
    response = await client.get(
        "/AuditEvent", params={"entity": f"Appointment/{booked['id']}", "_count": "50"}
    )
    assert response.status_code == 200
    return [e["resource"] for e in response.json().get("entry", []) if e["search"]["mode"] == "match"]


def local_start(settings: Settings, booked: dict[str, Any]) -> datetime:
    """The appointment's start in the session app's clinic zone, as the pages show it."""
    start = datetime.fromisoformat(booked["start"].replace("Z", "+00:00"))
    return start.astimezone(ZoneInfo(settings.clinic_timezone))


def by_patient_link(events: list[dict[str, Any]], person: dict[str, Any]) -> list[dict[str, Any]]:
    who = f"Patient/{person['id']}"
    return [e for e in events if any(a.get("who", {}).get("reference") == who for a in e["agent"])]


class TestConfirm:
    async def test_get_shows_a_page_and_changes_nothing_post_confirms(
        self,
        settings: Settings,
        client: httpx.AsyncClient,
        web: httpx.AsyncClient,
        reminders: Reminders,
        smtp: tuple[Mailbox, int],
        now: datetime,
    ) -> None:
        person, booked, paths = await links(client, reminders, smtp[0], now)

        page = await web.get(paths["confirm"])
        assert page.status_code == 200 and '<form method="post">' in page.text
        local = local_start(settings, booked)
        assert local.utcoffset() and when("en", local) in page.text and '<html lang="en">' in page.text
        assert (await current(client, booked))["meta"]["versionId"] == "1"

        done = await web.post(paths["confirm"].split("?")[0], data=form(paths["confirm"]))
        assert done.status_code == 200 and "confirmed" in done.text
        confirmed = await current(client, booked)
        assert confirmed["status"] == "booked" and confirmed["meta"]["versionId"] == "2"
        patient_part = next(p for p in confirmed["participant"] if "Patient/" in p["actor"]["reference"])
        assert patient_part["status"] == "accepted"

        events = by_patient_link(await audit_trail(client, booked), person)
        kinds = sorted(e["subtype"][0]["code"] for e in events)
        assert kinds == ["read", "update"]

    async def test_cancel_updates_the_appointment_once(
        self,
        client: httpx.AsyncClient,
        web: httpx.AsyncClient,
        reminders: Reminders,
        smtp: tuple[Mailbox, int],
        now: datetime,
    ) -> None:
        _, booked, paths = await links(client, reminders, smtp[0], now)
        url = paths["cancel"].split("?")[0]

        done = await web.post(url, data=form(paths["cancel"]))
        again = await web.post(url, data=form(paths["cancel"]))

        assert done.status_code == 200 and "cancelled" in done.text
        assert again.status_code == 200 and "already cancelled" in again.text
        cancelled = await current(client, booked)
        assert cancelled["status"] == "cancelled" and cancelled["meta"]["versionId"] == "2"
        assert cancelled["cancelationReason"]["coding"][0]["code"] == "pat"
        # A cancelled appointment gets no further reminders.
        assert (await sweep(reminders, now=now + timedelta(minutes=59))).sent == 0

    async def test_a_chinese_reminder_opens_chinese_pages(
        self,
        settings: Settings,
        client: httpx.AsyncClient,
        web: httpx.AsyncClient,
        reminders: Reminders,
        smtp: tuple[Mailbox, int],
        now: datetime,
    ) -> None:
        _, booked, paths = await links(client, reminders, smtp[0], now, language="zh")
        assert "lang=zh-CN" in paths["cancel"]
        page = await web.get(paths["cancel"])
        local = local_start(settings, booked)
        assert '<html lang="zh-CN">' in page.text and "取消您的预约" in page.text
        assert when("zh-CN", local) in page.text and 'name="lang" value="zh-CN"' in page.text
        done = await web.post(paths["cancel"].split("?")[0], data=form(paths["cancel"]))
        assert done.status_code == 200 and "您的预约已取消" in done.text
        # Without the link's language, the browser's applies; without either, English.
        plain = {"action": "cancel", "token": form(paths["cancel"])["token"]}
        url = paths["cancel"].split("?")[0]
        chinese = await web.post(url, data=plain, headers={"Accept-Language": "zh-CN,zh;q=0.9"})
        assert "此预约此前已被取消" in chinese.text
        assert "already cancelled" in (await web.post(url, data=plain)).text


class TestRefusals:
    async def test_tampered_expired_and_swapped_tokens_are_refused(
        self,
        client: httpx.AsyncClient,
        web: httpx.AsyncClient,
        reminders: Reminders,
        smtp: tuple[Mailbox, int],
        now: datetime,
    ) -> None:
        _, booked, paths = await links(client, reminders, smtp[0], now)
        url = paths["cancel"].split("?")[0]
        good = form(paths["cancel"])
        stamp, mac = good["token"].split(".")
        flipped = mac[:-1] + ("A" if mac[-1] != "A" else "B")
        expired = reminders.signer.token(
            booked["id"], "cancel", expires=datetime.now(UTC) - timedelta(seconds=1)
        )
        attempts = [
            {"action": "cancel", "token": f"{stamp}.{flipped}"},  # tampered signature
            {"action": "cancel", "token": f"{int(stamp) + 86400}.{mac}"},  # extended expiry
            {"action": "cancel", "token": expired},  # genuine but expired
            {"action": "cancel", "token": form(paths["confirm"])["token"]},  # the confirm link's token
            {"action": "cancel", "token": ""},
        ]
        for attempt in attempts:
            response = await web.post(url, data=attempt)
            assert response.status_code == 403, attempt
        other = await web.post(url.replace(booked["id"], "someone-else"), data=good)
        assert other.status_code == 403
        page = await web.get(url, params={"action": "cancel", "token": expired})
        assert page.status_code == 403

        assert (await current(client, booked))["status"] == "booked"
        refusals = [e for e in await audit_trail(client, booked) if e["outcome"] == "4"]
        assert len(refusals) >= len(attempts)
