"""The outbox: Communications queued `in-progress` by other flows (waitlist offers) are sent once."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
from tests.integration.worker.conftest import Mailbox, SmsProvider
from tests.integration.worker.helpers import create, email_of, mobile_of, patient

from pms.domains.reminders.outbox import deliver_outbox
from pms.domains.reminders.sweep import Reminders

KIND = "https://pms.example.org/fhir/CodeSystem/message-kind"


def queued(recipient: dict[str, Any], text: str, language: str = "en") -> dict[str, Any]:
    return {
        "resourceType": "Communication",
        "status": "in-progress",
        "language": language,
        "category": [{"coding": [{"system": KIND, "code": "waitlist-offer"}]}],
        "subject": {"reference": f"Patient/{recipient['id']}"},
        "recipient": [{"reference": f"Patient/{recipient['id']}"}],
        "payload": [{"contentString": text}],
    }


async def read(client: httpx.AsyncClient, communication: dict[str, Any]) -> dict[str, Any]:
    found: dict[str, Any] = (await client.get(f"/Communication/{communication['id']}")).json()
    return found


class TestOutbox:
    async def test_queued_messages_go_out_once_and_are_marked(
        self,
        client: httpx.AsyncClient,
        reminders: Reminders,
        smtp: tuple[Mailbox, int],
        sms: tuple[SmsProvider, str],
    ) -> None:
        since = datetime.now(UTC) - timedelta(seconds=1)
        chinese = await patient(client, language="zh-CN")
        nobody = await patient(client, email=False, mobile=False)
        offer = await create(
            client, queued(chinese, "有空出的时间：接受 https://x/a 拒绝 https://x/d", "zh-CN")
        )
        unreachable = await create(client, queued(nobody, "Accept: https://x/a"))

        reports = await asyncio.gather(*(deliver_outbox(reminders, updated_since=since) for _ in range(3)))
        again = await deliver_outbox(reminders, updated_since=since)

        assert sum(r.sent for r in reports) == 1 and again.communications == 0
        [mail] = smtp[0].to(email_of(chinese))
        assert mail["Subject"].strip() == "有空出的预约时间" and "接受 https://x/a" in mail.get_content()
        [text] = sms[0].to(mobile_of(chinese))
        assert text["Body"].startswith("有空出的时间")
        done = await read(client, offer)
        assert done["status"] == "completed" and "sent" in done
        assert sorted(m["coding"][0]["code"] for m in done["medium"]) == ["EMAILWRIT", "SMSWRIT"]
        failed = await read(client, unreachable)
        assert failed["status"] == "not-done" and "no recipient" in failed["statusReason"]["text"]

    async def test_a_provider_outage_leaves_it_queued_for_the_next_run(
        self, client: httpx.AsyncClient, reminders: Reminders, sms: tuple[SmsProvider, str]
    ) -> None:
        since = datetime.now(UTC) - timedelta(seconds=1)
        person = await patient(client, email=False)
        offer = await create(client, queued(person, "Accept: https://x/a"))
        sms[0].status = 503
        try:
            first = await deliver_outbox(reminders, updated_since=since)
        finally:
            sms[0].status = None
        assert first.retrying == 1 and (await read(client, offer))["status"] == "in-progress"

        second = await deliver_outbox(reminders, updated_since=since)

        assert second.sent == 1 and len(sms[0].to(mobile_of(person))) == 1
        assert (await read(client, offer))["status"] == "completed"
