"""Create, read, vread, update, patch and delete over HTTP (http://hl7.org/fhir/R4/http.html)."""

from __future__ import annotations

import uuid
from typing import Any

import httpx
import pytest

FHIR_JSON = "application/fhir+json"


def patient(**extra: Any) -> dict[str, Any]:
    return {"resourceType": "Patient", "name": [{"family": "Chalmers", "given": ["Peter"]}], **extra}


async def create(client: httpx.AsyncClient, body: dict[str, Any]) -> dict[str, Any]:
    response = await client.post(f"/{body['resourceType']}", json=body)
    assert response.status_code == 201, response.text
    result: dict[str, Any] = response.json()
    return result


class TestCreate:
    async def test_assigns_id_and_meta_and_sets_headers(self, client: httpx.AsyncClient) -> None:
        response = await client.post("/Patient", json=patient(id="client-chosen"))
        assert response.status_code == 201
        body = response.json()
        assert body["id"] != "client-chosen"  # http.html#create: a body id is ignored
        assert body["meta"]["versionId"] == "1"
        assert body["meta"]["lastUpdated"].endswith("+00:00")
        assert response.headers["etag"] == 'W/"1"'
        assert response.headers["location"].endswith(f"/fhir/Patient/{body['id']}/_history/1")
        assert response.headers["last-modified"].endswith("GMT")
        assert response.headers["content-type"].startswith(FHIR_JSON)

    async def test_prefer_minimal_returns_no_body(self, client: httpx.AsyncClient) -> None:
        response = await client.post("/Patient", json=patient(), headers={"Prefer": "return=minimal"})
        assert response.status_code == 201
        assert response.content == b""
        assert response.headers["location"]

    async def test_prefer_operation_outcome(self, client: httpx.AsyncClient) -> None:
        response = await client.post(
            "/Patient", json=patient(), headers={"Prefer": "return=OperationOutcome"}
        )
        assert response.status_code == 201
        assert response.json()["resourceType"] == "OperationOutcome"

    async def test_decimal_precision_is_kept(self, client: httpx.AsyncClient) -> None:
        body = {
            "resourceType": "Observation",
            "status": "final",
            "code": {"text": "weight"},
            "valueQuantity": {"value": 72.50, "unit": "kg"},
        }
        raw = (
            b'{"resourceType":"Observation","status":"final","code":{"text":"weight"},'
            b'"valueQuantity":{"value":72.50,"unit":"kg"}}'
        )
        created = await client.post("/Observation", content=raw, headers={"Content-Type": FHIR_JSON})
        assert created.status_code == 201, created.text
        read = await client.get(f"/Observation/{created.json()['id']}")
        assert b"72.50" in read.content
        assert body["valueQuantity"]["value"] == 72.5


class TestRead:
    async def test_read_and_vread(self, client: httpx.AsyncClient) -> None:
        created = await create(client, patient(gender="female"))
        read = await client.get(f"/Patient/{created['id']}")
        assert read.status_code == 200
        assert read.json()["gender"] == "female"
        assert read.headers["etag"] == 'W/"1"'
        vread = await client.get(f"/Patient/{created['id']}/_history/1")
        assert vread.status_code == 200 and vread.json()["id"] == created["id"]

    async def test_unknown_id_is_404_operation_outcome(self, client: httpx.AsyncClient) -> None:
        response = await client.get(f"/Patient/{uuid.uuid4()}")
        assert response.status_code == 404
        assert response.json()["resourceType"] == "OperationOutcome"
        assert response.json()["issue"][0]["code"] == "not-found"

    async def test_unknown_version_is_404(self, client: httpx.AsyncClient) -> None:
        created = await create(client, patient())
        assert (await client.get(f"/Patient/{created['id']}/_history/7")).status_code == 404
        assert (await client.get(f"/Patient/{created['id']}/_history/x")).status_code == 400

    async def test_unknown_type_is_404(self, client: httpx.AsyncClient) -> None:
        response = await client.get("/Patients/1")
        assert response.status_code == 404
        assert "Patients" in response.json()["issue"][0]["diagnostics"]

    async def test_invalid_id_syntax_is_400(self, client: httpx.AsyncClient) -> None:
        response = await client.get("/Patient/" + "x" * 65)
        assert response.status_code == 400

    @pytest.mark.parametrize(
        ("path", "status"),
        [
            ("/Patient/a_b", 400),  # not an id: past the read routes for well-formed ids, still answered
            ("/Patient/a$b", 400),
            ("/patient/1", 404),  # not a type
            ("/Patient/1/_history/x", 400),  # not a version
            ("/Patients/1/_history/1", 404),
        ],
    )
    async def test_malformed_reads_are_outcomes(
        self, client: httpx.AsyncClient, path: str, status: int
    ) -> None:
        response = await client.get(path)
        assert response.status_code == status
        assert response.json()["resourceType"] == "OperationOutcome"

    async def test_conditional_read_if_none_match(self, client: httpx.AsyncClient) -> None:
        created = await create(client, patient())
        unchanged = await client.get(f"/Patient/{created['id']}", headers={"If-None-Match": 'W/"1"'})
        assert unchanged.status_code == 304
        changed = await client.get(f"/Patient/{created['id']}", headers={"If-None-Match": 'W/"0"'})
        assert changed.status_code == 200

    async def test_conditional_read_if_modified_since(self, client: httpx.AsyncClient) -> None:
        created = await create(client, patient())
        later = await client.get(
            f"/Patient/{created['id']}", headers={"If-Modified-Since": "Fri, 01 Jan 2100 00:00:00 GMT"}
        )
        assert later.status_code == 304
        earlier = await client.get(
            f"/Patient/{created['id']}", headers={"If-Modified-Since": "Mon, 01 Jan 2001 00:00:00 GMT"}
        )
        assert earlier.status_code == 200

    async def test_summary_and_elements(self, client: httpx.AsyncClient) -> None:
        created = await create(
            client,
            patient(
                gender="male",
                photo=[{"contentType": "image/png"}],
                text={"status": "generated", "div": '<div xmlns="http://www.w3.org/1999/xhtml">x</div>'},
            ),
        )
        summary = (await client.get(f"/Patient/{created['id']}", params={"_summary": "true"})).json()
        assert "photo" not in summary and "text" not in summary and summary["gender"] == "male"
        assert any(t["code"] == "SUBSETTED" for t in summary["meta"]["tag"])
        data = (await client.get(f"/Patient/{created['id']}", params={"_summary": "data"})).json()
        assert "text" not in data and "photo" in data
        elements = (await client.get(f"/Patient/{created['id']}", params={"_elements": "gender"})).json()
        assert set(elements) == {"resourceType", "id", "meta", "gender"}
        bad = await client.get(f"/Patient/{created['id']}", params={"_summary": "maybe"})
        assert bad.status_code == 400

    async def test_pretty(self, client: httpx.AsyncClient) -> None:
        created = await create(client, patient())
        pretty = await client.get(f"/Patient/{created['id']}", params={"_pretty": "true"})
        assert b"\n  " in pretty.content


