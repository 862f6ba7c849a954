"""The server's CapabilityStatement (http://hl7.org/fhir/R4/capabilitystatement.html), built from what
the code supports: the resource types it knows, its interactions and its search parameters."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

from pms.fhir.definitions import FHIR_VERSION, resource_types

TYPE_INTERACTIONS = (
    "read",
    "vread",
    "update",
    "patch",
    "delete",
    "history-instance",
    "history-type",
    "create",
    "search-type",
)
SYSTEM_INTERACTIONS = ("transaction", "batch", "history-system")
# The common parameters every type supports (search.html#all).
COMMON_SEARCH_PARAMETERS: tuple[tuple[str, str, str, str], ...] = (
    ("_id", "token", "Logical id of the resource", "http://hl7.org/fhir/SearchParameter/Resource-id"),
    (
        "_lastUpdated",
        "date",
        "When the resource version last changed",
        "http://hl7.org/fhir/SearchParameter/Resource-lastUpdated",
    ),
)

# (name, type, documentation, definition canonical) of each parameter a type supports.
SearchParameterSource = Callable[[str], list[tuple[str, str, str, str]]]


def _no_extra_parameters(_: str) -> list[tuple[str, str, str, str]]:
    return []


def capability_statement(
    *, base: str, software_version: str, search_parameters: SearchParameterSource = _no_extra_parameters
) -> dict[str, Any]:
    origin = base.rstrip("/").removesuffix("/fhir")
    resources = []
    for type_name in resource_types():
        params = [*COMMON_SEARCH_PARAMETERS, *search_parameters(type_name)]
        resources.append(
            {
                "type": type_name,
                "profile": f"http://hl7.org/fhir/StructureDefinition/{type_name}",
                "interaction": [{"code": code} for code in TYPE_INTERACTIONS],
                "versioning": "versioned-update",
                "readHistory": True,
                "updateCreate": True,
                "conditionalCreate": True,
                "conditionalRead": "full-support",
                "conditionalUpdate": True,
                "conditionalDelete": "multiple",
                "referencePolicy": ["literal", "logical"],
                "searchParam": [
                    {"name": name, "definition": url, "type": kind, "documentation": doc}
                    for name, kind, doc, url in params
                ],
            }
        )
    return {
        "resourceType": "CapabilityStatement",
        "status": "active",
        "date": datetime.now(UTC).date().isoformat(),
        "publisher": "PMS",
        "kind": "instance",
        "software": {"name": "PMS", "version": software_version},
        "implementation": {"description": "PMS FHIR R4 server", "url": base},
        "fhirVersion": FHIR_VERSION,
        "format": ["application/fhir+json", "json"],
        "patchFormat": ["application/json-patch+json"],
        "rest": [
            {
                "mode": "server",
                # SMART App Launch: where clients find the OAuth endpoints (also smart-configuration).
                "security": {
                    "cors": True,
                    "service": [
                        {
                            "coding": [
                                {
                                    "system": "http://terminology.hl7.org/CodeSystem/restful-security-service",
                                    "code": "SMART-on-FHIR",
                                }
                            ]
                        }
                    ],
                    "extension": [
                        {
                            "url": "http://fhir-registry.smarthealthit.org/StructureDefinition/oauth-uris",
                            "extension": [
                                {"url": "authorize", "valueUri": f"{origin}/oauth2/authorize"},
                                {"url": "token", "valueUri": f"{origin}/oauth2/token"},
                                {"url": "introspect", "valueUri": f"{origin}/oauth2/introspect"},
                                {"url": "revoke", "valueUri": f"{origin}/oauth2/revoke"},
                            ],
                        }
                    ],
                },
                "resource": resources,
                "interaction": [{"code": code} for code in SYSTEM_INTERACTIONS],
            }
        ],
    }
