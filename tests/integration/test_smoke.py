import httpx


async def test_create_and_read(client: httpx.AsyncClient) -> None:
    created = await client.post("/Patient", json={"resourceType": "Patient", "gender": "male"})
    assert created.status_code == 201, created.text
    got = await client.get(created.headers["location"].split("/fhir")[1].rsplit("/_history", 1)[0])
    assert got.status_code == 200
    assert got.json()["gender"] == "male"
