"""Reads' audit records go to the audit backlog (migration 0011) and become searchable AuditEvents before
anything can read AuditEvents, by the worker's job, or by `pms audit catch-up` (storage/audit_backlog.py).
"""

from __future__ import annotations

import asyncio
import json
from typing import Any

import httpx
import pytest

from pms.cli import main as pms
from pms.core.db import Database
from pms.fhir.search import parse_search
from pms.fhir.searchparams import default_registry
from pms.storage.audit_backlog import AuditBacklog, reaches_audit_trail
from pms.storage.registry_provider import RegistryProvider
from pms.worker import audit_catch_up


async def _patient(client: httpx.AsyncClient) -> str:
    created = await client.post("/Patient", json={"resourceType": "Patient", "name": [{"family": "Backlog"}]})
    patient_id: str = created.json()["id"]
    return patient_id


async def _waiting(database: Database, patient_id: str, interaction: str = "read") -> list[dict[str, Any]]:
    """The backlog's records of this interaction with this patient."""
    assert database.fast_pool is not None
    rows = await database.fast_pool.fetch(
        "SELECT content FROM audit_backlog WHERE content LIKE $1", f"%Patient/{patient_id}%"
    )
    events = [json.loads(row["content"]) for row in rows]
    return [e for e in events if e["subtype"][0]["code"] == interaction]


async def _backlog_size(database: Database) -> int:
    assert database.fast_pool is not None
    size: int = await database.fast_pool.fetchval("SELECT count(*) FROM audit_backlog")
    return size


async def _stored(database: Database, event_ids: list[str]) -> list[str]:
    assert database.fast_pool is not None
    rows = await database.fast_pool.fetch(
        "SELECT id FROM resource WHERE resource_type = 'AuditEvent' AND id = ANY($1::text[])", event_ids
    )
    return [row["id"] for row in rows]


class TestReadsGoThroughTheBacklog:
    async def test_a_search_sees_every_read_recorded_before_it(
        self, client: httpx.AsyncClient, database: Database
    ) -> None:
        patient_id = await _patient(client)
        for _ in range(3):
            assert (await client.get(f"/Patient/{patient_id}")).status_code == 200
        waiting = await _waiting(database, patient_id)
        assert len(waiting) == 3  # committed before each answer left, not yet a resource
        found = (await client.get("/AuditEvent", params={"entity": f"Patient/{patient_id}"})).json()
        reads = [e["resource"] for e in found["entry"] if e["resource"]["subtype"][0]["code"] == "read"]
        assert sorted(r["id"] for r in reads) == sorted(w["id"] for w in waiting)
        assert {r["meta"]["lastUpdated"] for r in reads} == {w["meta"]["lastUpdated"] for w in waiting}
        assert await _waiting(database, patient_id) == []

    async def test_an_audit_event_still_waiting_can_be_read_by_id(
        self, client: httpx.AsyncClient, database: Database
    ) -> None:
        patient_id = await _patient(client)
        await client.get(f"/Patient/{patient_id}")
        (event,) = await _waiting(database, patient_id)
        read = await client.get(f"/AuditEvent/{event['id']}")
        assert read.status_code == 200 and read.json()["entity"] == event["entity"]

    async def test_revinclude_and_compartment_searches_see_the_backlog(
        self, client: httpx.AsyncClient, database: Database
    ) -> None:
        patient_id = await _patient(client)
        await client.get(f"/Patient/{patient_id}")
        revincluded = (
            await client.get("/Patient", params={"_id": patient_id, "_revinclude": "AuditEvent:entity"})
        ).json()
        assert any(e["resource"]["resourceType"] == "AuditEvent" for e in revincluded["entry"])
        await client.get(f"/Patient/{patient_id}")
        compartment = (await client.get(f"/Patient/{patient_id}/AuditEvent")).json()
        assert len([e for e in compartment["entry"] if e["resource"]["subtype"][0]["code"] == "read"]) == 2


