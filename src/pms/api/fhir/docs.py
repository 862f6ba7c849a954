"""OpenAPI descriptions of the FHIR endpoints: resource types, parameters and examples for integrators."""

from __future__ import annotations

from typing import Any

from fastapi import Path

from pms.fhir.definitions import resource_types

FHIR_JSON = "application/fhir+json"

PATIENT_EXAMPLE: dict[str, Any] = {
    "resourceType": "Patient",
    "identifier": [{"system": "urn:oid:1.2.36.146.595.217.0.1", "value": "12345"}],
    "name": [{"family": "Chalmers", "given": ["Peter", "James"]}],
    "gender": "male",
    "birthDate": "1974-12-25",
}
OUTCOME_EXAMPLE: dict[str, Any] = {
    "resourceType": "OperationOutcome",
    "issue": [{"severity": "error", "code": "not-found", "diagnostics": "Patient/123 is not known"}],
}
TRANSACTION_EXAMPLE: dict[str, Any] = {
    "resourceType": "Bundle",
    "type": "transaction",
    "entry": [
        {
            "fullUrl": "urn:uuid:61ebe359-bfdc-4613-8bf2-c5e300945f0a",
            "resource": PATIENT_EXAMPLE,
            "request": {"method": "POST", "url": "Patient"},
        },
        {
            "resource": {
                "resourceType": "Observation",
                "status": "final",
                "code": {
                    "coding": [{"system": "http://loinc.org", "code": "29463-7", "display": "Body weight"}]
                },
                "subject": {"reference": "urn:uuid:61ebe359-bfdc-4613-8bf2-c5e300945f0a"},
                "valueQuantity": {
                    "value": 72.5,
                    "unit": "kg",
                    "system": "http://unitsofmeasure.org",
                    "code": "kg",
                },
            },
            "request": {"method": "POST", "url": "Observation"},
        },
    ],
}

ResourceTypePath = Path(
    description="A FHIR R4 resource type, e.g. Patient, Appointment, Observation",
    json_schema_extra={"enum": list(resource_types())},
    examples=["Patient"],
)
IdPath = Path(description="Logical id ([A-Za-z0-9-.]{1,64})", examples=["example"])
VersionPath = Path(description="Version id (meta.versionId)", examples=["1"])


def resource_body(
    example: dict[str, Any] = PATIENT_EXAMPLE, *, description: str = "A FHIR resource"
) -> dict[str, Any]:
    return {
        "requestBody": {
            "required": True,
            "description": description,
            "content": {
                FHIR_JSON: {"schema": {"$ref": "#/components/schemas/Resource"}, "example": example},
                "application/json": {"schema": {"$ref": "#/components/schemas/Resource"}},
            },
        }
    }


PATCH_BODY: dict[str, Any] = {
    "requestBody": {
        "required": True,
        "description": "A JSON Patch document (RFC 6902)",
        "content": {
            "application/json-patch+json": {
                "schema": {"type": "array", "items": {"type": "object"}},
                "example": [{"op": "replace", "path": "/gender", "value": "female"}],
            }
        },
    }
}


def responses(
    ok: int = 200,
    *,
    description: str = "The resource",
    example: dict[str, Any] = PATIENT_EXAMPLE,
    errors: tuple[int, ...] = (400, 404),
) -> dict[int | str, dict[str, Any]]:
    out: dict[int | str, dict[str, Any]] = {
        ok: {
            "description": description,
            "content": {FHIR_JSON: {"schema": {"$ref": "#/components/schemas/Resource"}, "example": example}},
        },
    }
    reasons = {
        400: "Invalid request or resource (OperationOutcome)",
        401: "No valid bearer access token (OperationOutcome, WWW-Authenticate)",
        403: "The token's scopes and the user's role do not allow this (OperationOutcome)",
        404: "Unknown resource (OperationOutcome)",
        409: "Conflict",
        410: "The resource was deleted",
        412: "Version conflict (If-Match) or ambiguous criteria",
        413: "Body too large",
        415: "Unsupported media type",
        422: "Unprocessable (e.g. a failing patch)",
    }
    for code in errors:
        out[code] = {
            "description": reasons[code],
            "content": {
                FHIR_JSON: {
                    "schema": {"$ref": "#/components/schemas/OperationOutcome"},
                    "example": OUTCOME_EXAMPLE,
                }
            },
        }
    return out


def add_fhir_schemas(schema: dict[str, Any]) -> dict[str, Any]:
    """Components for any FHIR resource and OperationOutcome, referenced by the routes above."""
    components = schema.setdefault("components", {}).setdefault("schemas", {})
    components["Resource"] = {
        "type": "object",
        "description": "Any FHIR R4 resource (http://hl7.org/fhir/R4/resourcelist.html), as JSON",
        "required": ["resourceType"],
        "properties": {
            "resourceType": {"type": "string", "enum": list(resource_types())},
            "id": {"type": "string", "pattern": "^[A-Za-z0-9\\-.]{1,64}$"},
            "meta": {
                "type": "object",
                "properties": {
                    "versionId": {"type": "string"},
                    "lastUpdated": {"type": "string", "format": "date-time"},
                },
            },
        },
        "additionalProperties": True,
    }
    components["OperationOutcome"] = {
        "type": "object",
        "description": "Errors and warnings (http://hl7.org/fhir/R4/operationoutcome.html)",
        "required": ["resourceType", "issue"],
        "properties": {
            "resourceType": {"type": "string", "enum": ["OperationOutcome"]},
            "issue": {
                "type": "array",
                "items": {
                    "type": "object",
                    "properties": {
                        "severity": {"type": "string"},
                        "code": {"type": "string"},
                        "diagnostics": {"type": "string"},
                        "expression": {"type": "array", "items": {"type": "string"}},
                    },
                },
            },
        },
    }
    return schema
