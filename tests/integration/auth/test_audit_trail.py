"""Every interaction leaves a FHIR AuditEvent, searchable by entity; refusals too; none can be changed."""

from __future__ import annotations

import uuid

import httpx

RESTFUL = "http://hl7.org/fhir/restful-interaction"


async def events_about(client: httpx.AsyncClient, reference: str) -> list[dict]:
    bundle = (await client.get("/AuditEvent", params={"entity": reference, "_count": 100})).json()
    return [e["resource"] for e in bundle.get("entry", [])]


def subtypes(events: list[dict]) -> set[str]:
    return {c["code"] for event in events for c in event.get("subtype", []) if c.get("system") == RESTFUL}


class TestInteractionsAreAudited:
    async def test_create_read_search_leave_events(self, client: httpx.AsyncClient) -> None:
        family = f"Audit{uuid.uuid4().hex[:8]}"
        patient = (
            await client.post("/Patient", json={"resourceType": "Patient", "name": [{"family": family}]})
        ).json()
        reference = f"Patient/{patient['id']}"
        await client.get(f"/{reference}")
        await client.get("/Patient", params={"family": family})
        events = await events_about(client, reference)
        assert {"create", "read", "search-type"} <= subtypes(events)
        search = next(e for e in events if any(c["code"] == "search-type" for c in e["subtype"]))
        assert any(e.get("query") for e in search["entity"])  # the query is kept (base64)
        assert all(e["agent"] and e["recorded"] for e in events)

    async def test_a_search_names_the_patients_of_what_it_included(self, client: httpx.AsyncClient) -> None:
        """Included resources' patients come from their index rows (storage/search/engine.py
        `_included_columns`), not from parsing them: an Observation of another patient, revincluded
        through an Encounter, puts that patient in the search's AuditEvent; an Organization, in no
        patient's compartment, puts none."""

        async def created(body: dict) -> str:
            response = await client.post(f"/{body['resourceType']}", json=body)
            assert response.status_code == 201, response.text
            return str(response.json()["id"])

        first = await created({"resourceType": "Patient"})
        second = await created({"resourceType": "Patient"})
        clinic = await created({"resourceType": "Organization", "name": f"Audit {uuid.uuid4().hex[:6]}"})
        encounter = await created(
            {
                "resourceType": "Encounter",
                "status": "finished",
                "class": {"code": "AMB"},
                "subject": {"reference": f"Patient/{first}"},
                "serviceProvider": {"reference": f"Organization/{clinic}"},
            }
        )
        await created(
            {
                "resourceType": "Observation",
                "status": "final",
                "code": {"text": "weight"},
                "subject": {"reference": f"Patient/{second}"},
                "encounter": {"reference": f"Encounter/{encounter}"},
            }
        )
        params = {
            "_id": encounter,
            "_revinclude": "Observation:encounter",
            "_include": "Encounter:service-provider",
        }
        bundle = (await client.get("/Encounter", params=params)).json()
        assert {e["resource"]["resourceType"] for e in bundle["entry"]} == {
            "Encounter",
            "Observation",
            "Organization",
        }
        for patient in (first, second):
            assert "search-type" in subtypes(await events_about(client, f"Patient/{patient}"))

    async def test_refusals_are_audited(self, client: httpx.AsyncClient, server_url: str) -> None:
        target = f"Patient/{uuid.uuid4()}"
        async with httpx.AsyncClient(base_url=f"{server_url}/fhir") as anonymous:
            assert (await anonymous.get(f"/{target}")).status_code == 401
        bundle = (
            await client.get("/AuditEvent", params={"outcome": "4", "_count": 200, "_sort": "-date"})
        ).json()
        paths = [
            e.get("what", {}).get("reference", "")
            for entry in bundle.get("entry", [])
            for e in entry["resource"].get("entity", [])
        ]
        assert any(target in path for path in paths)


class TestNotFullTextIndexed:
    """AuditEvents are searched by their parameters; `_content`/`_text` are unsupported for them
    (search.html#errors: ignored with a warning when lenient, refused when strict), and not listed in the
    CapabilityStatement."""

    async def test_content_search_of_audit_events_is_unsupported(self, client: httpx.AsyncClient) -> None:
        patient = (await client.post("/Patient", json={"resourceType": "Patient"})).json()
        await client.get(f"/Patient/{patient['id']}")
        strict_handling = {"Prefer": "handling=strict"}
        strict = await client.get("/AuditEvent", params={"_content": "read"}, headers=strict_handling)
        assert strict.status_code == 400 and strict.json()["issue"][0]["code"] == "not-supported"
        lenient = (await client.get("/AuditEvent", params={"_text": "read", "_count": 1})).json()
        warnings = [e for e in lenient["entry"] if e["search"]["mode"] == "outcome"]
        assert "not full-text indexed" in warnings[0]["resource"]["issue"][0]["diagnostics"]
        patients = await client.get("/Patient", params={"_content": "x"}, headers=strict_handling)
        assert patients.status_code == 200

    async def test_capability_statement_leaves_them_out(self, client: httpx.AsyncClient) -> None:
        statement = (await client.get("/metadata")).json()
        searches = {
            r["type"]: {p["name"] for p in r.get("searchParam", [])} for r in statement["rest"][0]["resource"]
        }
        assert "_content" in searches["Patient"] and "entity" in searches["AuditEvent"]
        assert not {"_content", "_text"} & searches["AuditEvent"]


class TestAppendOnly:
    async def test_audit_events_cannot_be_changed_or_deleted(self, client: httpx.AsyncClient) -> None:
        bundle = (await client.get("/AuditEvent", params={"_count": 1})).json()
        event = bundle["entry"][0]["resource"]
        assert (await client.put(f"/AuditEvent/{event['id']}", json=event)).status_code == 403
        assert (await client.delete(f"/AuditEvent/{event['id']}")).status_code == 403
        assert (await client.get(f"/AuditEvent/{event['id']}")).status_code == 200


class TestAccessLog:
    async def test_who_saw_this_patient(self, client: httpx.AsyncClient) -> None:
        patient = (await client.post("/Patient", json={"resourceType": "Patient"})).json()
        await client.get(f"/Patient/{patient['id']}")
        log = (await client.get(f"/Patient/{patient['id']}/$access-log")).json()
        assert log["type"] == "searchset"
        events = [e["resource"] for e in log["entry"]]
        assert {"create", "read"} <= subtypes(events)
        assert all(event["resourceType"] == "AuditEvent" for event in events)
        recorded = [event["recorded"] for event in events]
        assert recorded == sorted(recorded, reverse=True)

    async def test_needs_a_role_that_may_read_audit_events(
        self, client: httpx.AsyncClient, server_url: str
    ) -> None:
        patient = (await client.post("/Patient", json={"resourceType": "Patient"})).json()
        async with httpx.AsyncClient(base_url=f"{server_url}/fhir") as anonymous:
            assert (await anonymous.get(f"/Patient/{patient['id']}/$access-log")).status_code == 401