class TestWritesGoThroughTheBacklog:
    """A write's AuditEvent is committed in the write's own transaction (both land or neither does)."""

    async def test_a_write_and_its_record_land_together(
        self, client: httpx.AsyncClient, database: Database
    ) -> None:
        patient_id = await _patient(client)
        (created,) = await _waiting(database, patient_id, "create")
        assert created["action"] == "C"

    async def test_a_failed_transaction_leaves_no_record(
        self, client: httpx.AsyncClient, database: Database
    ) -> None:
        before = await _backlog_size(database)
        bundle = {
            "resourceType": "Bundle",
            "type": "transaction",
            "entry": [
                {"resource": {"resourceType": "Patient"}, "request": {"method": "POST", "url": "Patient"}},
                {
                    "resource": {"resourceType": "Patient", "gender": "x"},
                    "request": {"method": "POST", "url": "Patient"},
                },
            ],
        }
        assert (await client.post("/", json=bundle)).status_code in (400, 422)
        assert await _backlog_size(database) == before


class TestCatchingUp:
    async def test_concurrent_catch_ups_move_each_record_once(
        self, client: httpx.AsyncClient, database: Database
    ) -> None:
        patient_id = await _patient(client)
        await asyncio.gather(*(client.get(f"/Patient/{patient_id}") for _ in range(60)))
        event_ids = [e["id"] for e in await _waiting(database, patient_id)]
        assert len(event_ids) == 60
        assert database.fast_pool is not None
        backlog = AuditBacklog(database.fast_pool)
        registry = await RegistryProvider().current(database)
        moved = await asyncio.gather(*(backlog.catch_up(registry, batch=7) for _ in range(3)))
        assert sum(moved) >= 60  # and the rest the server's own searches left, if any
        assert sorted(await _stored(database, event_ids)) == sorted(event_ids)
        assert await _waiting(database, patient_id) == []

    async def test_the_worker_job_catches_up(self, client: httpx.AsyncClient, database: Database) -> None:
        patient_id = await _patient(client)
        await client.get(f"/Patient/{patient_id}")
        (event,) = await _waiting(database, patient_id)
        context = {"db": database, "registry_provider": RegistryProvider()}
        assert await audit_catch_up(context) >= 1
        assert await _stored(database, [event["id"]]) == [event["id"]]

    async def test_the_cli_catches_up(
        self,
        client: httpx.AsyncClient,
        database: Database,
        database_url: str,
        capsys: pytest.CaptureFixture[str],
    ) -> None:
        patient_id = await _patient(client)
        await client.get(f"/Patient/{patient_id}")
        (event,) = await _waiting(database, patient_id)
        assert await asyncio.to_thread(pms, ["audit", "catch-up", "--database-url", database_url]) == 0
        assert "audit records stored as AuditEvents" in capsys.readouterr().out
        assert await _stored(database, [event["id"]]) == [event["id"]]


class TestWhichSearchesCatchUp:
    """Only searches that can return or test AuditEvents wait for the backlog: a patient search as the
    front desk types must not pay for the audit trail's indexing."""

    @pytest.mark.parametrize(
        ("resource_type", "query", "reaches"),
        [
            ("Patient", [("name", "smith")], False),
            ("Appointment", [("_include", "Appointment:patient")], False),
            ("AuditEvent", [("entity", "Patient/1")], True),
            (None, [("_lastUpdated", "gt2026-01-01")], True),  # every type
            (None, [("_type", "Patient,AuditEvent")], True),
            (None, [("_type", "Patient")], False),
            ("Patient", [("_revinclude", "AuditEvent:entity")], True),
            ("Patient", [("_revinclude", "*")], True),
            ("Patient", [("_has:AuditEvent:entity:agent", "Practitioner/1")], True),
        ],
    )
    def test_reaches_audit_trail(
        self, resource_type: str | None, query: list[tuple[str, str]], reaches: bool
    ) -> None:
        registry = default_registry()
        request = parse_search(resource_type, query, registry, handling="strict", max_count=100)
        assert reaches_audit_trail(request, registry) is reaches
