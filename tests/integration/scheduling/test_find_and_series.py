"""`$find` (bookable times across practitioners), recurring series, video visits, and slots across a DST
change (issue: scheduling)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import date, timedelta
from typing import Any

import pytest
from tests.integration.scheduling.clinic import EXT, Clinic, appointment, at, next_weekday
from tests.support import fhir_client


@pytest.fixture(scope="module")
async def clinic(server_url: str) -> AsyncIterator[Clinic]:
    async with fhir_client(server_url) as http:
        yield await Clinic(http).setup()


def find_params(visit: str, start: date, end: date, **more: Any) -> dict[str, Any]:
    parameters = [
        {"name": "visit-type", "valueString": visit},
        {"name": "start", "valueDateTime": start.isoformat()},
        {"name": "end", "valueDateTime": end.isoformat()},
    ]
    for name, value in more.items():
        key = {"practitioner": "valueReference", "patient": "valueReference", "_count": "valueInteger"}.get(
            name, "valueCode"
        )
        for item in value if isinstance(value, list) else [value]:
            parameters.append(
                {"name": name.replace("_of_", "-of-").replace("time_of_day", "time-of-day"), key: item}
            )
    return {"resourceType": "Parameters", "parameter": parameters}


class TestFind:
    async def test_options_are_consecutive_free_slots_earliest_first(self, clinic: Clinic) -> None:
        staff = await clinic.practitioner()
        monday = next_weekday(0, weeks_ahead=2)
        patient = await clinic.patient()
        # 09:20-09:40 taken: a 40-minute visit cannot start at 09:00 or 09:20.
        taken = await clinic.http.post(
            "/Appointment/$book",
            json=appointment(clinic, staff, patient, at(monday, 9, 20), at(monday, 9, 40)),
        )
        assert taken.status_code == 201
        body = find_params(
            clinic.code("new-patient"), monday, monday, practitioner=[{"reference": staff.ref}]
        )
        response = await clinic.http.post("/Appointment/$find", json=body)
        assert response.status_code == 200, response.text
        options = [e["resource"] for e in response.json()["entry"]]
        assert [o["start"] for o in options[:3]] == [at(monday, 9, 40), at(monday, 10), at(monday, 10, 20)]
        assert all(o["status"] == "proposed" and o["minutesDuration"] == 40 for o in options)
        assert len(options[0]["slot"]) == 2
        # What $find proposes, $book takes as is.
        proposal = options[0]
        proposal["participant"].append(
            {"actor": {"reference": f"Patient/{await clinic.patient()}"}, "status": "needs-action"}
        )
        booked = await clinic.http.post("/Appointment/$book", json=proposal)
        assert booked.status_code == 201, booked.text
        assert booked.json()["status"] == "booked"

    async def test_across_practitioners_with_time_of_day(self, clinic: Clinic) -> None:
        one = await clinic.practitioner()
        two = await clinic.practitioner(
            hours=[{"daysOfWeek": ["tue"], "availableStartTime": "13:00:00", "availableEndTime": "15:00:00"}]
        )
        tuesday = next_weekday(1, weeks_ahead=2)
        body = find_params(clinic.code("follow-up"), tuesday, tuesday, time_of_day="afternoon", _count=50)
        options = [
            e["resource"] for e in (await clinic.http.post("/Appointment/$find", json=body)).json()["entry"]
        ]
        refs = {p["actor"]["reference"] for o in options for p in o["participant"]}
        assert two.ref in refs and one.ref not in refs
        assert options[0]["start"] == at(tuesday, 13)

    async def test_skips_times_the_patient_is_busy(self, clinic: Clinic) -> None:
        one, two = await clinic.practitioner(), await clinic.practitioner()
        wednesday = next_weekday(2, weeks_ahead=2)
        patient = await clinic.patient()
        assert (
            await clinic.http.post(
                "/Appointment/$book",
                json=appointment(clinic, one, patient, at(wednesday, 9), at(wednesday, 9, 20)),
            )
        ).status_code == 201
        body = find_params(
            clinic.code("follow-up"),
            wednesday,
            wednesday,
            practitioner=[{"reference": two.ref}],
            patient={"reference": f"Patient/{patient}"},
        )
        options = [
            e["resource"] for e in (await clinic.http.post("/Appointment/$find", json=body)).json()["entry"]
        ]
        assert options[0]["start"] == at(wednesday, 9, 20)
        assert any(p["actor"]["reference"] == f"Patient/{patient}" for p in options[0]["participant"])

    async def test_unknown_visit_type_and_bad_input(self, clinic: Clinic) -> None:
        monday = next_weekday(0)
        unknown = await clinic.http.post(
            "/Appointment/$find", json=find_params("no-such-visit", monday, monday)
        )
        assert unknown.status_code == 422
        assert (
            await clinic.http.post("/Appointment/$find", json={"resourceType": "Patient"})
        ).status_code == 400
        backwards = find_params(clinic.code("follow-up"), monday, monday - timedelta(days=3))
        assert (await clinic.http.post("/Appointment/$find", json=backwards)).status_code == 400


def series(body: dict[str, Any], rule: str, *, available_only: bool = False) -> dict[str, Any]:
    return {
        "resourceType": "Parameters",
        "parameter": [
            {"name": "appointment", "resource": body},
            {"name": "recurrence", "valueString": rule},
            {"name": "book-available-only", "valueBoolean": available_only},
        ],
    }


class TestRecurring:
    async def test_weekly_series_all_or_nothing(self, clinic: Clinic) -> None:
        staff = await clinic.practitioner()
        thursday = next_weekday(3)
        patient, other = await clinic.patient(), await clinic.patient()
        third = thursday + timedelta(days=14)
        blocker = await clinic.http.post(
            "/Appointment/$book", json=appointment(clinic, staff, other, at(third, 9), at(third, 9, 20))
        )
        assert blocker.status_code == 201
        body = appointment(clinic, staff, patient, at(thursday, 9), at(thursday, 9, 20))
        refused = await clinic.http.post("/Appointment/$book", json=series(body, "FREQ=WEEKLY;COUNT=4"))
        assert refused.status_code == 409
        issues = refused.json()["issue"]
        assert len(issues) == 1 and issues[0]["diagnostics"].startswith(f"{third:%a %d %b %Y} 09:00-09:20: ")
        assert f"Doc{clinic.tag} ({staff.ref}) is already booked" in issues[0]["diagnostics"]
        mine = await clinic.http.get("/Appointment", params={"patient": f"Patient/{patient}"})
        assert mine.json()["total"] == 0

        partial = await clinic.http.post(
            "/Appointment/$book", json=series(body, "FREQ=WEEKLY;COUNT=4", available_only=True)
        )
        assert partial.status_code == 200, partial.text
        statuses = [e["response"]["status"] for e in partial.json()["entry"]]
        assert statuses == ["201 Created", "201 Created", "409 Conflict", "201 Created"]
        first = partial.json()["entry"][0]["resource"]
        series_id = next(i for i in first["identifier"] if i["system"].endswith("appointment-series"))
        linked = await clinic.http.get(
            "/Appointment", params={"identifier": f"{series_id['system']}|{series_id['value']}"}
        )
        assert linked.json()["total"] == 3
        assert first["comment"].endswith("(1 of 4)")

    async def test_unbounded_or_invalid_rules_are_refused(self, clinic: Clinic) -> None:
        staff = await clinic.practitioner()
        friday = next_weekday(4)
        body = appointment(clinic, staff, await clinic.patient(), at(friday, 9), at(friday, 9, 20))
        unbounded = await clinic.http.post("/Appointment/$book", json=series(body, "FREQ=DAILY"))
        assert unbounded.status_code == 422
        nonsense = await clinic.http.post("/Appointment/$book", json=series(body, "FREQ=SOMETIMES"))
        assert nonsense.status_code == 400


class TestVideoVisits:
    async def test_telehealth_visit_gets_a_link(self, clinic: Clinic) -> None:
        staff = await clinic.practitioner()
        friday = next_weekday(4)
        body = appointment(
            clinic, staff, await clinic.patient(), at(friday, 10), at(friday, 10, 20), visit="video"
        )
        booked = (await clinic.http.post("/Appointment/$book", json=body)).json()
        links = [e["valueUrl"] for e in booked.get("extension", []) if e["url"] == f"{EXT}/telehealth-url"]
        assert len(links) == 1 and booked["id"] in links[0] and links[0].startswith("https://")


class TestDaylightSaving:
    async def test_wall_clock_hours_hold_across_the_spring_change(self, clinic: Clinic) -> None:
        """America/New_York moves to UTC-4 on the second Sunday of March: 09:00 stays 09:00 local."""
        staff = await clinic.practitioner()
        year = next_weekday(0).year + 1
        march = date(year, 3, 1)
        change = march + timedelta(days=(6 - march.weekday()) % 7 + 7)  # second Sunday
        friday, monday = change - timedelta(days=2), change + timedelta(days=1)
        window = {
            "resourceType": "Parameters",
            "parameter": [
                {"name": "start", "valueDateTime": friday.isoformat()},
                {"name": "end", "valueDateTime": monday.isoformat()},
            ],
        }
        generated = await clinic.http.post(f"/Schedule/{staff.schedule_id}/$generate-slots", json=window)
        assert generated.status_code == 200, generated.text
        before = await clinic.slots(staff.schedule_id, friday)
        after = await clinic.slots(staff.schedule_id, monday)
        assert before[0]["start"] == f"{friday.isoformat()}T14:00:00Z"  # EST, UTC-5
        assert after[0]["start"] == f"{monday.isoformat()}T13:00:00Z"  # EDT, UTC-4
        assert len(before) == len(after) == 9


class TestFindAtScale:
    async def test_many_practitioners_offering_one_visit_type(self, server_url: str) -> None:
        """More roles than fit in one search parameter value (2,000 characters): searched in chunks."""
        async with fhir_client(server_url) as http:
            clinic = await Clinic(http).setup()
            mondays = [
                {"daysOfWeek": ["mon"], "availableStartTime": "09:00:00", "availableEndTime": "10:00:00"}
            ]
            staff = [await clinic.practitioner(hours=mondays) for _ in range(40)]
            monday = next_weekday(0, weeks_ahead=2)
            body = find_params(clinic.code("follow-up"), monday, monday, _count=100)
            response = await http.post("/Appointment/$find", json=body)
            assert response.status_code == 200, response.text
            found = {
                p["actor"]["reference"]
                for e in response.json()["entry"]
                for p in e["resource"]["participant"]
            }
            assert {s.ref for s in staff} <= found
