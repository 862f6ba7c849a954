"""Bad input gets the right 4xx and an OperationOutcome, and writes nothing.

http://hl7.org/fhir/R4/http.html, operationoutcome.html
"""

from __future__ import annotations

import uuid

import httpx
import pytest

FHIR_JSON = {"Content-Type": "application/fhir+json"}


def assert_outcome(response: httpx.Response, status: int) -> dict:
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith("application/fhir+json")
    body = response.json()
    assert body["resourceType"] == "OperationOutcome"
    assert body["issue"][0]["severity"] in ("error", "fatal")
    assert body["issue"][0]["diagnostics"]
    return body


class TestMalformedBodies:
    @pytest.mark.parametrize(
        "raw", [b"{", b"[]", b'"Patient"', b"", b'{"resourceType": "Patient"} trailing', b"\xff\xfe"]
    )
    async def test_malformed_json_is_400(self, client: httpx.AsyncClient, raw: bytes) -> None:
        assert_outcome(await client.post("/Patient", content=raw, headers=FHIR_JSON), 400)

    async def test_missing_resource_type(self, client: httpx.AsyncClient) -> None:
        assert_outcome(await client.post("/Patient", json={"gender": "male"}), 400)

    async def test_unknown_resource_type_in_body(self, client: httpx.AsyncClient) -> None:
        body = assert_outcome(await client.post("/Patient", json={"resourceType": "Patientx"}), 400)
        assert "Patientx" in body["issue"][0]["diagnostics"]

    async def test_type_disagreeing_with_url(self, client: httpx.AsyncClient) -> None:
        assert_outcome(await client.post("/Observation", json={"resourceType": "Patient"}), 400)

    async def test_unknown_type_in_url(self, client: httpx.AsyncClient) -> None:
        assert_outcome(await client.post("/Spaceship", json={"resourceType": "Spaceship"}), 404)


class TestInvalidElements:
    @pytest.mark.parametrize(
        ("body", "expression"),
        [
            ({"resourceType": "Patient", "foo": 1}, "Patient.foo"),
            ({"resourceType": "Patient", "active": "yes"}, "Patient.active"),
            ({"resourceType": "Patient", "birthDate": "1974-13-01"}, "Patient.birthDate"),
            ({"resourceType": "Patient", "gender": "male2"}, "Patient.gender"),
            ({"resourceType": "Patient", "name": {"family": "x"}}, "Patient.name"),
            ({"resourceType": "Observation", "code": {"text": "x"}}, "Observation.status"),
        ],
    )
    async def test_invalid_element_points_at_it(
        self, client: httpx.AsyncClient, body: dict, expression: str
    ) -> None:
        outcome = assert_outcome(await client.post(f"/{body['resourceType']}", json=body), 400)
        expressions = [e for issue in outcome["issue"] for e in issue.get("expression", [])]
        assert any(e.startswith(expression) for e in expressions), outcome

    async def test_nothing_is_written(self, client: httpx.AsyncClient) -> None:
        marker = uuid.uuid4().hex
        await client.put(f"/Patient/{marker}", json={"resourceType": "Patient", "id": marker, "gender": "x"})
        assert (await client.get(f"/Patient/{marker}")).status_code == 404


class TestMediaTypes:
    async def test_unsupported_content_type_is_415(self, client: httpx.AsyncClient) -> None:
        response = await client.post(
            "/Patient", content=b"<Patient/>", headers={"Content-Type": "application/fhir+xml"}
        )
        assert_outcome(response, 415)
        assert_outcome(
            await client.post("/Patient", content=b"x", headers={"Content-Type": "text/plain"}), 415
        )

    async def test_xml_accept_is_406(self, client: httpx.AsyncClient) -> None:
        assert_outcome(await client.get("/metadata", headers={"Accept": "application/fhir+xml"}), 406)
        assert_outcome(await client.get("/metadata", params={"_format": "xml"}), 406)

    async def test_json_accepts(self, client: httpx.AsyncClient) -> None:
        for accept in ("application/fhir+json", "application/json", "*/*", "text/html, */*;q=0.8"):
            assert (await client.get("/metadata", headers={"Accept": accept})).status_code == 200
        assert (await client.get("/metadata", params={"_format": "json"})).status_code == 200

    async def test_oversized_body_is_413(self, client: httpx.AsyncClient) -> None:
        big = (
            b'{"resourceType":"Patient","text":{"status":"generated","div":"'
            + b"x" * (3 * 1024 * 1024)
            + b'"}}'
        )
        assert_outcome(await client.post("/Patient", content=big, headers=FHIR_JSON), 413)


class TestNoStackTraces:
    async def test_unknown_endpoint(self, client: httpx.AsyncClient) -> None:
        assert_outcome(await client.get("/Patient/1/2/3/4"), 404)

    async def test_method_not_allowed(self, client: httpx.AsyncClient) -> None:
        response = await client.request("PUT", "/metadata")
        assert response.status_code in (404, 405)
        assert response.json()["resourceType"] == "OperationOutcome"
