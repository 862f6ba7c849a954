"""History at instance, type and system level (http.html#history) and the basic search parameters."""

from __future__ import annotations

import asyncio
import uuid
from datetime import UTC, datetime

import httpx


async def versions_of(client: httpx.AsyncClient, n: int) -> str:
    id_ = f"h-{uuid.uuid4().hex[:12]}"
    for i in range(n):
        body = {"resourceType": "Patient", "id": id_, "birthDate": f"19{70 + i}-01-01"}
        assert (await client.put(f"/Patient/{id_}", json=body)).status_code in (200, 201)
    return id_


class TestInstanceHistory:
    async def test_newest_first_with_paging_links(self, client: httpx.AsyncClient) -> None:
        id_ = await versions_of(client, 5)
        page = (await client.get(f"/Patient/{id_}/_history", params={"_count": 2})).json()
        assert page["type"] == "history"
        assert [e["resource"]["meta"]["versionId"] for e in page["entry"]] == ["5", "4"]
        seen = []
        while True:
            seen += [e["resource"]["meta"]["versionId"] for e in page["entry"]]
            nxt = [link["url"] for link in page["link"] if link["relation"] == "next"]
            if not nxt:
                break
            page = (await client.get(nxt[0].split("/fhir", 1)[1])).json()
        assert seen == ["5", "4", "3", "2", "1"]

    async def test_entries_carry_request_and_response(self, client: httpx.AsyncClient) -> None:
        id_ = await versions_of(client, 2)
        entries = (await client.get(f"/Patient/{id_}/_history")).json()["entry"]
        assert entries[0]["request"] == {"method": "PUT", "url": f"Patient/{id_}"}
        assert entries[0]["response"]["etag"] == 'W/"2"'
        assert entries[1]["response"]["status"] == "201 Created"

    async def test_since(self, client: httpx.AsyncClient) -> None:
        id_ = await versions_of(client, 2)
        await asyncio.sleep(0.05)
        cut = datetime.now(UTC).isoformat()
        await client.put(f"/Patient/{id_}", json={"resourceType": "Patient", "id": id_, "active": True})
        entries = (await client.get(f"/Patient/{id_}/_history", params={"_since": cut})).json()["entry"]
        assert [e["resource"]["meta"]["versionId"] for e in entries] == ["3"]

    async def test_at(self, client: httpx.AsyncClient) -> None:
        id_ = await versions_of(client, 1)
        await asyncio.sleep(0.05)
        moment = datetime.now(UTC)
        await asyncio.sleep(0.05)
        await client.put(f"/Patient/{id_}", json={"resourceType": "Patient", "id": id_, "active": True})
        at = moment.isoformat(timespec="milliseconds")
        entries = (await client.get(f"/Patient/{id_}/_history", params={"_at": at})).json().get("entry", [])
        assert [e["resource"]["meta"]["versionId"] for e in entries] == ["1"]

    async def test_unknown_resource(self, client: httpx.AsyncClient) -> None:
        assert (await client.get(f"/Patient/{uuid.uuid4()}/_history")).status_code == 404

    async def test_bad_since(self, client: httpx.AsyncClient) -> None:
        assert (await client.get("/Patient/_history", params={"_since": "yesterday"})).status_code == 400


class TestTypeAndSystemHistory:
    async def test_type_history_only_has_that_type(self, client: httpx.AsyncClient) -> None:
        await versions_of(client, 1)
        entries = (await client.get("/Patient/_history", params={"_count": 50})).json()["entry"]
        assert entries and all(e["fullUrl"].split("/")[-2] == "Patient" for e in entries)

    async def test_system_history_has_newest_write_first(self, client: httpx.AsyncClient) -> None:
        id_ = await versions_of(client, 1)
        entries = (await client.get("/_history", params={"_count": 5})).json()["entry"]
        # Every write is followed by its AuditEvent; the newest other write is ours.
        first = next(e for e in entries if "/AuditEvent/" not in e["fullUrl"])
        assert first["fullUrl"].endswith(f"/Patient/{id_}")


class TestBasicSearch:
    async def test_by_id_with_or(self, client: httpx.AsyncClient) -> None:
        a, b = await versions_of(client, 1), await versions_of(client, 1)
        bundle = (await client.get("/Patient", params={"_id": f"{a},{b}", "_total": "accurate"})).json()
        assert bundle["type"] == "searchset" and bundle["total"] == 2
        assert {e["resource"]["id"] for e in bundle["entry"]} == {a, b}
        assert all(e["search"]["mode"] == "match" for e in bundle["entry"])

    async def test_last_updated_and_count(self, client: httpx.AsyncClient) -> None:
        since = datetime.now(UTC).isoformat(timespec="seconds")
        await versions_of(client, 1)
        await versions_of(client, 1)
        bundle = (await client.get("/Patient", params={"_lastUpdated": f"ge{since}", "_count": 1})).json()
        assert len(bundle["entry"]) == 1
        assert any(link["relation"] == "next" for link in bundle["link"])
        count_only = (await client.get("/Patient", params={"_lastUpdated": f"ge{since}", "_count": 0})).json()
        assert count_only["total"] >= 2 and "entry" not in count_only

    async def test_deleted_resources_are_not_found(self, client: httpx.AsyncClient) -> None:
        id_ = await versions_of(client, 1)
        await client.delete(f"/Patient/{id_}")
        bundle = (await client.get("/Patient", params={"_id": id_})).json()
        assert "entry" not in bundle

    async def test_unknown_parameter_lenient_and_strict(self, client: httpx.AsyncClient) -> None:
        lenient = (await client.get("/Patient", params={"bogus": "1", "_count": 1})).json()
        outcome = [e for e in lenient.get("entry", []) if e["search"]["mode"] == "outcome"]
        assert outcome and "bogus" in outcome[0]["resource"]["issue"][0]["diagnostics"]
        strict = await client.get("/Patient", params={"bogus": "1"}, headers={"Prefer": "handling=strict"})
        assert strict.status_code == 400

    async def test_post_search(self, client: httpx.AsyncClient) -> None:
        id_ = await versions_of(client, 1)
        bundle = (await client.post("/Patient/_search", data={"_id": id_})).json()
        assert bundle["entry"][0]["resource"]["id"] == id_

    async def test_bad_values_are_400(self, client: httpx.AsyncClient) -> None:
        assert (await client.get("/Patient", params={"_count": "many"})).status_code == 400
        assert (await client.get("/Patient", params={"_lastUpdated": "ge2020-99"})).status_code == 400


class TestCapabilityStatement:
    async def test_lists_types_interactions_and_search(self, client: httpx.AsyncClient) -> None:
        statement = (await client.get("/metadata")).json()
        assert statement["resourceType"] == "CapabilityStatement"
        assert statement["fhirVersion"] == "4.0.1"
        rest = statement["rest"][0]
        patient = next(r for r in rest["resource"] if r["type"] == "Patient")
        codes = {i["code"] for i in patient["interaction"]}
        assert {
            "read",
            "vread",
            "update",
            "patch",
            "delete",
            "create",
            "search-type",
            "history-instance",
        } <= codes
        assert {"_id", "_lastUpdated"} <= {p["name"] for p in patient["searchParam"]}
        assert {i["code"] for i in rest["interaction"]} == {"transaction", "batch", "history-system"}
        assert len(rest["resource"]) == 146
