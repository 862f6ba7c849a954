"""Reads are audited fail closed (issue "Identity, access and audit": a read is not served if its audit
record cannot be written): when the audit trail cannot be written, reads by id, searches and read-only
operations answer 503 with an OperationOutcome and none of the data."""

from __future__ import annotations

from collections.abc import AsyncIterator

import asyncpg
import httpx
import pytest
from tests.support import served, system_token

from pms.config import Settings
from pms.main import create_app
from pms.storage.audit import AuditWriter


@pytest.fixture
async def app_and_client(settings: Settings) -> AsyncIterator[tuple[object, httpx.AsyncClient]]:
    app = create_app(settings)
    async with served(app) as url:
        headers = {"Authorization": f"Bearer {await system_token(url, settings)}"}
        async with httpx.AsyncClient(base_url=f"{url}/fhir", headers=headers, timeout=60) as http:
            yield app, http


async def test_reads_and_searches_are_refused_without_their_audit_record(
    app_and_client: tuple[object, httpx.AsyncClient], admin_url: str
) -> None:
    app, http = app_and_client
    family = "Failclosed"
    created = await http.post("/Patient", json={"resourceType": "Patient", "name": [{"family": family}]})
    assert created.status_code == 201
    patient = f"Patient/{created.json()['id']}"
    state = app.state  # type: ignore[attr-defined]
    working = state.audit_writer
    # The admin database has no resource tables: every audit insert fails there.
    broken = await asyncpg.create_pool(admin_url, min_size=1, max_size=2)
    try:
        state.audit_writer = AuditWriter(broken)
        for path, params in (
            (f"/{patient}", {}),
            ("/Patient", {"family": family}),
            (f"/{patient}/_history", {}),
        ):
            response = await http.get(path, params=params)
            assert response.status_code == 503, path
            body = response.json()
            assert body["resourceType"] == "OperationOutcome"
            assert family not in response.text
    finally:
        state.audit_writer = working
        await broken.close()
    search = await http.get("/Patient", params={"family": family})
    assert search.status_code == 200 and search.json()["total"] == 1
