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


def without_meta(resource: dict[str, Any], *, keep_id: bool = True) -> dict[str, Any]:
    return {k: v for k, v in resource.items() if k != "meta" and (keep_id or k != "id")}


# AuditEvents are append-only (no update, not even update-as-create): they are POSTed and get new ids.
APPEND_ONLY = {"AuditEvent"}


async def test_official_examples_round_trip(client: httpx.AsyncClient, shared_dir: Path) -> None:
    examples = load_examples(shared_dir)
    assert len(examples) > 700
    rejected: dict[str, str] = {}
    mismatched: list[str] = []
    gate = asyncio.Semaphore(8)

    async def round_trip(name: str, resource: dict[str, Any]) -> None:
        resource_type = resource["resourceType"]
        append_only = resource_type in APPEND_ONLY
        url = f"/{resource_type}/{resource['id']}"
        body = jsonio.dumps(resource)
        headers = {"Content-Type": "application/fhir+json"}
        async with gate:
            if append_only:
                stored = await client.post(f"/{resource_type}", content=body, headers=headers)
            else:
                stored = await client.put(url, content=body, headers=headers)
            if stored.status_code not in (200, 201):
                rejected[name] = stored.json()["issue"][0]["diagnostics"]
                return
            if append_only:
                url = f"/{resource_type}/{stored.json()['id']}"
            read = await client.get(url)
        stored_back = without_meta(jsonio.loads(read.content), keep_id=not append_only)
        if stored_back != without_meta(resource, keep_id=not append_only):
            mismatched.append(name)

    await asyncio.gather(*(round_trip(name, resource) for name, resource in examples))
    assert not mismatched, mismatched[:10]
    assert rejected.keys() == KNOWN_INVALID.keys(), rejected
