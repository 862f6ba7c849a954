"""Access to the FHIR API is enforced in one place (issue: identity, access and audit).

Tokens here are signed with the server's own key, as the token endpoint would sign them, so these
tests exercise enforcement itself: missing or bad tokens (401), role limits, and the patient compartment
on read, search, _include, history and writes, including inside transactions.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
from tests.support import TokenMinter, fhir_client

from pms.core.db import Database


class World(TokenMinter):
    """Two patients with an Observation each, and a way to mint tokens for users of any role."""

    def __init__(self, server_url: str, database: Database) -> None:
        super().__init__(server_url, database)
        self.server_url = server_url

    async def setup(self) -> None:
        await super().setup()
        async with fhir_client(self.server_url) as admin:
            self.patients: dict[str, str] = {}
            self.observations: dict[str, str] = {}
            for name in ("a", "b"):
                patient = (
                    await admin.post(
                        "/Patient", json={"resourceType": "Patient", "name": [{"family": f"Access{name}"}]}
                    )
                ).json()
                self.patients[name] = patient["id"]
                observation = (await admin.post("/Observation", json=observation_of(patient["id"]))).json()
                self.observations[name] = observation["id"]


def observation_of(patient_id: str) -> dict[str, Any]:
    return {
        "resourceType": "Observation",
        "status": "final",
        "code": {"text": "weight"},
        "subject": {"reference": f"Patient/{patient_id}"},
    }


@pytest.fixture(scope="module")
async def world(server_url: str, settings: Any) -> AsyncIterator[World]:
    database = await Database.open(settings)
    try:
        created = World(server_url, database)
        await created.setup()
        yield created
    finally:
        await database.dispose()


class TestAuthentication:
    async def test_no_token_is_401_with_a_challenge(self, world: World) -> None:
        async with httpx.AsyncClient(base_url=world.base) as anonymous:
            response = await anonymous.get(f"/Patient/{world.patients['a']}")
        assert response.status_code == 401
        assert response.headers["www-authenticate"].startswith("Bearer")
        assert response.json()["resourceType"] == "OperationOutcome"

    @pytest.mark.parametrize("token", ["garbage", "a.b.c", "eyJhbGciOiJub25lIn0.eyJzdWIiOiJ4In0."])
    async def test_bad_tokens_are_401(self, world: World, token: str) -> None:
        async with world.http(token) as http:
            for path in (f"/Patient/{world.patients['a']}", "/Patient", "/Patient/_history"):
                assert (await http.get(path)).status_code == 401

    async def test_metadata_is_public(self, world: World) -> None:
        async with httpx.AsyncClient(base_url=world.base) as anonymous:
            assert (await anonymous.get("/metadata")).status_code == 200


class TestPatientCompartment:
    async def patient_a(self, world: World) -> httpx.AsyncClient:
        pid = world.patients["a"]
        token = await world.token(
            scope="patient/*.rs launch/patient", roles=["patient"], fhir_user=f"Patient/{pid}", patient=pid
        )
        return world.http(token)

    async def test_reads_own_data_not_others(self, world: World) -> None:
        async with await self.patient_a(world) as http:
            assert (await http.get(f"/Observation/{world.observations['a']}")).status_code == 200
            assert (await http.get(f"/Patient/{world.patients['a']}")).status_code == 200
            assert (await http.get(f"/Observation/{world.observations['b']}")).status_code == 403
            assert (await http.get(f"/Patient/{world.patients['b']}")).status_code == 403
            assert (await http.get(f"/Observation/{world.observations['b']}/_history/1")).status_code == 403

    async def test_search_is_filtered_to_the_compartment(self, world: World) -> None:
        async with await self.patient_a(world) as http:
            found = (await http.get("/Observation", params={"_count": 100, "_total": "accurate"})).json()
            ids = {e["resource"]["id"] for e in found.get("entry", [])}
            assert world.observations["a"] in ids and world.observations["b"] not in ids
            assert all(
                e["resource"]["subject"]["reference"] == f"Patient/{world.patients['a']}"
                for e in found.get("entry", [])
            )
            by_b = (
                await http.get("/Observation", params={"subject": f"Patient/{world.patients['b']}"})
            ).json()
            assert "entry" not in by_b and by_b.get("total", 0) == 0

    async def test_include_does_not_leak(self, world: World) -> None:
        async with fhir_client(world.server_url) as admin:
            # An observation of A's that names B as a performer-less "focus": includes must not fetch B.
            shared = observation_of(world.patients["a"]) | {
                "focus": [{"reference": f"Patient/{world.patients['b']}"}]
            }
            await admin.post("/Observation", json=shared)
        async with await self.patient_a(world) as http:
            found = (await http.get("/Observation", params={"_include": "Observation:focus"})).json()
            included = [
                e["resource"]["id"] for e in found.get("entry", []) if e["search"]["mode"] == "include"
            ]
            assert world.patients["b"] not in included

    async def test_cannot_write_into_another_compartment(self, world: World) -> None:
        pid = world.patients["a"]
        token = await world.token(
            scope="patient/*.cruds", roles=["patient"], fhir_user=f"Patient/{pid}", patient=pid
        )
        async with world.http(token) as http:
            other = await http.post("/Observation", json=observation_of(world.patients["b"]))
            assert other.status_code == 403
            bundle = {
                "resourceType": "Bundle",
                "type": "transaction",
                "entry": [
                    {
                        "resource": observation_of(world.patients["b"]),
                        "request": {"method": "POST", "url": "Observation"},
                    }
                ],
            }
            assert (await http.post("", json=bundle)).status_code == 403

    async def test_type_history_needs_unrestricted_access(self, world: World) -> None:
        async with await self.patient_a(world) as http:
            assert (await http.get("/Observation/_history")).status_code == 403


class TestRoles:
    async def test_receptionist_sees_demographics_not_clinical_data(self, world: World) -> None:
        token = await world.token(scope="user/*.cruds", roles=["receptionist"])
        async with world.http(token) as http:
            assert (await http.get(f"/Patient/{world.patients['a']}")).status_code == 200
            assert (await http.get(f"/Observation/{world.observations['a']}")).status_code == 403
            assert (await http.get("/Observation")).status_code == 403
            assert (await http.get("/Condition")).status_code == 403

    async def test_scopes_never_exceed_the_role(self, world: World) -> None:
        token = await world.token(scope="user/Patient.rs", roles=["physician"])
        async with world.http(token) as http:
            assert (await http.get(f"/Patient/{world.patients['a']}")).status_code == 200
            assert (await http.get(f"/Observation/{world.observations['a']}")).status_code == 403
            denied = await http.post("/Patient", json={"resourceType": "Patient"})
            assert denied.status_code == 403
            assert denied.json()["issue"][0]["code"] == "forbidden"
