"""Building the patients and appointments the reminder tests need, through the FHIR API."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx

from pms.domains.reminders.patients import OPT_OUT_URL


def instant(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


async def create(client: httpx.AsyncClient, resource: dict[str, Any]) -> dict[str, Any]:
    response = await client.post(f"/{resource['resourceType']}", json=resource)
    assert response.status_code == 201, response.text
    created: dict[str, Any] = response.json()
    return created


async def patient(
    client: httpx.AsyncClient,
    *,
    language: str | None = "en",
    email: bool = True,
    mobile: bool = True,
    opted_out: bool = False,
    family: str = "Chalmers",
) -> dict[str, Any]:
    """A patient with a unique email and mobile number (tests share the SMTP and SMS stand-ins)."""
    tag = uuid.uuid4().hex[:10]
    telecom = []
    if email:
        telecom.append({"system": "email", "value": f"p{tag}@example.test"})
    if mobile:
        telecom.append({"system": "phone", "use": "mobile", "value": f"+1555{int(tag, 16) % 10**7:07d}"})
    telecom.append({"system": "phone", "use": "home", "value": "+15559999999"})  # a landline: never texted
    body: dict[str, Any] = {
        "resourceType": "Patient",
        "name": [{"family": family, "given": ["Peter"]}],
        "telecom": telecom,
    }
    if language:
        body["communication"] = [
            {"language": {"coding": [{"system": "urn:ietf:bcp:47", "code": language}]}, "preferred": True}
        ]
    if opted_out:
        body["extension"] = [{"url": OPT_OUT_URL, "valueBoolean": True}]
    return await create(client, body)


def email_of(patient_: dict[str, Any]) -> str:
    return next(t["value"] for t in patient_["telecom"] if t["system"] == "email")


def mobile_of(patient_: dict[str, Any]) -> str:
    return next(t["value"] for t in patient_["telecom"] if t.get("use") == "mobile")


async def appointment(
    client: httpx.AsyncClient, patient_: dict[str, Any], *, start: datetime, status: str = "booked"
) -> dict[str, Any]:
    return await create(
        client,
        {
            "resourceType": "Appointment",
            "status": status,
            "start": instant(start),
            "end": instant(start + timedelta(minutes=20)),
            "participant": [
                {"actor": {"reference": f"Patient/{patient_['id']}"}, "status": "needs-action"},
                {
                    # One practitioner per appointment: the scheduling rules refuse double bookings.
                    "actor": {"reference": f"Practitioner/lee-{uuid.uuid4().hex[:8]}", "display": "Dr. Lee"},
                    "status": "accepted",
                },
            ],
        },
    )


async def communications(client: httpx.AsyncClient, appointment: dict[str, Any]) -> list[dict[str, Any]]:
    """The Communications about this appointment (R4 defines no `about` search parameter: by subject)."""
    subject = next(
        p["actor"]["reference"] for p in appointment["participant"] if "Patient/" in p["actor"]["reference"]
    )
    response = await client.get("/Communication", params={"subject": subject, "_count": "100"})
    assert response.status_code == 200, response.text
    found = [e["resource"] for e in response.json().get("entry", []) if e["search"]["mode"] == "match"]
    about = f"Appointment/{appointment['id']}"
    return [c for c in found if any(a["reference"] == about for a in c.get("about", []))]
