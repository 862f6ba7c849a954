"""Conditional create, update and delete (http.html#ccreate, #cond-update, #cdelete)."""

from __future__ import annotations

import uuid

import httpx


async def make(client: httpx.AsyncClient, id_: str) -> None:
    response = await client.put(f"/Patient/{id_}", json={"resourceType": "Patient", "id": id_})
    assert response.status_code == 201


class TestConditionalCreate:
    async def test_creates_when_no_match_and_returns_existing_when_one(
        self, client: httpx.AsyncClient
    ) -> None:
        id_ = f"cc-{uuid.uuid4().hex[:12]}"
        await make(client, id_)
        existing = await client.post(
            "/Patient", json={"resourceType": "Patient"}, headers={"If-None-Exist": f"_id={id_}"}
        )
        assert existing.status_code == 200
        assert existing.json()["id"] == id_
        fresh = await client.post(
            "/Patient", json={"resourceType": "Patient"}, headers={"If-None-Exist": f"_id=none-{id_}"}
        )
        assert fresh.status_code == 201

    async def test_multiple_matches_is_412(self, client: httpx.AsyncClient) -> None:
        a, b = f"cm-{uuid.uuid4().hex[:10]}", f"cm-{uuid.uuid4().hex[:10]}"
        await make(client, a)
        await make(client, b)
        response = await client.post(
            "/Patient", json={"resourceType": "Patient"}, headers={"If-None-Exist": f"_id={a},{b}"}
        )
        assert response.status_code == 412

    async def test_unknown_criteria_is_400_not_ignored(self, client: httpx.AsyncClient) -> None:
        response = await client.post(
            "/Patient", json={"resourceType": "Patient"}, headers={"If-None-Exist": "nonsense-param=1"}
        )
        assert response.status_code == 400


class TestConditionalUpdate:
    async def test_updates_the_single_match(self, client: httpx.AsyncClient) -> None:
        id_ = f"cu-{uuid.uuid4().hex[:12]}"
        await make(client, id_)
        response = await client.put(
            f"/Patient?_id={id_}", json={"resourceType": "Patient", "gender": "female"}
        )
        assert response.status_code == 200
        assert response.json()["id"] == id_ and response.json()["meta"]["versionId"] == "2"

    async def test_creates_when_nothing_matches(self, client: httpx.AsyncClient) -> None:
        response = await client.put(f"/Patient?_id=zz-{uuid.uuid4().hex}", json={"resourceType": "Patient"})
        assert response.status_code == 201

    async def test_multiple_matches_is_412(self, client: httpx.AsyncClient) -> None:
        a, b = f"cu-{uuid.uuid4().hex[:10]}", f"cu-{uuid.uuid4().hex[:10]}"
        await make(client, a)
        await make(client, b)
        response = await client.put(f"/Patient?_id={a},{b}", json={"resourceType": "Patient"})
        assert response.status_code == 412

    async def test_conditional_patch(self, client: httpx.AsyncClient) -> None:
        id_ = f"cp-{uuid.uuid4().hex[:12]}"
        await make(client, id_)
        response = await client.patch(
            f"/Patient?_id={id_}",
            content=b'[{"op":"add","path":"/active","value":true}]',
            headers={"Content-Type": "application/json-patch+json"},
        )
        assert response.status_code == 200 and response.json()["active"] is True


class TestConditionalDelete:
    async def test_deletes_every_match(self, client: httpx.AsyncClient) -> None:
        a, b = f"cd-{uuid.uuid4().hex[:10]}", f"cd-{uuid.uuid4().hex[:10]}"
        await make(client, a)
        await make(client, b)
        response = await client.delete(f"/Patient?_id={a},{b}")
        assert response.status_code == 200
        assert (await client.get(f"/Patient/{a}")).status_code == 410
        assert (await client.get(f"/Patient/{b}")).status_code == 410

    async def test_no_match_is_fine(self, client: httpx.AsyncClient) -> None:
        assert (await client.delete(f"/Patient?_id=nobody-{uuid.uuid4().hex}")).status_code == 200
