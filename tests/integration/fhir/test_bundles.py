"""Batch and transaction Bundles (http://hl7.org/fhir/R4/http.html#transaction)."""

from __future__ import annotations

import base64
import uuid
from typing import Any

import httpx


def entry(method: str, url: str, resource: dict[str, Any] | None = None, **extra: Any) -> dict[str, Any]:
    out: dict[str, Any] = {"request": {"method": method, "url": url, **extra.pop("request", {})}, **extra}
    if resource is not None:
        out["resource"] = resource
    return out


def transaction(*entries: dict[str, Any], kind: str = "transaction") -> dict[str, Any]:
    return {"resourceType": "Bundle", "type": kind, "entry": list(entries)}


class TestTransaction:
    async def test_urn_uuid_references_are_rewritten_everywhere(self, client: httpx.AsyncClient) -> None:
        patient_urn = f"urn:uuid:{uuid.uuid4()}"
        observation = {
            "resourceType": "Observation",
            "status": "final",
            "code": {"text": "note"},
            "subject": {"reference": patient_urn},
            "extension": [{"url": "http://example.org/about", "valueReference": {"reference": patient_urn}}],
            "contained": [
                {
                    "resourceType": "Provenance",
                    "id": "p1",
                    "recorded": "2020-01-01T00:00:00Z",
                    "target": [{"reference": patient_urn}],
                    "agent": [{"who": {"reference": patient_urn}}],
                }
            ],
        }
        response = await client.post(
            "",
            json=transaction(
                entry("POST", "Observation", observation),
                entry("POST", "Patient", {"resourceType": "Patient", "active": True}, fullUrl=patient_urn),
            ),
            headers={"Prefer": "return=representation"},
        )
        assert response.status_code == 200, response.text
        result = response.json()
        assert result["type"] == "transaction-response"
        obs_entry, patient_entry = result["entry"]
        assert patient_entry["response"]["status"] == "201 Created"
        patient_ref = "Patient/" + patient_entry["resource"]["id"]
        stored = (
            await client.get("/" + obs_entry["response"]["location"].split("/fhir/")[1].split("/_history")[0])
        ).json()
        assert stored["subject"]["reference"] == patient_ref
        assert stored["extension"][0]["valueReference"]["reference"] == patient_ref
        assert stored["contained"][0]["target"][0]["reference"] == patient_ref

    async def test_all_or_nothing(self, client: httpx.AsyncClient) -> None:
        marker = f"tx-{uuid.uuid4().hex[:10]}"
        response = await client.post(
            "",
            json=transaction(
                entry("PUT", f"Patient/{marker}", {"resourceType": "Patient", "id": marker}),
                entry("POST", "Patient", {"resourceType": "Patient", "gender": "nonsense"}),
            ),
        )
        assert response.status_code == 400
        outcome = response.json()
        assert outcome["resourceType"] == "OperationOutcome"
        assert "Bundle.entry[1]" in outcome["issue"][0]["diagnostics"]
        assert (await client.get(f"/Patient/{marker}")).status_code == 404

    async def test_processing_order_delete_post_put_get(self, client: httpx.AsyncClient) -> None:
        keep, drop = f"o-{uuid.uuid4().hex[:10]}", f"o-{uuid.uuid4().hex[:10]}"
        for id_ in (keep, drop):
            await client.put(f"/Patient/{id_}", json={"resourceType": "Patient", "id": id_})
        response = await client.post(
            "",
            json=transaction(
                entry("GET", f"Patient/{keep}"),
                entry("PUT", f"Patient/{keep}", {"resourceType": "Patient", "id": keep, "active": False}),
                entry("DELETE", f"Patient/{drop}"),
            ),
        )
        assert response.status_code == 200, response.text
        read, put, delete = response.json()["entry"]
        assert read["resource"]["meta"]["versionId"] == "2"  # the GET ran after the PUT
        assert put["response"]["status"] == "200 OK"
        assert delete["response"]["status"] == "200 OK"
        assert (await client.get(f"/Patient/{drop}")).status_code == 410

    async def test_conditional_create_and_conditional_reference(self, client: httpx.AsyncClient) -> None:
        id_ = f"cr-{uuid.uuid4().hex[:10]}"
        await client.put(f"/Patient/{id_}", json={"resourceType": "Patient", "id": id_})
        response = await client.post(
            "",
            json=transaction(
                entry(
                    "POST",
                    "Patient",
                    {"resourceType": "Patient"},
                    fullUrl="urn:uuid:" + str(uuid.uuid4()),
                    request={"ifNoneExist": f"_id={id_}"},
                ),
                entry(
                    "POST",
                    "Observation",
                    {
                        "resourceType": "Observation",
                        "status": "final",
                        "code": {"text": "x"},
                        "subject": {"reference": f"Patient?_id={id_}"},
                    },
                ),
            ),
            headers={"Prefer": "return=representation"},
        )
        assert response.status_code == 200, response.text
        existing, observation = response.json()["entry"]
        assert existing["response"]["status"] == "200 OK"
        assert existing["resource"]["id"] == id_
        assert observation["resource"]["subject"]["reference"] == f"Patient/{id_}"

    async def test_conditional_reference_without_match_fails(self, client: httpx.AsyncClient) -> None:
        response = await client.post(
            "",
            json=transaction(
                entry(
                    "POST",
                    "Observation",
                    {
                        "resourceType": "Observation",
                        "status": "final",
                        "code": {"text": "x"},
                        "subject": {"reference": f"Patient?_id=nobody-{uuid.uuid4().hex}"},
                    },
                ),
            ),
        )
        assert response.status_code == 412

    async def test_patch_entry_with_binary(self, client: httpx.AsyncClient) -> None:
        id_ = f"pt-{uuid.uuid4().hex[:10]}"
        await client.put(f"/Patient/{id_}", json={"resourceType": "Patient", "id": id_})
        patch = base64.b64encode(b'[{"op":"add","path":"/active","value":true}]').decode()
        response = await client.post(
            "",
            json=transaction(
                entry(
                    "PATCH",
                    f"Patient/{id_}",
                    {"resourceType": "Binary", "contentType": "application/json-patch+json", "data": patch},
                ),
            ),
        )
        assert response.status_code == 200, response.text
        assert (await client.get(f"/Patient/{id_}")).json()["active"] is True

    async def test_put_with_urn_full_url_and_if_match(self, client: httpx.AsyncClient) -> None:
        id_ = f"im-{uuid.uuid4().hex[:10]}"
        await client.put(f"/Patient/{id_}", json={"resourceType": "Patient", "id": id_})
        response = await client.post(
            "",
            json=transaction(
                entry(
                    "PUT",
                    f"Patient/{id_}",
                    {"resourceType": "Patient", "id": id_},
                    request={"ifMatch": 'W/"3"'},
                ),
            ),
        )
        assert response.status_code == 412

    async def test_rejects_non_bundles_and_wrong_types(self, client: httpx.AsyncClient) -> None:
        assert (await client.post("", json={"resourceType": "Patient"})).status_code == 400
        assert (
            await client.post("", json={"resourceType": "Bundle", "type": "collection"})
        ).status_code == 400
        no_request = {
            "resourceType": "Bundle",
            "type": "transaction",
            "entry": [{"resource": {"resourceType": "Patient"}}],
        }
        assert (await client.post("", json=no_request)).status_code == 400


