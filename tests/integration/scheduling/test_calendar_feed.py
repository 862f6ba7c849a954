"""A practitioner's iCalendar feed (issue: scheduling): token-protected, minimal PHI, audited, and it
stops working when its link is tampered with."""

from __future__ import annotations

from collections.abc import AsyncIterator

import httpx
import pytest
from tests.integration.scheduling.clinic import Clinic, appointment, at, next_weekday
from tests.support import TokenMinter, fhir_client

from pms.core.db import Database


class Feeds(TokenMinter):
    clinic: Clinic
    server_url: str


@pytest.fixture(scope="module")
async def feeds(server_url: str, settings: object) -> AsyncIterator[Feeds]:
    database = await Database.open(settings)  # type: ignore[arg-type]
    try:
        async with fhir_client(server_url) as http:
            world = Feeds(server_url, database)
            world.server_url = server_url
            await world.setup()
            world.clinic = await Clinic(http).setup()
            yield world
    finally:
        await database.dispose()


async def feed_link(feeds: Feeds, token: str, practitioner: str) -> httpx.Response:
    async with httpx.AsyncClient(base_url=feeds.server_url, timeout=60) as http:
        return await http.post(
            f"/api/calendar-feeds/{practitioner}", headers={"Authorization": f"Bearer {token}"}
        )


class TestCalendarFeed:
    async def test_practitioner_subscribes_to_their_own_day(self, feeds: Feeds) -> None:
        staff = await feeds.clinic.practitioner()
        patient = (
            await feeds.clinic.create(
                {"resourceType": "Patient", "name": [{"family": "Zhang", "given": ["Wei"]}]}
            )
        )["id"]
        monday = next_weekday(0)
        booked = await feeds.clinic.http.post(
            "/Appointment/$book",
            json=appointment(feeds.clinic, staff, patient, at(monday, 9), at(monday, 9, 20)),
        )
        assert booked.status_code == 201
        token = await feeds.token(scope="user/*.cruds", roles=["physician"], fhir_user=staff.ref)
        link = await feed_link(feeds, token, staff.person_id)
        assert link.status_code == 200, link.text
        url = link.json()["url"]
        async with httpx.AsyncClient(timeout=60) as http:  # no bearer token: the link is the key
            calendar = await http.get(url)
        assert calendar.status_code == 200
        assert calendar.headers["content-type"].startswith("text/calendar")
        text = calendar.text
        assert text.startswith("BEGIN:VCALENDAR\r\n") and text.endswith("END:VCALENDAR\r\n")
        assert f"UID:{booked.json()['id']}@" in text
        assert "DTSTART:" + at(monday, 9).replace("-", "").replace(":", "") in text
        assert "W.Z." in text and "Zhang" not in text  # initials only
        audit = await feeds.clinic.http.get(
            "/AuditEvent", params={"entity": f"Appointment/{booked.json()['id']}"}
        )
        assert audit.json()["total"] >= 2  # the booking and the feed's read

    async def test_tampered_or_foreign_links_are_refused(self, feeds: Feeds) -> None:
        staff, other = await feeds.clinic.practitioner(), await feeds.clinic.practitioner()
        token = await feeds.token(scope="user/*.cruds", roles=["physician"], fhir_user=staff.ref)
        url = (await feed_link(feeds, token, staff.person_id)).json()["url"]
        async with httpx.AsyncClient(timeout=60) as http:
            assert (await http.get(url[:-3] + "abc")).status_code == 401
            assert (await http.get(url.replace(staff.person_id, other.person_id))).status_code == 401
            # A feed token is not an access token.
            feed_token = url.split("token=")[1]
            fhir = await http.get(
                f"{feeds.server_url}/fhir/Appointment", headers={"Authorization": f"Bearer {feed_token}"}
            )
            assert fhir.status_code == 401

    async def test_only_the_practitioner_or_staff_who_see_all_appointments(self, feeds: Feeds) -> None:
        staff = await feeds.clinic.practitioner()
        desk = await feeds.token(scope="user/*.cruds", roles=["receptionist"])
        assert (await feed_link(feeds, desk, staff.person_id)).status_code == 200
        patient = await feeds.clinic.patient()
        portal = await feeds.token(
            scope="patient/*.rs", roles=["patient"], fhir_user=f"Patient/{patient}", patient=patient
        )
        assert (await feed_link(feeds, portal, staff.person_id)).status_code == 403
        async with httpx.AsyncClient(base_url=feeds.server_url, timeout=60) as http:
            assert (await http.post(f"/api/calendar-feeds/{staff.person_id}")).status_code == 401
