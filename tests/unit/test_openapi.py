"""openapi/openapi.json is generated from the app: this fails when someone forgets `make openapi`."""

from pathlib import Path

from pms.openapi_dump import openapi_document, render

ROOT = Path(__file__).resolve().parents[2]


def test_committed_openapi_matches_the_app() -> None:
    committed = (ROOT / "openapi" / "openapi.json").read_text(encoding="utf-8")
    assert committed == render(), "openapi/openapi.json is stale: run `make openapi`"


def test_fhir_endpoints_are_described_with_types_and_examples() -> None:
    doc = openapi_document()
    read = doc["paths"]["/fhir/{resource_type}/{id}"]["get"]
    type_param = next(p for p in read["parameters"] if p["name"] == "resource_type")
    assert "Patient" in type_param["schema"]["enum"] and len(type_param["schema"]["enum"]) == 146
    create = doc["paths"]["/fhir/{resource_type}"]["post"]
    assert create["requestBody"]["content"]["application/fhir+json"]["example"]["resourceType"] == "Patient"
    assert "412" in doc["paths"]["/fhir/{resource_type}/{id}"]["put"]["responses"]
