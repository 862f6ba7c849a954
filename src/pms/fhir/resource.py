"""Pure checks and stamping of a resource body before it is stored."""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from typing import Any

from pms.core.errors import AppError, Issue, bad_request
from pms.fhir.definitions import is_resource_type, is_valid_id

Validator = Callable[[dict[str, Any]], list[Issue]]


def format_instant(moment: datetime) -> str:
    """An R4 instant with millisecond precision in UTC."""
    return moment.isoformat(timespec="milliseconds")


def check_body(body: Any, *, resource_type: str | None, id_: str | None, require_id: bool) -> dict[str, Any]:
    """Check that a body is a resource of the type (and id) the URL names.

    http://hl7.org/fhir/R4/http.html#update: the body's id SHALL equal the URL's id, else 400.
    """
    if not isinstance(body, dict):
        raise bad_request("The body must be a JSON object holding a FHIR resource", code="structure")
    declared = body.get("resourceType")
    if not isinstance(declared, str) or not declared:
        raise bad_request("The resource has no resourceType", code="required", expression=("resourceType",))
    if not is_resource_type(declared):
        raise bad_request(f"Unknown resource type '{declared}'", code="not-supported")
    if resource_type is not None and declared != resource_type:
        raise bad_request(
            f"The body holds a {declared} but the URL names {resource_type}",
            code="invalid",
            expression=(f"{declared}.resourceType",),
        )
    if require_id:
        body_id = body.get("id")
        if body_id is None:
            raise bad_request(
                f"An update must carry the id '{id_}' in the resource body",
                code="required",
                expression=(f"{declared}.id",),
            )
        if body_id != id_:
            raise bad_request(
                f"The body's id '{body_id}' does not match the id '{id_}' in the URL",
                code="invalid",
                expression=(f"{declared}.id",),
            )
    return body


def check_id(id_: str) -> None:
    if not is_valid_id(id_):
        raise bad_request(f"'{id_[:80]}' is not a valid FHIR id ([A-Za-z0-9-.]{{1,64}})", code="value")


def validate(resource: dict[str, Any], validator: Validator) -> None:
    """Run the structural validator; any error-level issue rejects the write (400, basic FHIR rules)."""
    issues = validator(resource)
    errors = [i for i in issues if i.severity in ("error", "fatal")]
    if errors:
        raise AppError(400, errors)


def stamp(resource: dict[str, Any], *, id_: str, version_id: int, last_updated: datetime) -> dict[str, Any]:
    """A copy of the resource carrying the server-assigned id and meta (versionId, lastUpdated)."""
    meta = dict(resource.get("meta") or {})
    meta["versionId"] = str(version_id)
    meta["lastUpdated"] = format_instant(last_updated)
    stamped: dict[str, Any] = {"resourceType": resource["resourceType"], "id": id_, "meta": meta}
    for key, value in resource.items():
        if key not in stamped:
            stamped[key] = value
    return stamped