class TestUpdate:
    async def test_update_increments_version(self, client: httpx.AsyncClient) -> None:
        created = await create(client, patient())
        created["gender"] = "other"
        updated = await client.put(f"/Patient/{created['id']}", json=created)
        assert updated.status_code == 200
        assert updated.json()["meta"]["versionId"] == "2"
        assert updated.headers["etag"] == 'W/"2"'
        assert (await client.get(f"/Patient/{created['id']}/_history/1")).json().get("gender") is None

    async def test_update_as_create_with_client_id(self, client: httpx.AsyncClient) -> None:
        new_id = f"mrn-{uuid.uuid4().hex[:10]}"
        response = await client.put(f"/Patient/{new_id}", json=patient(id=new_id))
        assert response.status_code == 201
        assert response.json()["id"] == new_id

    async def test_body_id_must_match_url(self, client: httpx.AsyncClient) -> None:
        response = await client.put("/Patient/abc", json=patient(id="xyz"))
        assert response.status_code == 400
        assert response.json()["issue"][0]["expression"] == ["Patient.id"]
        missing = await client.put("/Patient/abc", json=patient())
        assert missing.status_code == 400

    async def test_body_type_must_match_url(self, client: httpx.AsyncClient) -> None:
        response = await client.put("/Observation/abc", json=patient(id="abc"))
        assert response.status_code == 400
        assert "Observation" in response.json()["issue"][0]["diagnostics"]

    async def test_if_match(self, client: httpx.AsyncClient) -> None:
        created = await create(client, patient())
        ok = await client.put(f"/Patient/{created['id']}", json=created, headers={"If-Match": 'W/"1"'})
        assert ok.status_code == 200
        stale = await client.put(f"/Patient/{created['id']}", json=created, headers={"If-Match": 'W/"1"'})
        assert stale.status_code == 412
        assert stale.json()["resourceType"] == "OperationOutcome"
        garbage = await client.put(f"/Patient/{created['id']}", json=created, headers={"If-Match": "soon"})
        assert garbage.status_code == 400


