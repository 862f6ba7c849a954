"""The waitlist (issue: scheduling): freed time is offered to the best-matching waitlisted patient,
held while they decide; accept books it, decline or time-out passes it on; two workers never offer the
same time twice."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import parse_qs, urlsplit

import httpx
import pytest
from tests.integration.scheduling.clinic import SYSTEM, Clinic, Staff, appointment, at, next_weekday
from tests.support import fhir_client

from pms.config import Settings
from pms.core.db import Database
from pms.domains.hooks import write_hooks
from pms.domains.scheduling.tasks import SchedulingJobs
from pms.domains.scheduling.wiring import scheduling_config
from pms.fhir.validation import validate_resource
from pms.storage.identity import KeyCache
from pms.storage.links import LinkSigner
from pms.storage.registry_provider import RegistryProvider
from pms.storage.units import SystemUnits


class Worker:
    """What the arq worker holds: the same lifespan objects as the API, and the scheduling jobs."""

    def __init__(self, db: Database, settings: Settings) -> None:
        config = scheduling_config(settings)
        units = SystemUnits(
            db,
            validator=validate_resource,
            registry_provider=RegistryProvider(ttl=0),
            hooks=write_hooks(config),
        )
        self.jobs = SchedulingJobs(units, config, LinkSigner(KeyCache(db), settings), hold_minutes=60)


@pytest.fixture(scope="module")
async def clinic(server_url: str) -> AsyncIterator[Clinic]:
    async with fhir_client(server_url) as http:
        yield await Clinic(http).setup()


@pytest.fixture(scope="module")
async def worker(settings: Settings) -> AsyncIterator[Worker]:
    db = await Database.open(settings)
    try:
        yield Worker(db, settings)
    finally:
        await db.dispose()


async def waitlist_entry(
    clinic: Clinic,
    patient: str,
    staff: Staff | None,
    *,
    priority: int = 0,
    period: tuple[str, str] | None = None,
) -> dict[str, Any]:
    entry: dict[str, Any] = {
        "resourceType": "Appointment",
        "status": "waitlist",
        "serviceType": [{"coding": [{"system": SYSTEM, "code": clinic.code("follow-up")}]}],
        "participant": [{"actor": {"reference": f"Patient/{patient}"}, "status": "needs-action"}],
        "priority": priority,
    }
    if staff is not None:
        entry["participant"].append({"actor": {"reference": staff.ref}, "status": "needs-action"})
    if period:
        entry["requestedPeriod"] = [{"start": period[0], "end": period[1]}]
    return await clinic.create(entry)


async def book_and_cancel(
    clinic: Clinic, staff: Staff, hour: int, day_offset: int = 0
) -> tuple[datetime, datetime]:
    day = next_weekday(0) + timedelta(days=day_offset)
    body = appointment(clinic, staff, await clinic.patient(), at(day, hour), at(day, hour, 20))
    booked = (await clinic.http.post("/Appointment/$book", json=body)).json()
    cancelled = await clinic.http.put(
        f"/Appointment/{booked['id']}",
        json={**booked, "status": "cancelled", "cancelationReason": {"text": "ill"}},
    )
    assert cancelled.status_code == 200
    parse = lambda value: datetime.fromisoformat(value.replace("Z", "+00:00"))  # noqa: E731
    return parse(booked["start"]), parse(booked["end"])


def local(url: str, server_url: str) -> str:
    parts = urlsplit(url)
    return f"{server_url}{parts.path}?{parts.query}"


class TestWaitlist:
    async def test_best_candidate_gets_a_hold_and_a_message(self, clinic: Clinic, worker: Worker) -> None:
        staff = await clinic.practitioner()
        low, high, other_doctor = (
            await clinic.patient("Low"),
            await clinic.patient("High"),
            await clinic.patient(),
        )
        await waitlist_entry(clinic, low, staff)  # priority 0: lowest
        best = await waitlist_entry(clinic, high, staff, priority=1)
        await waitlist_entry(clinic, other_doctor, await clinic.practitioner(), priority=1)
        start, end = await book_and_cancel(clinic, staff, 9)
        offer = await worker.jobs.offer_freed_time(
            start, end, [staff.ref, f"PractitionerRole/{staff.role_id}"]
        )
        assert offer is not None and offer.waitlist_id == best["id"] and offer.patient == f"Patient/{high}"
        hold = (await clinic.http.get(f"/Appointment/{offer.hold_id}")).json()
        assert hold["status"] == "pending" and hold["start"] == start.strftime("%Y-%m-%dT%H:%M:%SZ")
        message = await clinic.http.get(
            "/Communication",
            params={"recipient": f"Patient/{high}", "category": "waitlist-offer"},
            headers={"Prefer": "handling=strict"},
        )
        sent = message.json()["entry"][0]["resource"]
        assert {"reference": f"Appointment/{offer.hold_id}"} in sent["about"]
        text = sent["payload"][0]["contentString"]
        assert "Accept: http" in text and "Decline: http" in text
        # The held time is not bookable by anyone else.
        clash = await clinic.http.post(
            "/Appointment/$book",
            json=appointment(clinic, staff, await clinic.patient(), hold["start"], hold["end"]),
        )
        assert clash.status_code == 409

    async def test_accept_from_the_link_books_it(
        self, clinic: Clinic, worker: Worker, server_url: str
    ) -> None:
        staff = await clinic.practitioner()
        patient = await clinic.patient()
        entry = await waitlist_entry(clinic, patient, staff)
        start, end = await book_and_cancel(clinic, staff, 10)
        offer = await worker.jobs.offer_freed_time(start, end, [staff.ref])
        assert offer is not None
        accept, _ = await worker.jobs._offer_links(offer)
        async with httpx.AsyncClient(timeout=60) as http:
            page = await http.get(local(accept, server_url))
            assert page.status_code == 200 and "Accept" in page.text
            assert (await clinic.http.get(f"/Appointment/{offer.hold_id}")).json()[
                "status"
            ] == "pending"  # GET changed nothing
            token = parse_qs(urlsplit(accept).query)["token"][0]
            answered = await http.post(
                local(accept, server_url).split("?")[0], data={"token": token, "answer": "accept"}
            )
            assert answered.status_code == 200 and "Booked" in answered.text
            again = await http.post(
                local(accept, server_url).split("?")[0], data={"token": token, "answer": "decline"}
            )
            assert "Booked" in again.text  # answering twice changes nothing
            forged = await http.post(
                local(accept, server_url).split("?")[0],
                data={"token": token[:-4] + "AAAA", "answer": "accept"},
            )
            assert forged.status_code == 401
        assert (await clinic.http.get(f"/Appointment/{offer.hold_id}")).json()["status"] == "booked"
        assert (await clinic.http.get(f"/Appointment/{entry['id']}")).json()["status"] == "cancelled"

    async def test_pages_speak_the_message_language(
        self, clinic: Clinic, worker: Worker, server_url: str
    ) -> None:
        staff = await clinic.practitioner()
        patient = (
            await clinic.create(
                {
                    "resourceType": "Patient",
                    "name": [{"family": f"Wang{clinic.tag}"}],
                    "communication": [
                        {"language": {"coding": [{"system": "urn:ietf:bcp:47", "code": "zh"}]}}
                    ],
                }
            )
        )["id"]
        await waitlist_entry(clinic, patient, staff, priority=5)
        start, end = await book_and_cancel(clinic, staff, 14)
        offer = await worker.jobs.offer_freed_time(start, end, [staff.ref])
        assert offer is not None and offer.patient == f"Patient/{patient}"
        message = await clinic.http.get(
            "/Communication", params={"recipient": f"Patient/{patient}", "category": "waitlist-offer"}
        )
        text = message.json()["entry"][0]["resource"]["payload"][0]["contentString"]
        decline = next(line for line in text.splitlines() if line.startswith("放弃："))[3:]
        assert parse_qs(urlsplit(decline).query)["lang"] == ["zh"]  # the message's language
        async with httpx.AsyncClient(timeout=60) as http:
            page = await http.get(local(decline, server_url))
            assert page.status_code == 200 and '<html lang="zh-CN">' in page.text
            assert "<h1>更早的预约</h1>" in page.text and "年" in page.text and "星期" in page.text
            assert ">接受</button>" in page.text and " autofocus>放弃</button>" in page.text
            # Without lang (an old link), the browser's language; otherwise English.
            bare = local(decline, server_url).replace("&lang=zh", "").replace("lang=zh&", "")
            chinese = await http.get(bare, headers={"Accept-Language": "zh-CN,zh;q=0.9"})
            assert '<html lang="zh-CN">' in chinese.text and ">接受</button>" in chinese.text
            english = await http.get(bare, headers={"Accept-Language": "fr"})
            assert '<html lang="en">' in english.text and ">Accept</button>" in english.text
            assert "年" not in english.text
            token = parse_qs(urlsplit(decline).query)["token"][0]
            answered = await http.post(
                local(decline, server_url).split("?")[0],
                data={"token": token, "answer": "decline", "lang": "zh"},
            )
            assert answered.status_code == 200 and '<html lang="zh-CN">' in answered.text
            assert "谢谢，我们已将该时间提供给其他人。" in answered.text and "Thank you" not in answered.text
            invalid = await http.post(
                local(decline, server_url).split("?")[0],
                data={"token": token[:-4] + "AAAA", "answer": "accept", "lang": "zh"},
            )
            assert invalid.status_code == 401 and "链接无效" in invalid.text

    async def test_decline_passes_the_time_to_the_next_candidate(
        self, clinic: Clinic, worker: Worker
    ) -> None:
        staff = await clinic.practitioner()
        first, second = await clinic.patient("First"), await clinic.patient("Second")
        await waitlist_entry(clinic, first, staff, priority=1)
        await waitlist_entry(clinic, second, staff, priority=2)
        start, end = await book_and_cancel(clinic, staff, 11)
        offer = await worker.jobs.offer_freed_time(start, end, [staff.ref])
        assert offer is not None and offer.patient == f"Patient/{first}"
        async with worker.jobs.units.transaction() as repo:
            from pms.domains.scheduling.store import SchedulingStore
            from pms.domains.scheduling.waitlist import Waitlist

            state = await Waitlist(SchedulingStore(repo), worker.jobs.config, hold_minutes=60).respond(
                offer.offer_id, accept=False
            )
        assert state == "declined"
        assert (await clinic.http.get(f"/Appointment/{offer.hold_id}")).json()["status"] == "cancelled"
        following = await worker.jobs.offer_freed_time(start, end, [staff.ref])
        assert following is not None and following.patient == f"Patient/{second}"

    async def test_unanswered_offers_expire_and_move_on(self, clinic: Clinic, worker: Worker) -> None:
        staff = await clinic.practitioner()
        first, second = await clinic.patient(), await clinic.patient()
        await waitlist_entry(clinic, first, staff, priority=1)
        await waitlist_entry(clinic, second, staff, priority=3)
        start, end = await book_and_cancel(clinic, staff, 9, day_offset=1)
        offer = await worker.jobs.offer_freed_time(start, end, [staff.ref])
        assert offer is not None
        expired = await worker.jobs.expire_offers(datetime.now(UTC) + timedelta(minutes=61))
        assert expired >= 1
        assert (await clinic.http.get(f"/Appointment/{offer.hold_id}")).json()["status"] == "cancelled"
        following = await worker.jobs.offer_freed_time(start, end, [staff.ref])
        assert following is not None and following.patient == f"Patient/{second}"

    async def test_requested_period_and_practitioner_are_respected(
        self, clinic: Clinic, worker: Worker
    ) -> None:
        staff = await clinic.practitioner()
        day = next_weekday(0) + timedelta(days=2)
        await waitlist_entry(
            clinic, await clinic.patient(), staff, priority=1, period=(at(day, 13), at(day, 17))
        )  # afternoons only
        start, end = await book_and_cancel(clinic, staff, 9, day_offset=2)
        assert await worker.jobs.offer_freed_time(start, end, [staff.ref]) is None

    async def test_two_workers_never_offer_the_same_time_twice(
        self, clinic: Clinic, worker: Worker, settings: Settings
    ) -> None:
        staff = await clinic.practitioner()
        for priority in (1, 2, 3):
            await waitlist_entry(clinic, await clinic.patient(), staff, priority=priority)
        start, end = await book_and_cancel(clinic, staff, 10, day_offset=3)
        db2 = await Database.open(settings)
        try:
            second = Worker(db2, settings)
            results = await asyncio.gather(
                worker.jobs.offer_freed_time(start, end, [staff.ref]),
                second.jobs.offer_freed_time(start, end, [staff.ref]),
                return_exceptions=True,
            )
        finally:
            await db2.dispose()
        offers = [r for r in results if r is not None and not isinstance(r, BaseException)]
        assert len(offers) == 1, results
        holds = await clinic.http.get("/Appointment", params={"practitioner": staff.ref, "status": "pending"})
        assert holds.json()["total"] == 1


class TestHorizon:
    async def test_the_daily_job_opens_the_next_days(self, clinic: Clinic, worker: Worker) -> None:
        every_day = [{"availableStartTime": "09:00:00", "availableEndTime": "10:00:00"}]
        staff = await clinic.practitioner(hours=every_day)
        # The clinic's date, not UTC's: from 00:00 UTC until the clinic's midnight they differ by a day.
        today = datetime.now(worker.jobs.config.zone).date()
        horizon_end = today + timedelta(days=worker.jobs.config.horizon_days)
        assert await clinic.slots(staff.schedule_id, horizon_end + timedelta(days=1)) == []
        looked_at = await worker.jobs.extend_horizons(datetime.now(UTC) + timedelta(days=2))
        assert looked_at >= 1
        assert len(await clinic.slots(staff.schedule_id, horizon_end + timedelta(days=1))) == 3
