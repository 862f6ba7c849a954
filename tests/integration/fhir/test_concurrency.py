"""Concurrent writers: version-aware updates let exactly one of two same-version writers win."""

from __future__ import annotations

import asyncio
import uuid

import httpx


class TestConcurrentUpdates:
    async def test_two_writers_same_if_match_exactly_one_wins(self, client: httpx.AsyncClient) -> None:
        for _ in range(5):
            id_ = f"cc-{uuid.uuid4().hex[:10]}"
            await client.put(f"/Patient/{id_}", json={"resourceType": "Patient", "id": id_})
            body = {"resourceType": "Patient", "id": id_, "active": True}
            results = await asyncio.gather(
                *(client.put(f"/Patient/{id_}", json=body, headers={"If-Match": 'W/"1"'}) for _ in range(2))
            )
            assert sorted(r.status_code for r in results) == [200, 412]
            assert (await client.get(f"/Patient/{id_}")).json()["meta"]["versionId"] == "2"

    async def test_concurrent_updates_without_if_match_all_get_versions(
        self, client: httpx.AsyncClient
    ) -> None:
        id_ = f"cu-{uuid.uuid4().hex[:10]}"
        await client.put(f"/Patient/{id_}", json={"resourceType": "Patient", "id": id_})
        results = await asyncio.gather(
            *(client.put(f"/Patient/{id_}", json={"resourceType": "Patient", "id": id_}) for _ in range(8))
        )
        assert all(r.status_code == 200 for r in results)
        versions = sorted(int(r.json()["meta"]["versionId"]) for r in results)
        assert versions == list(range(2, 10))

    async def test_concurrent_update_as_create(self, client: httpx.AsyncClient) -> None:
        id_ = f"uc-{uuid.uuid4().hex[:10]}"
        results = await asyncio.gather(
            *(client.put(f"/Patient/{id_}", json={"resourceType": "Patient", "id": id_}) for _ in range(4))
        )
        assert sorted(r.status_code for r in results) == [200, 200, 200, 201]
