"""Appointment reminders end to end: real PostgreSQL, a local SMTP server, a local SMS provider."""

from __future__ import annotations

import asyncio
from datetime import datetime, timedelta

import httpx
from sqlalchemy import text
from tests.integration.worker.conftest import Mailbox, SmsProvider, basic_auth
from tests.integration.worker.helpers import appointment, communications, email_of, mobile_of, patient

from pms.domains.reminders.sweep import Reminders, sweep


class TestSending:
    async def test_email_and_sms_in_each_patients_language(
        self,
        client: httpx.AsyncClient,
        reminders: Reminders,
        smtp: tuple[Mailbox, int],
        sms: tuple[SmsProvider, str],
        now: datetime,
    ) -> None:
        english = await patient(client, language="en-GB")
        chinese = await patient(client, language="zh-CN", family="王")
        first = await appointment(client, english, start=now + timedelta(hours=1))
        second = await appointment(client, chinese, start=now + timedelta(hours=1, minutes=30))

        report = await sweep(reminders, now=now)

        assert report.sent == 4 and report.failed == 0 and report.retrying == 0
        mailbox, provider = smtp[0], sms[0]
        [mail_en] = mailbox.to(email_of(english))
        [mail_zh] = mailbox.to(email_of(chinese))
        # 10:00 UTC is 18:00 in the clinic's zone (Asia/Shanghai).
        assert mail_en["Subject"].startswith("Reminder: your appointment on ")
        assert "18:00" in mail_en["Subject"] and "Harbour Clinic" in mail_en.get_content()
        assert "with Dr. Lee" in mail_en.get_content()
        assert mail_zh["Subject"].strip().startswith("预约提醒")  # an RFC 2047 encoded-word, folded
        assert "18:30" in mail_zh["Subject"] and "确认就诊" in mail_zh.get_content()
        assert mail_en["From"] == "Clinic <reminders@clinic.test>"
        [sms_en] = provider.to(mobile_of(english))
        [sms_zh] = provider.to(mobile_of(chinese))
        assert sms_en["From"] == "+15550000000" and sms_en["Body"].startswith("Harbour Clinic: reminder")
        assert sms_zh["Body"].startswith("Harbour Clinic提醒")
        assert f"/api/appointments/{first['id']}/respond?action=confirm&token=" in sms_en["Body"]
        assert provider.auth[-1] == basic_auth("AC0123", "sms-token")
        assert provider.paths[-1] == "/2010-04-01/Accounts/AC0123/Messages.json"

        records = await communications(client, second)
        assert sorted(r["medium"][0]["coding"][0]["code"] for r in records) == ["EMAILWRIT", "SMSWRIT"]
        for record in records:
            assert record["status"] == "completed" and "sent" in record
            assert record["subject"]["reference"] == f"Patient/{chinese['id']}"
            assert record["language"] == "zh-CN"
            assert record["extension"][0]["valueDuration"]["value"] == 120

    async def test_the_smallest_offset_reached_is_the_one_due(
        self, client: httpx.AsyncClient, reminders: Reminders, smtp: tuple[Mailbox, int], now: datetime
    ) -> None:
        someone = await patient(client, mobile=False)
        booked = await appointment(client, someone, start=now + timedelta(hours=30))

        assert (await sweep(reminders, now=now - timedelta(hours=20))).sent == 0  # 50 h before: none yet
        assert (await sweep(reminders, now=now)).sent == 1  # 30 h before: the 48 h reminder
        assert (await sweep(reminders, now=now + timedelta(hours=1))).sent == 0
        assert (await sweep(reminders, now=now + timedelta(hours=28, minutes=1))).sent == 1  # the 2 h one
        assert (await sweep(reminders, now=now + timedelta(hours=29))).sent == 0
        assert (await sweep(reminders, now=now + timedelta(hours=31))).sent == 0  # it has started

        offsets = [r["extension"][0]["valueDuration"]["value"] for r in await communications(client, booked)]
        assert sorted(offsets) == [120, 2880]
        assert len(smtp[0].to(email_of(someone))) == 2

    async def test_not_booked_opted_out_and_unreachable_patients_get_nothing(
        self, client: httpx.AsyncClient, reminders: Reminders, smtp: tuple[Mailbox, int], now: datetime
    ) -> None:
        opted_out = await patient(client, opted_out=True)
        await appointment(client, opted_out, start=now + timedelta(hours=1))
        no_contact = await patient(client, email=False, mobile=False)
        await appointment(client, no_contact, start=now + timedelta(hours=1))
        proposed = await patient(client)
        await appointment(client, proposed, start=now + timedelta(hours=1), status="proposed")

        report = await sweep(reminders, now=now)

        assert (report.sent, report.opted_out, report.unreachable) == (0, 1, 1)
        assert smtp[0].to(email_of(opted_out)) == [] and smtp[0].to(email_of(proposed)) == []


