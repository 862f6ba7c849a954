"""Round-trip of the official HL7 R4 examples: each is stored with its own id, read back and compared,
ignoring meta. The few the validator rejects are listed with the reason (they are invalid in the spec)."""

from __future__ import annotations

import asyncio
import tarfile
from pathlib import Path
from typing import Any

import httpx

from pms.fhir import jsonio

DEFINITION_PREFIXES = (
    "StructureDefinition-",
    "SearchParameter-",
    "ValueSet-",
    "CodeSystem-",
    "ConceptMap-",
    "OperationDefinition-",
    "CompartmentDefinition-",
    "CapabilityStatement-",
    "ImplementationGuide-",
    "NamingSystem-",
    "StructureMap-",
)

# The specification's own definition collections (tens of MB each), not examples of clinical content.
DEFINITION_BUNDLES = {
    "Bundle-resources.json",
    "Bundle-dataelements.json",
    "Bundle-valueset-expansions.json",
    "Bundle-valuesets.json",
    "Bundle-v3-valuesets.json",
    "Bundle-v2-valuesets.json",
    "Bundle-profiles-others.json",
    "Bundle-extensions.json",
    "Bundle-types.json",
    "Bundle-searchParams.json",
    "Bundle-conceptmaps.json",
    "ig-r4.json",
}

# Examples that the R4 specification itself publishes in an invalid form, and why.
KNOWN_INVALID: dict[str, str] = {
    "Questionnaire-qs1.json": "nested items have no linkId, which Questionnaire.item.linkId requires (1..1)",
}


def load_examples(shared: Path) -> list[tuple[str, dict[str, Any]]]:
    examples = []
    with tarfile.open(shared / "fhir" / "hl7.fhir.r4.examples-4.0.1.tgz") as tar:
        for member in tar.getmembers():
            name = member.name.rsplit("/", 1)[-1]
            if (
                not name.endswith(".json")
                or name.startswith((".", "package"))
                or name.startswith(DEFINITION_PREFIXES)
                or (name in DEFINITION_BUNDLES)
            ):
                continue
            handle = tar.extractfile(member)
            assert handle is not None
            resource = jsonio.loads(handle.read())
            if isinstance(resource, dict) and "resourceType" in resource and "id" in resource:
                examples.append((name, resource))
    return examples


def without_meta(resource: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in resource.items() if k != "meta"}


async def test_official_examples_round_trip(client: httpx.AsyncClient, shared_dir: Path) -> None:
    examples = load_examples(shared_dir)
    assert len(examples) > 700
    rejected: dict[str, str] = {}
    mismatched: list[str] = []
    gate = asyncio.Semaphore(8)

    async def round_trip(name: str, resource: dict[str, Any]) -> None:
        url = f"/{resource['resourceType']}/{resource['id']}"
        async with gate:
            stored = await client.put(
                url, content=jsonio.dumps(resource), headers={"Content-Type": "application/fhir+json"}
            )
            if stored.status_code not in (200, 201):
                rejected[name] = stored.json()["issue"][0]["diagnostics"]
                return
            read = await client.get(url)
        if without_meta(jsonio.loads(read.content)) != without_meta(resource):
            mismatched.append(name)

    await asyncio.gather(*(round_trip(name, resource) for name, resource in examples))
    assert not mismatched, mismatched[:10]
    assert rejected.keys() == KNOWN_INVALID.keys(), rejected
