"""`pms reindex` rebuilds the search indexes of stored resources."""

from __future__ import annotations

import subprocess
import sys
import uuid

import httpx


async def test_reindex_command_restores_a_lost_index(client: httpx.AsyncClient, database_url: str) -> None:
    family = f"Reindex{uuid.uuid4().hex[:8]}"
    created = (
        await client.post("/Patient", json={"resourceType": "Patient", "name": [{"family": family}]})
    ).json()
    import asyncpg

    conn = await asyncpg.connect(database_url)
    try:
        rid = await conn.fetchval(
            "SELECT rid FROM resource WHERE resource_type = 'Patient' AND id = $1", created["id"]
        )
        await conn.execute("DELETE FROM search_string WHERE rid = $1", rid)
    finally:
        await conn.close()
    assert "entry" not in (await client.get("/Patient", params={"family": family})).json()
    result = subprocess.run(
        [sys.executable, "-m", "pms.cli", "reindex", "--type", "Patient", "--database-url", database_url],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr
    assert "Reindexed" in result.stdout
    found = (await client.get("/Patient", params={"family": family})).json()
    assert [e["resource"]["id"] for e in found["entry"]] == [created["id"]]