class TestExactlyOnce:
    async def test_repeated_and_concurrent_sweeps_send_each_reminder_once(
        self,
        client: httpx.AsyncClient,
        reminders: Reminders,
        smtp: tuple[Mailbox, int],
        sms: tuple[SmsProvider, str],
        now: datetime,
    ) -> None:
        people = [await patient(client) for _ in range(5)]
        for person in people:
            await appointment(client, person, start=now + timedelta(hours=1))

        reports = await asyncio.gather(*(sweep(reminders, now=now) for _ in range(4)))
        again = await sweep(reminders, now=now + timedelta(minutes=1))

        assert sum(r.sent for r in reports) == 10 and again.sent == 0
        for person in people:
            assert len(smtp[0].to(email_of(person))) == 1
            assert len(sms[0].to(mobile_of(person))) == 1


class TestProviderFailures:
    async def test_transient_failure_is_retried_with_backoff(
        self,
        client: httpx.AsyncClient,
        reminders: Reminders,
        sms: tuple[SmsProvider, str],
        now: datetime,
    ) -> None:
        provider = sms[0]
        person = await patient(client, email=False)
        booked = await appointment(client, person, start=now + timedelta(hours=1))
        provider.status = 503
        try:
            failed = await sweep(reminders, now=now)
            tries = provider.attempts
            early = await sweep(reminders, now=now + timedelta(seconds=30))  # the first retry waits 60 s
            assert provider.attempts == tries
        finally:
            provider.status = None
        assert (failed.retrying, failed.sent, early.sent, early.retrying) == (1, 0, 0, 0)
        assert await communications(client, booked) == []  # not recorded until it is final

        retried = await sweep(reminders, now=now + timedelta(seconds=61))

        assert retried.sent == 1
        assert len(provider.to(mobile_of(person))) == 1
        [record] = await communications(client, booked)
        assert record["status"] == "completed"
        async with reminders.db.reader() as conn:
            attempts = (
                await conn.execute(
                    text("SELECT attempts, status FROM reminder_delivery WHERE appointment_id = :id"),
                    {"id": booked["id"]},
                )
            ).one()
        assert tuple(attempts) == (2, "sent")

    async def test_retries_give_up_after_max_attempts_and_record_the_failure(
        self, client: httpx.AsyncClient, reminders: Reminders, smtp: tuple[Mailbox, int], now: datetime
    ) -> None:
        mailbox = smtp[0]
        person = await patient(client, mobile=False)
        booked = await appointment(client, person, start=now + timedelta(hours=1))
        mailbox.reply = "451 4.3.0 mailbox busy"
        try:
            first = await sweep(reminders, now=now)  # attempt 1, retry after 60 s
            second = await sweep(reminders, now=now + timedelta(seconds=61))  # attempt 2, retry after 240 s
            third = await sweep(reminders, now=now + timedelta(seconds=302))  # attempt 3 of 3: final
        finally:
            mailbox.reply = None
        assert (first.retrying, second.retrying, third.failed) == (1, 1, 1)
        [record] = await communications(client, booked)
        assert record["status"] == "not-done" and "451" in record["statusReason"]["text"]
        assert (await sweep(reminders, now=now + timedelta(minutes=30))).sent == 0

    async def test_permanent_failure_is_not_retried(
        self, client: httpx.AsyncClient, reminders: Reminders, sms: tuple[SmsProvider, str], now: datetime
    ) -> None:
        provider = sms[0]
        person = await patient(client, email=False)
        booked = await appointment(client, person, start=now + timedelta(hours=1))
        provider.status = 400
        try:
            report = await sweep(reminders, now=now)
        finally:
            provider.status = None
        assert (report.failed, report.retrying) == (1, 0)
        [record] = await communications(client, booked)
        assert record["status"] == "not-done" and "HTTP 400" in record["statusReason"]["text"]
