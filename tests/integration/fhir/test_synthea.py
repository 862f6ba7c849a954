"""Synthea patient records load as transactions and read back intact (../shared/synthea)."""

from __future__ import annotations

import tarfile
from pathlib import Path
from typing import Any

import httpx

from pms.fhir import jsonio


def synthea_bundles(shared: Path) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """(the hospital and practitioner bundles, the patient bundles), in file-name order."""
    infrastructure, patients = [], []
    with tarfile.open(shared / "synthea" / "synthea-r4-100.tar.gz") as tar:
        for member in sorted(tar.getmembers(), key=lambda m: m.name):
            if not member.name.endswith(".json"):
                continue
            handle = tar.extractfile(member)
            assert handle is not None
            bundle = jsonio.loads(handle.read())
            name = member.name.rsplit("/", 1)[-1]
            (infrastructure if name.startswith(("hospital", "practitioner")) else patients).append(bundle)
    return infrastructure, patients


async def test_synthea_bundles_load_and_read_back(client: httpx.AsyncClient, shared_dir: Path) -> None:
    infrastructure, patients = synthea_bundles(shared_dir)
    assert len(infrastructure) == 2 and len(patients) == 100
    for bundle in [*infrastructure, *patients[:5]]:
        response = await client.post(
            "", content=jsonio.dumps(bundle), headers={"Content-Type": "application/fhir+json"}
        )
        assert response.status_code == 200, response.text[:500]
        result = response.json()
        assert len(result["entry"]) == len(bundle["entry"])
        assert all(e["response"]["status"] in ("201 Created", "200 OK") for e in result["entry"])
        for sent, answer in zip(bundle["entry"], result["entry"], strict=True):
            location = answer["response"]["location"].split("/fhir/", 1)[1].split("/_history")[0]
            if sent["resource"]["resourceType"] in ("Patient", "Encounter", "Organization"):
                stored = (await client.get(f"/{location}")).json()
                assert stored["resourceType"] == sent["resource"]["resourceType"]
                for key in ("name", "period", "birthDate", "identifier"):
                    assert stored.get(key) == sent["resource"].get(key)
                if stored["resourceType"] == "Encounter":
                    provider = stored["serviceProvider"]["reference"]
                    assert provider.startswith("Organization/")
                    assert (await client.get(f"/{provider}")).status_code == 200
                    assert stored["subject"]["reference"].startswith("Patient/")