class TestPatch:
    async def test_json_patch(self, client: httpx.AsyncClient) -> None:
        created = await create(client, patient())
        response = await client.patch(
            f"/Patient/{created['id']}",
            content=b'[{"op":"add","path":"/birthDate","value":"1974-12-25"}]',
            headers={"Content-Type": "application/json-patch+json"},
        )
        assert response.status_code == 200, response.text
        assert response.json()["birthDate"] == "1974-12-25"
        assert response.json()["meta"]["versionId"] == "2"
        history = (await client.get(f"/Patient/{created['id']}/_history")).json()
        assert history["entry"][0]["request"]["method"] == "PATCH"

    async def test_failing_test_op_is_422(self, client: httpx.AsyncClient) -> None:
        created = await create(client, patient())
        response = await client.patch(
            f"/Patient/{created['id']}",
            content=b'[{"op":"test","path":"/gender","value":"male"}]',
            headers={"Content-Type": "application/json-patch+json"},
        )
        assert response.status_code == 422

    async def test_patch_producing_invalid_resource_is_rejected(self, client: httpx.AsyncClient) -> None:
        created = await create(client, patient())
        response = await client.patch(
            f"/Patient/{created['id']}",
            content=b'[{"op":"add","path":"/gender","value":"male2"}]',
            headers={"Content-Type": "application/json-patch+json"},
        )
        assert response.status_code == 400
        assert (await client.get(f"/Patient/{created['id']}")).json()["meta"]["versionId"] == "1"

    async def test_patch_needs_json_patch_media_type(self, client: httpx.AsyncClient) -> None:
        created = await create(client, patient())
        response = await client.patch(f"/Patient/{created['id']}", json=[{"op": "remove", "path": "/name"}])
        assert response.status_code == 415

    async def test_patch_with_if_match(self, client: httpx.AsyncClient) -> None:
        created = await create(client, patient())
        response = await client.patch(
            f"/Patient/{created['id']}",
            content=b'[{"op":"remove","path":"/name"}]',
            headers={"Content-Type": "application/json-patch+json", "If-Match": 'W/"9"'},
        )
        assert response.status_code == 412


class TestDelete:
    async def test_delete_then_gone_then_revive(self, client: httpx.AsyncClient) -> None:
        created = await create(client, patient())
        deleted = await client.delete(f"/Patient/{created['id']}")
        assert deleted.status_code == 200
        assert deleted.headers["etag"] == 'W/"2"'
        gone = await client.get(f"/Patient/{created['id']}")
        assert gone.status_code == 410
        history = (await client.get(f"/Patient/{created['id']}/_history")).json()
        assert [e["request"]["method"] for e in history["entry"]] == ["DELETE", "POST"]
        assert "resource" not in history["entry"][0]
        assert history["entry"][0]["response"]["status"] == "410 Gone"
        revived = await client.put(f"/Patient/{created['id']}", json=created)
        assert revived.status_code == 201
        assert revived.json()["meta"]["versionId"] == "3"
        assert (await client.get(f"/Patient/{created['id']}")).status_code == 200

    async def test_vread_of_deleted_version_is_410(self, client: httpx.AsyncClient) -> None:
        created = await create(client, patient())
        await client.delete(f"/Patient/{created['id']}")
        assert (await client.get(f"/Patient/{created['id']}/_history/2")).status_code == 410
        assert (await client.get(f"/Patient/{created['id']}/_history/1")).status_code == 200

    async def test_delete_unknown_or_twice_is_harmless(self, client: httpx.AsyncClient) -> None:
        assert (await client.delete(f"/Patient/{uuid.uuid4()}")).status_code == 200
        created = await create(client, patient())
        assert (await client.delete(f"/Patient/{created['id']}")).status_code == 200
        again = await client.delete(f"/Patient/{created['id']}")
        assert again.status_code == 200
        history = (await client.get(f"/Patient/{created['id']}/_history")).json()
        assert len(history["entry"]) == 2

    async def test_delete_if_match(self, client: httpx.AsyncClient) -> None:
        created = await create(client, patient())
        stale = await client.delete(f"/Patient/{created['id']}", headers={"If-Match": 'W/"5"'})
        assert stale.status_code == 412
        assert (await client.get(f"/Patient/{created['id']}")).status_code == 200


class TestHead:
    async def test_head_read_has_headers_and_no_body(self, client: httpx.AsyncClient) -> None:
        created = await create(client, patient())
        response = await client.head(f"/Patient/{created['id']}")
        assert response.status_code == 200
        assert response.headers["etag"] == 'W/"1"'
        assert response.content == b""
        assert (await client.head(f"/Patient/{uuid.uuid4()}")).status_code == 404


class TestNotCached:
    """Answers carry PHI and change under the client: nothing may keep them (api/caching.py). Without
    Cache-Control, a browser reuses a response with Last-Modified for a tenth of its age (RFC 9111
    §4.2.2), and the staff app re-read a Patient it had just updated at its old version."""

    async def test_reads_searches_writes_and_errors_say_no_store(self, client: httpx.AsyncClient) -> None:
        created = await client.post("/Patient", json=patient())
        rid = created.json()["id"]
        answers = [
            created,
            await client.get(f"/Patient/{rid}"),
            await client.get(f"/Patient/{rid}/_history/1"),
            await client.get("/Patient", params={"family": "Chalmers"}),
            await client.put(f"/Patient/{rid}", json=patient(id=rid)),
            await client.get(f"/Patient/{uuid.uuid4()}"),
            await client.get("/Patient", params={"birthdate": "not-a-date"}),
        ]
        assert [a.status_code for a in answers] == [201, 200, 200, 200, 200, 404, 400]
        assert {a.headers.get("cache-control") for a in answers} == {"no-store"}
