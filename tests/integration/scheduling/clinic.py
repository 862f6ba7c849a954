"""A small clinic for the scheduling tests: visit types, practitioners with working hours and Schedules,
a room, a device and patients, all created through the public FHIR API."""

from __future__ import annotations

import uuid
from datetime import UTC, date, datetime, time, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import httpx

ZONE = ZoneInfo("America/New_York")  # tests/conftest.py sets the server's clinic zone to this
SYSTEM = "https://pms.example.org/fhir/CodeSystem/visit-type"
EXT = "https://pms.example.org/fhir/StructureDefinition"


def next_weekday(weekday: int = 0, *, weeks_ahead: int = 1) -> date:
    """A date of the given weekday (0 = Monday) at least a few days from now, inside the slot horizon."""
    today = datetime.now(ZONE).date()
    days = (weekday - today.weekday()) % 7 or 7
    return today + timedelta(days=days + 7 * (weeks_ahead - 1))


def at(day: date, hour: int, minute: int = 0) -> str:
    """A local wall-clock time as a UTC FHIR instant."""
    local = datetime.combine(day, time(hour, minute), tzinfo=ZONE)
    return local.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def visit_type(code: str, minutes: int, *, online: bool = True, telehealth: bool = False) -> dict[str, Any]:
    extension: list[dict[str, Any]] = [
        {
            "url": f"{EXT}/visit-duration",
            "valueDuration": {
                "value": minutes,
                "unit": "min",
                "system": "http://unitsofmeasure.org",
                "code": "min",
            },
        },
        {"url": f"{EXT}/online-booking", "valueBoolean": online},
    ]
    if telehealth:
        extension.append({"url": f"{EXT}/telehealth", "valueBoolean": True})
    return {
        "resourceType": "HealthcareService",
        "active": True,
        "name": code,
        "type": [{"coding": [{"system": SYSTEM, "code": code, "display": code}]}],
        "extension": extension,
    }


MORNINGS = [
    {
        "daysOfWeek": ["mon", "tue", "wed", "thu", "fri"],
        "availableStartTime": "09:00:00",
        "availableEndTime": "12:00:00",
    }
]


class Clinic:
    def __init__(self, http: httpx.AsyncClient) -> None:
        self.http = http
        self.tag = uuid.uuid4().hex[:8]  # visit-type codes unique to this clinic: tests share a database
        self.services: dict[str, str] = {}

    async def create(self, resource: dict[str, Any]) -> dict[str, Any]:
        response = await self.http.post(f"/{resource['resourceType']}", json=resource)
        assert response.status_code == 201, response.text
        created: dict[str, Any] = response.json()
        return created

    def code(self, name: str) -> str:
        return f"{name}-{self.tag}"

    async def setup(self) -> Clinic:
        for name, minutes, online, video in (
            ("new-patient", 40, True, False),
            ("follow-up", 20, True, False),
            ("procedure", 20, False, False),
            ("video", 20, True, True),
        ):
            service = await self.create(visit_type(self.code(name), minutes, online=online, telehealth=video))
            self.services[name] = service["id"]
        return self

    async def practitioner(
        self,
        *,
        hours: list[dict[str, Any]] | None = None,
        absences: list[dict[str, Any]] | None = None,
        slot_minutes: int = 20,
    ) -> Staff:
        person = await self.create({"resourceType": "Practitioner", "name": [{"family": f"Doc{self.tag}"}]})
        role: dict[str, Any] = {
            "resourceType": "PractitionerRole",
            "active": True,
            "practitioner": {"reference": f"Practitioner/{person['id']}"},
            "healthcareService": [{"reference": f"HealthcareService/{s}"} for s in self.services.values()],
            "availableTime": hours or MORNINGS,
        }
        if absences:
            role["notAvailable"] = absences
        role = await self.create(role)
        schedule = await self.create(
            {
                "resourceType": "Schedule",
                "active": True,
                "actor": [
                    {"reference": f"PractitionerRole/{role['id']}"},
                    {"reference": f"Practitioner/{person['id']}"},
                ],
                "extension": [{"url": f"{EXT}/slot-minutes", "valuePositiveInt": slot_minutes}],
            }
        )
        return Staff(person["id"], role, schedule["id"])

    async def room(self) -> tuple[str, str]:
        room = await self.create(
            {
                "resourceType": "Location",
                "name": f"Room {self.tag}",
                "mode": "instance",
                "hoursOfOperation": [
                    {
                        "daysOfWeek": ["mon", "tue", "wed", "thu", "fri"],
                        "openingTime": "08:00:00",
                        "closingTime": "18:00:00",
                    }
                ],
            }
        )
        schedule = await self.create(
            {"resourceType": "Schedule", "actor": [{"reference": f"Location/{room['id']}"}]}
        )
        return room["id"], schedule["id"]

    async def patient(self, family: str = "Patient") -> str:
        return str(
            (await self.create({"resourceType": "Patient", "name": [{"family": f"{family}{self.tag}"}]}))[
                "id"
            ]
        )

    async def slots(self, schedule_id: str, day: date, status: str | None = None) -> list[dict[str, Any]]:
        params = {
            "schedule": f"Schedule/{schedule_id}",
            "start": [f"ge{day.isoformat()}", f"lt{(day + timedelta(days=1)).isoformat()}"],
            "_sort": "start",
            "_count": "200",
        }
        if status:
            params["status"] = status
        response = await self.http.get("/Slot", params=params)
        assert response.status_code == 200, response.text
        return [e["resource"] for e in response.json().get("entry", [])]


class Staff:
    def __init__(self, person_id: str, role: dict[str, Any], schedule_id: str) -> None:
        self.person_id = person_id
        self.role = role
        self.role_id = role["id"]
        self.schedule_id = schedule_id

    @property
    def ref(self) -> str:
        return f"Practitioner/{self.person_id}"


def appointment(
    clinic: Clinic,
    staff: Staff,
    patient: str,
    start: str,
    end: str,
    *,
    visit: str = "follow-up",
    status: str = "booked",
    extra: tuple[str, ...] = (),
) -> dict[str, Any]:
    return {
        "resourceType": "Appointment",
        "status": status,
        "serviceType": [{"coding": [{"system": SYSTEM, "code": clinic.code(visit)}]}],
        "start": start,
        "end": end,
        "participant": [
            {"actor": {"reference": staff.ref}, "status": "accepted"},
            {"actor": {"reference": f"Patient/{patient}"}, "status": "accepted"},
            *({"actor": {"reference": ref}, "status": "accepted"} for ref in extra),
        ],
    }
