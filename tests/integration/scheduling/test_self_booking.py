"""Patients booking for themselves with a SMART `patient/` token (issue: scheduling): only free slots,
only online-bookable visit types, only for their own record, within limits."""

from __future__ import annotations

from collections.abc import AsyncIterator

import httpx
import pytest
from tests.integration.scheduling.clinic import Clinic, Staff, appointment, at, next_weekday
from tests.support import TokenMinter, fhir_client

from pms.core.db import Database


class Portal(TokenMinter):
    clinic: Clinic
    staff: Staff

    async def patient_client(self) -> tuple[str, httpx.AsyncClient]:
        patient = await self.clinic.patient("Portal")
        token = await self.token(
            scope="patient/*.cruds", roles=["patient"], fhir_user=f"Patient/{patient}", patient=patient
        )
        return patient, self.http(token)


@pytest.fixture(scope="module")
async def portal(server_url: str, settings: object) -> AsyncIterator[Portal]:
    database = await Database.open(settings)  # type: ignore[arg-type]
    try:
        async with fhir_client(server_url) as http:
            world = Portal(server_url, database)
            await world.setup()
            world.clinic = await Clinic(http).setup()
            world.staff = await world.clinic.practitioner()
            yield world
    finally:
        await database.dispose()


class TestSelfBooking:
    async def test_patient_books_a_free_slot_for_themselves(self, portal: Portal) -> None:
        patient, http = await portal.patient_client()
        monday = next_weekday(0)
        async with http:
            body = appointment(portal.clinic, portal.staff, patient, at(monday, 9), at(monday, 9, 20))
            response = await http.post("/Appointment/$book", json=body)
            assert response.status_code == 201, response.text
            mine = await http.get("/Appointment")
            assert mine.json()["total"] == 1

    async def test_only_online_visit_types(self, portal: Portal) -> None:
        patient, http = await portal.patient_client()
        monday = next_weekday(0)
        async with http:
            body = appointment(
                portal.clinic, portal.staff, patient, at(monday, 10), at(monday, 10, 20), visit="procedure"
            )
            response = await http.post("/Appointment/$book", json=body)
        assert response.status_code == 422
        assert "cannot be booked online" in response.json()["issue"][0]["diagnostics"]

    async def test_only_on_free_slots(self, portal: Portal) -> None:
        patient, http = await portal.patient_client()
        monday = next_weekday(0)
        async with http:
            lunch = appointment(portal.clinic, portal.staff, patient, at(monday, 12, 20), at(monday, 12, 40))
            assert (await http.post("/Appointment/$book", json=lunch)).status_code == 409
            misaligned = appointment(portal.clinic, portal.staff, patient, at(monday, 10), at(monday, 10, 40))
            wrong_length = await http.post("/Appointment/$book", json=misaligned)
            assert wrong_length.status_code == 422  # a follow-up lasts 20 minutes

    async def test_not_for_someone_else(self, portal: Portal) -> None:
        _, http = await portal.patient_client()
        other = await portal.clinic.patient("Other")
        tuesday = next_weekday(1)
        async with http:
            body = appointment(portal.clinic, portal.staff, other, at(tuesday, 9), at(tuesday, 9, 20))
            response = await http.post("/Appointment/$book", json=body)
        assert response.status_code == 403

    async def test_abuse_limit_on_upcoming_bookings(self, portal: Portal) -> None:
        patient, http = await portal.patient_client()
        wednesday = next_weekday(2)
        codes = []
        async with http:
            for minute in (0, 20, 40, 60):
                start, end = (
                    at(wednesday, 9 + minute // 60, minute % 60),
                    at(wednesday, 9 + (minute + 20) // 60, (minute + 20) % 60),
                )
                body = appointment(portal.clinic, portal.staff, patient, start, end)
                codes.append((await http.post("/Appointment/$book", json=body)).status_code)
        assert codes == [201, 201, 201, 429]

    async def test_staff_may_book_outside_the_slots(self, portal: Portal) -> None:
        """The front desk can squeeze a patient in at lunchtime; patients cannot (above)."""
        monday = next_weekday(0)
        body = appointment(
            portal.clinic, portal.staff, await portal.clinic.patient(), at(monday, 12, 30), at(monday, 12, 50)
        )
        assert (await portal.clinic.http.post("/Appointment/$book", json=body)).status_code == 201


class TestFrontDesk:
    async def test_receptionist_finds_and_books_with_the_operations(self, portal: Portal) -> None:
        """$find and $book are reads and creates of scheduling resources: a role that may search Slots and
        create Appointments may use them (the receptionist has no FHIR operations otherwise)."""
        token = await portal.token(scope="user/*.cruds", roles=["receptionist"])
        patient = await portal.clinic.patient("Desk")
        tuesday = next_weekday(1, weeks_ahead=3)
        async with portal.http(token) as http:
            find = {
                "resourceType": "Parameters",
                "parameter": [
                    {"name": "visit-type", "valueString": portal.clinic.code("follow-up")},
                    {"name": "start", "valueDateTime": tuesday.isoformat()},
                    {"name": "end", "valueDateTime": tuesday.isoformat()},
                    {"name": "patient", "valueReference": {"reference": f"Patient/{patient}"}},
                ],
            }
            found = await http.post("/Appointment/$find", json=find)
            assert found.status_code == 200, found.text
            proposal = found.json()["entry"][0]["resource"]
            booked = await http.post("/Appointment/$book", json=proposal)
            assert booked.status_code == 201, booked.text
            series = {
                "resourceType": "Parameters",
                "parameter": [
                    {
                        "name": "appointment",
                        "resource": appointment(
                            portal.clinic, portal.staff, patient, at(tuesday, 11), at(tuesday, 11, 20)
                        ),
                    },
                    {"name": "recurrence", "valueString": "FREQ=WEEKLY;COUNT=2"},
                ],
            }
            assert (await http.post("/Appointment/$book", json=series)).status_code == 200


class TestPatientFind:
    async def test_a_patient_finds_times_for_themselves_only(self, portal: Portal) -> None:
        patient, http = await portal.patient_client()
        other = await portal.clinic.patient("Neighbour")
        thursday = next_weekday(3, weeks_ahead=3)

        def find(for_patient: str | None) -> dict[str, object]:
            parameters: list[dict[str, object]] = [
                {"name": "visit-type", "valueString": portal.clinic.code("follow-up")},
                {"name": "start", "valueDateTime": thursday.isoformat()},
                {"name": "end", "valueDateTime": thursday.isoformat()},
            ]
            if for_patient:
                parameters.append({"name": "patient", "valueReference": {"reference": for_patient}})
            return {"resourceType": "Parameters", "parameter": parameters}

        async with http:
            # Another patient's busy times would leak through which times are left out.
            refused = await http.post("/Appointment/$find", json=find(f"Patient/{other}"))
            assert refused.status_code == 403
            mine = await http.post("/Appointment/$find", json=find(None))
            assert mine.status_code == 200, mine.text
            proposal = mine.json()["entry"][0]["resource"]
            assert {"reference": f"Patient/{patient}"} in [p["actor"] for p in proposal["participant"]]


class TestPatientConflicts:
    async def test_a_taken_time_does_not_name_the_other_booking(self, portal: Portal) -> None:
        friday = next_weekday(4, weeks_ahead=3)
        staff_booked = await portal.clinic.http.post(
            "/Appointment/$book",
            json=appointment(
                portal.clinic, portal.staff, await portal.clinic.patient(), at(friday, 9), at(friday, 9, 20)
            ),
        )
        assert staff_booked.status_code == 201
        patient, http = await portal.patient_client()
        async with http:
            body = appointment(portal.clinic, portal.staff, patient, at(friday, 9), at(friday, 9, 20))
            refused = await http.post("/Appointment/$book", json=body)
        assert refused.status_code == 409
        text = refused.json()["issue"][0]["diagnostics"]
        assert "no longer free" in text and staff_booked.json()["id"] not in text
