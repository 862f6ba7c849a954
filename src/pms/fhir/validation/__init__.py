"""Structural validation of FHIR R4 (4.0.1) resources against the official base definitions.

    >>> validate_resource({"resourceType": "Patient", "gender": "male2"})
    [Issue(code='code-invalid', ...)]

Checks JSON shape, cardinality, choice types, primitive lexical rules and required bindings (see
docs/validation.md). The schema is compiled by tools/gen_validation_schema.py and loaded once.
"""

from __future__ import annotations

from typing import Any

from pms.core.errors import Issue

from .issues import MAX_ISSUES, TooManyIssues
from .schema import load_schema
from .walker import walk_resource

__all__ = ["MAX_ISSUES", "Issue", "is_resource_type", "resource_types", "validate_resource"]


def validate_resource(resource: dict[str, Any]) -> list[Issue]:
    """Every problem found in `resource` (at most MAX_ISSUES); an empty list means it is valid."""
    schema = load_schema()
    issues: list[Issue] = []
    rt = resource.get("resourceType") if type(resource) is dict else None
    path = rt if type(rt) is str and rt in schema.resources else "Resource"
    try:
        walk_resource(schema, resource, path, issues)
    except TooManyIssues:
        return issues  # capped: the first MAX_ISSUES are enough to act on
    return issues


def is_resource_type(name: str) -> bool:
    """True for the 146 concrete R4 resource types (not Resource/DomainResource, not datatypes)."""
    return name in load_schema().resources


def resource_types() -> frozenset[str]:
    """All concrete R4 resource type names."""
    return frozenset(load_schema().resources)
