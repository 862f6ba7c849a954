"""Emergency access over HTTP (issue: identity, access and audit): a stated reason opens one patient's
record for a limited time, flagged in every AuditEvent, with an alert to the admins."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import pytest
from tests.support import TokenMinter, fhir_client

from pms.core.db import Database


def reason(text: str, minutes: int | None = None) -> dict[str, Any]:
    parameters: list[dict[str, Any]] = [{"name": "reason", "valueString": text}]
    if minutes is not None:
        parameters.append({"name": "minutes", "valueInteger": minutes})
    return {"resourceType": "Parameters", "parameter": parameters}


@pytest.fixture(scope="module")
async def world(server_url: str, settings: Any) -> AsyncIterator[tuple[TokenMinter, dict[str, str]]]:
    database = await Database.open(settings)
    try:
        minter = TokenMinter(server_url, database)
        await minter.setup()
        ids: dict[str, str] = {}
        async with fhir_client(server_url) as admin:
            for name in ("a", "b"):
                patient = (
                    await admin.post(
                        "/Patient", json={"resourceType": "Patient", "name": [{"family": f"Btg{name}"}]}
                    )
                ).json()
                ids[name] = patient["id"]
                observation = await admin.post(
                    "/Observation",
                    json={
                        "resourceType": "Observation",
                        "status": "final",
                        "code": {"text": "allergy check"},
                        "subject": {"reference": f"Patient/{patient['id']}"},
                    },
                )
                ids[f"obs-{name}"] = observation.json()["id"]
        yield minter, ids
    finally:
        await database.dispose()


class TestBreakGlass:
    async def test_reason_opens_one_record_flagged_and_alerts_admins(
        self, world: tuple[TokenMinter, dict[str, str]], server_url: str
    ) -> None:
        minter, ids = world
        token = await minter.token(scope="user/*.cruds", roles=["receptionist"])
        async with minter.http(token) as http:
            assert (await http.get(f"/Observation/{ids['obs-a']}")).status_code == 403
            too_short = await http.post(f"/Patient/{ids['a']}/$break-glass", json=reason("urgent"))
            assert too_short.status_code == 400
            granted = await http.post(
                f"/Patient/{ids['a']}/$break-glass", json=reason("Collapsed at the desk; need allergies", 30)
            )
            assert granted.status_code == 200, granted.text
            assert granted.json()["parameter"][1]["name"] == "expires"
            opened = await http.get(f"/Observation/{ids['obs-a']}")
            assert opened.status_code == 200
            assert (await http.get(f"/Observation/{ids['obs-b']}")).status_code == 403  # only that patient
        async with fhir_client(server_url) as admin:
            alerts = await admin.get(
                "/Communication",
                params={"category": "security-alert", "subject": f"Patient/{ids['a']}"},
                headers={"Prefer": "handling=strict"},
            )
            assert alerts.json()["total"] == 1
            assert (
                "Collapsed at the desk"
                in alerts.json()["entry"][0]["resource"]["payload"][0]["contentString"]
            )
            audit = await admin.get(
                "/AuditEvent", params={"entity": f"Observation/{ids['obs-a']}", "_sort": "-date"}
            )
            read = audit.json()["entry"][0]["resource"]
            purposes = [c["code"] for p in read.get("purposeOfEvent", []) for c in p["coding"]]
            assert "BTG" in purposes
            started = await admin.get(
                "/AuditEvent", params={"subtype": "110127", "entity": f"Patient/{ids['a']}"}
            )
            assert started.json()["total"] >= 1

    async def test_patients_and_unknown_patients_are_refused(
        self, world: tuple[TokenMinter, dict[str, str]]
    ) -> None:
        minter, ids = world
        portal = await minter.token(
            scope="patient/*.rs", roles=["patient"], fhir_user=f"Patient/{ids['b']}", patient=ids["b"]
        )
        async with minter.http(portal) as http:
            refused = await http.post(
                f"/Patient/{ids['a']}/$break-glass", json=reason("I want to see my neighbour")
            )
            assert refused.status_code == 403
        staff = await minter.token(scope="user/*.cruds", roles=["receptionist"])
        async with minter.http(staff) as http:
            missing = await http.post(
                "/Patient/no-such-patient/$break-glass", json=reason("Collapsed at the desk again")
            )
            assert missing.status_code == 404
