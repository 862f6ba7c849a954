"""`pms reindex` rebuilds the search indexes of stored resources."""

from __future__ import annotations

import asyncio
import sys
import uuid

import asyncpg
import httpx


async def test_reindex_command_restores_a_lost_index(client: httpx.AsyncClient, database_url: str) -> None:
    family = f"Reindex{uuid.uuid4().hex[:8]}"
    created = (
        await client.post("/Patient", json={"resourceType": "Patient", "name": [{"family": family}]})
    ).json()
    conn = await asyncpg.connect(database_url)
    try:
        rid = await conn.fetchval(
            "SELECT rid FROM resource WHERE resource_type = 'Patient' AND id = $1", created["id"]
        )
        await conn.execute("DELETE FROM search_string WHERE rid = $1", rid)
    finally:
        await conn.close()
    assert "entry" not in (await client.get("/Patient", params={"family": family})).json()
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "pms.cli",
        "reindex",
        "--type",
        "Patient",
        "--database-url",
        database_url,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    stdout, stderr = await asyncio.wait_for(process.communicate(), timeout=120)
    assert process.returncode == 0, stderr.decode()
    assert b"Reindexed" in stdout
    found = (await client.get("/Patient", params={"family": family})).json()
    assert [e["resource"]["id"] for e in found["entry"]] == [created["id"]]
