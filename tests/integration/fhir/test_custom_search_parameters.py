"""Custom SearchParameter resources become searchable after a reindex (search.html#custom)."""

from __future__ import annotations

import uuid

import httpx

from pms.core.db import Database
from pms.storage.reindex import reindex

EXTENSION = "http://example.org/fhir/StructureDefinition/mothers-maiden-name"


async def test_custom_parameter_applies_after_reindex(client: httpx.AsyncClient, database: Database) -> None:
    code = f"maiden-{uuid.uuid4().hex[:8]}"
    maiden = f"Lovelace{uuid.uuid4().hex[:6]}"
    patient = {"resourceType": "Patient", "extension": [{"url": EXTENSION, "valueString": maiden}]}
    created = (await client.post("/Patient", json=patient)).json()
    strict = {"Prefer": "handling=strict"}
    assert (await client.get("/Patient", params={code: maiden}, headers=strict)).status_code == 400

    definition = {
        "resourceType": "SearchParameter",
        "url": f"http://example.org/fhir/SearchParameter/{code}",
        "name": code,
        "status": "active",
        "description": "Mother's maiden name",
        "code": code,
        "base": ["Patient"],
        "type": "string",
        "expression": f"Patient.extension.where(url='{EXTENSION}').value",
    }
    assert (await client.post("/SearchParameter", json=definition)).status_code == 201
    # Not yet: definitions take effect with a reindex.
    assert (await client.get("/Patient", params={code: maiden}, headers=strict)).status_code == 400

    report = await reindex(database, resource_type="Patient")
    assert report.resources >= 1
    found = (await client.get("/Patient", params={code: maiden.lower()[:8]}, headers=strict)).json()
    assert [e["resource"]["id"] for e in found["entry"]] == [created["id"]]
    # New writes are indexed with the custom parameter too.
    again = (await client.post("/Patient", json=patient)).json()
    found = (await client.get("/Patient", params={code: maiden}, headers=strict)).json()
    assert {e["resource"]["id"] for e in found["entry"]} == {created["id"], again["id"]}
    capability = (await client.get("/metadata")).json()
    patient_params = next(r for r in capability["rest"][0]["resource"] if r["type"] == "Patient")[
        "searchParam"
    ]
    assert code in {p["name"] for p in patient_params}
