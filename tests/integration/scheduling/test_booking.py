"""Booking rules (issue: scheduling): slots from working hours, no double booking enforced by the
database, the R4 status life cycle, cancel/reschedule freeing time, multi-resource bookings."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import httpx
import pytest
from tests.integration.scheduling.clinic import Clinic, appointment, at, next_weekday
from tests.support import fhir_client


@pytest.fixture(scope="module")
async def clinic(server_url: str) -> AsyncIterator[Clinic]:
    async with fhir_client(server_url) as http:
        yield await Clinic(http).setup()


async def book(http: httpx.AsyncClient, body: dict) -> httpx.Response:  # type: ignore[type-arg]
    return await http.post("/Appointment/$book", json=body)


class TestSlots:
    async def test_schedule_gets_free_slots_from_working_hours(self, clinic: Clinic) -> None:
        staff = await clinic.practitioner()
        monday = next_weekday(0)
        slots = await clinic.slots(staff.schedule_id, monday, "free")
        # 09:00-12:00 local in 20-minute slots
        assert [s["start"] for s in slots][:2] == [at(monday, 9), at(monday, 9, 20)]
        assert len(slots) == 9
        assert slots[-1]["end"] == at(monday, 12)
        saturday = next_weekday(5)
        assert await clinic.slots(staff.schedule_id, saturday) == []

    async def test_slot_search_by_practitioner_chain(self, clinic: Clinic) -> None:
        staff = await clinic.practitioner()
        monday = next_weekday(0)
        response = await clinic.http.get(
            "/Slot",
            params={
                "schedule.actor": staff.ref,
                "status": "free",
                "start": [f"ge{monday}", f"lt{next_weekday(1)}"],
            },
        )
        assert response.status_code == 200
        assert response.json()["total"] == 9

    async def test_absence_removes_free_slots_and_keeps_booked_ones(self, clinic: Clinic) -> None:
        staff = await clinic.practitioner()
        monday = next_weekday(0)
        patient = await clinic.patient()
        booked = await book(
            clinic.http, appointment(clinic, staff, patient, at(monday, 9), at(monday, 9, 20))
        )
        assert booked.status_code == 201, booked.text
        role = {
            **staff.role,
            "notAvailable": [
                {
                    "description": "Conference",
                    "during": {"start": monday.isoformat(), "end": monday.isoformat()},
                }
            ],
        }
        updated = await clinic.http.put(f"/PractitionerRole/{staff.role_id}", json=role)
        assert updated.status_code == 200, updated.text
        left = await clinic.slots(staff.schedule_id, monday)
        assert [(s["start"], s["status"]) for s in left] == [(at(monday, 9), "busy")]
        tuesday = await clinic.slots(staff.schedule_id, next_weekday(1), "free")
        assert len(tuesday) == 9


class TestBooking:
    async def test_book_marks_slots_busy_and_links_them(self, clinic: Clinic) -> None:
        staff = await clinic.practitioner()
        monday = next_weekday(0)
        patient = await clinic.patient()
        response = await book(
            clinic.http,
            appointment(clinic, staff, patient, at(monday, 9), at(monday, 9, 40), visit="new-patient"),
        )
        assert response.status_code == 201, response.text
        assert response.headers["location"].startswith(str(clinic.http.base_url))
        booked = response.json()
        # minutesDuration is the client's (R4: it may be less than end - start)
        assert booked["status"] == "booked" and "minutesDuration" not in booked
        assert len(booked["slot"]) == 2
        statuses = [(s["start"], s["status"]) for s in await clinic.slots(staff.schedule_id, monday)][:3]
        assert statuses == [(at(monday, 9), "busy"), (at(monday, 9, 20), "busy"), (at(monday, 9, 40), "free")]

    async def test_a_visit_late_in_a_long_slot_marks_that_slot_busy(self, clinic: Clinic) -> None:
        """Booking looks back by the Schedule's own slot length for slots that cover the visit."""
        staff = await clinic.practitioner(slot_minutes=60)
        tuesday = next_weekday(1)
        response = await book(
            clinic.http,
            appointment(clinic, staff, await clinic.patient(), at(tuesday, 9, 40), at(tuesday, 10)),
        )
        assert response.status_code == 201, response.text
        slots = await clinic.slots(staff.schedule_id, tuesday)
        assert [(s["start"], s["status"]) for s in slots][:2] == [
            (at(tuesday, 9), "busy"),
            (at(tuesday, 10), "free"),
        ]
        assert response.json()["slot"] == [{"reference": f"Slot/{slots[0]['id']}"}]

    async def test_double_booking_is_409_naming_who(self, clinic: Clinic) -> None:
        staff = await clinic.practitioner()
        monday = next_weekday(0)
        first, second = await clinic.patient(), await clinic.patient()
        assert (
            await book(clinic.http, appointment(clinic, staff, first, at(monday, 10), at(monday, 10, 20)))
        ).status_code == 201
        overlap = await clinic.http.post(
            "/Appointment", json=appointment(clinic, staff, second, at(monday, 10, 10), at(monday, 10, 30))
        )
        assert overlap.status_code == 409
        assert overlap.json()["resourceType"] == "OperationOutcome"
        assert staff.ref in overlap.json()["issue"][0]["diagnostics"]
        back_to_back = await book(
            clinic.http, appointment(clinic, staff, second, at(monday, 10, 20), at(monday, 10, 40))
        )
        assert back_to_back.status_code == 201

    async def test_the_patient_cannot_be_in_two_places(self, clinic: Clinic) -> None:
        one, two = await clinic.practitioner(), await clinic.practitioner()
        monday = next_weekday(0)
        patient = await clinic.patient()
        assert (
            await book(clinic.http, appointment(clinic, one, patient, at(monday, 11), at(monday, 11, 20)))
        ).status_code == 201
        clash = await book(clinic.http, appointment(clinic, two, patient, at(monday, 11), at(monday, 11, 20)))
        assert clash.status_code == 409
        assert f"Patient/{patient}" in clash.json()["issue"][0]["diagnostics"]

    async def test_fifty_concurrent_bookings_of_one_slot_one_wins(
        self, clinic: Clinic, server_url: str
    ) -> None:
        staff = await clinic.practitioner()
        tuesday = next_weekday(1)
        patients = await asyncio.gather(*(clinic.patient(f"Race{i}") for i in range(50)))

        async def attempt(patient: str) -> int:
            async with fhir_client(server_url) as http:
                body = appointment(clinic, staff, patient, at(tuesday, 9), at(tuesday, 9, 20))
                return (await book(http, body)).status_code

        codes = await asyncio.gather(*(attempt(p) for p in patients))
        assert sorted(codes) == [201] + [409] * 49
        booked = await clinic.http.get(
            "/Appointment", params={"practitioner": staff.ref, "date": f"ge{tuesday}"}
        )
        assert booked.json()["total"] == 1

    async def test_multi_resource_booking_fails_together(self, clinic: Clinic) -> None:
        one, two = await clinic.practitioner(), await clinic.practitioner()
        room, room_schedule = await clinic.room()
        device = (
            await clinic.create(
                {"resourceType": "Device", "deviceName": [{"name": "ECG", "type": "user-friendly-name"}]}
            )
        )["id"]
        wednesday = next_weekday(2)
        first = appointment(
            clinic,
            one,
            await clinic.patient(),
            at(wednesday, 9),
            at(wednesday, 9, 20),
            extra=(f"Location/{room}", f"Device/{device}"),
        )
        created = await book(clinic.http, first)
        assert created.status_code == 201, created.text
        room_slots = [s for s in await clinic.slots(room_schedule, wednesday) if s["status"] == "busy"]
        assert [s["start"] for s in room_slots] == [at(wednesday, 9), at(wednesday, 9, 10)]
        # Another doctor, same room: refused as a whole, the doctor's own slot stays free.
        second = appointment(
            clinic,
            two,
            await clinic.patient(),
            at(wednesday, 9),
            at(wednesday, 9, 20),
            extra=(f"Location/{room}",),
        )
        refused = await book(clinic.http, second)
        assert refused.status_code == 409
        assert f"Location/{room}" in refused.json()["issue"][0]["diagnostics"]
        assert (await clinic.slots(two.schedule_id, wednesday))[0]["status"] == "free"