class TestBatch:
    async def test_entries_succeed_or_fail_independently(self, client: httpx.AsyncClient) -> None:
        good = f"b-{uuid.uuid4().hex[:10]}"
        response = await client.post(
            "",
            json=transaction(
                entry("PUT", f"Patient/{good}", {"resourceType": "Patient", "id": good}),
                entry("POST", "Patient", {"resourceType": "Patient", "gender": "nonsense"}),
                entry("GET", f"Patient/{uuid.uuid4()}"),
                entry("GET", f"Patient/{good}"),
                kind="batch",
            ),
        )
        assert response.status_code == 200, response.text
        result = response.json()
        assert result["type"] == "batch-response"
        statuses = [e["response"]["status"] for e in result["entry"]]
        assert statuses == ["201 Created", "400 Bad Request", "404 Not Found", "200 OK"]
        assert result["entry"][1]["response"]["outcome"]["resourceType"] == "OperationOutcome"
        assert result["entry"][3]["resource"]["id"] == good
        assert (await client.get(f"/Patient/{good}")).status_code == 200

    async def test_batch_search_entry(self, client: httpx.AsyncClient) -> None:
        good = f"bs-{uuid.uuid4().hex[:10]}"
        await client.put(f"/Patient/{good}", json={"resourceType": "Patient", "id": good})
        response = await client.post("", json=transaction(entry("GET", f"Patient?_id={good}"), kind="batch"))
        searchset = response.json()["entry"][0]["resource"]
        assert searchset["type"] == "searchset" and searchset["entry"][0]["resource"]["id"] == good