class TestLifeCycle:
    async def _booked(self, clinic: Clinic, hour: int = 9) -> tuple[dict, str]:  # type: ignore[type-arg]
        staff = await clinic.practitioner()
        thursday = next_weekday(3)
        response = await book(
            clinic.http,
            appointment(clinic, staff, await clinic.patient(), at(thursday, hour), at(thursday, hour, 20)),
        )
        assert response.status_code == 201, response.text
        return response.json(), staff.schedule_id

    async def test_cancel_needs_a_reason_then_frees_the_slot(self, clinic: Clinic) -> None:
        booked, schedule = await self._booked(clinic)
        no_reason = await clinic.http.put(
            f"/Appointment/{booked['id']}", json={**booked, "status": "cancelled"}
        )
        assert no_reason.status_code == 422
        assert "cancelationReason" in no_reason.json()["issue"][0]["diagnostics"]
        cancelled = await clinic.http.put(
            f"/Appointment/{booked['id']}",
            json={**booked, "status": "cancelled", "cancelationReason": {"text": "Patient is travelling"}},
        )
        assert cancelled.status_code == 200, cancelled.text
        assert "slot" not in cancelled.json()
        thursday = next_weekday(3)
        assert (await clinic.slots(schedule, thursday))[0]["status"] == "free"
        history = await clinic.http.get(f"/Appointment/{booked['id']}/_history")
        assert [e["resource"]["status"] for e in history.json()["entry"]] == ["cancelled", "booked"]

    async def test_invalid_transitions_are_422(self, clinic: Clinic) -> None:
        booked, _ = await self._booked(clinic, hour=10)
        url = f"/Appointment/{booked['id']}"
        reason = {"cancelationReason": {"text": "duplicate"}}
        assert (
            await clinic.http.put(url, json={**booked, "status": "cancelled", **reason})
        ).status_code == 200
        current = (await clinic.http.get(url)).json()
        again = await clinic.http.put(url, json={**current, "status": "booked"})
        assert again.status_code == 422
        assert "cannot go from 'cancelled' to 'booked'" in again.json()["issue"][0]["diagnostics"]

    async def test_arrived_then_fulfilled_by_patch(self, clinic: Clinic) -> None:
        booked, _ = await self._booked(clinic, hour=11)
        url = f"/Appointment/{booked['id']}"
        for status in ("arrived", "fulfilled"):
            patched = await clinic.http.patch(
                url,
                json=[{"op": "replace", "path": "/status", "value": status}],
                headers={"Content-Type": "application/json-patch+json"},
            )
            assert patched.status_code == 200, patched.text
        back = await clinic.http.patch(
            url,
            json=[{"op": "replace", "path": "/status", "value": "booked"}],
            headers={"Content-Type": "application/json-patch+json"},
        )
        assert back.status_code == 422

    async def test_reschedule_moves_the_busy_slots(self, clinic: Clinic) -> None:
        booked, schedule = await self._booked(clinic)
        thursday = next_weekday(3)
        moved = await clinic.http.put(
            f"/Appointment/{booked['id']}",
            json={**booked, "start": at(thursday, 11), "end": at(thursday, 11, 20)},
        )
        assert moved.status_code == 200, moved.text
        busy = [s["start"] for s in await clinic.slots(schedule, thursday, "busy")]
        assert busy == [at(thursday, 11)]
        assert (await clinic.http.get(f"/Appointment/{booked['id']}/_history/1")).json()["start"] == at(
            thursday, 9
        )

    async def test_booked_without_times_is_422(self, clinic: Clinic) -> None:
        staff = await clinic.practitioner()
        body = appointment(clinic, staff, await clinic.patient(), "", "")
        del body["start"], body["end"]
        response = await clinic.http.post("/Appointment", json=body)
        assert response.status_code == 422
        assert "app-3" in response.json()["issue"][0]["diagnostics"]

    async def test_a_failed_transaction_leaves_no_booking(self, clinic: Clinic) -> None:
        staff = await clinic.practitioner()
        friday = next_weekday(4)
        patient = await clinic.patient()
        bundle = {
            "resourceType": "Bundle",
            "type": "transaction",
            "entry": [
                {
                    "resource": appointment(clinic, staff, patient, at(friday, 9), at(friday, 9, 20)),
                    "request": {"method": "POST", "url": "Appointment"},
                },
                {
                    "resource": appointment(clinic, staff, patient, at(friday, 9, 10), at(friday, 9, 30)),
                    "request": {"method": "POST", "url": "Appointment"},
                },
            ],
        }
        response = await clinic.http.post("", json=bundle)
        assert response.status_code == 409
        assert (await clinic.slots(staff.schedule_id, friday))[0]["status"] == "free"
        retry = await book(clinic.http, appointment(clinic, staff, patient, at(friday, 9), at(friday, 9, 20)))
        assert retry.status_code == 201
