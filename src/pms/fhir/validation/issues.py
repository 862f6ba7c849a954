"""Wording of the validator's issues: one builder per kind of problem, used only on the error path."""

from __future__ import annotations

from typing import Any, Final

from pms.core.errors import Issue

from .primitives import json_kind, show
from .schema import TypeSchema

MAX_ISSUES: Final = 100


class TooManyIssues(Exception):
    """Unwinds the walk once MAX_ISSUES are collected: the caller has enough to act on."""


def add(out: list[Issue], issue: Issue) -> None:
    out.append(issue)
    if len(out) >= MAX_ISSUES:
        raise TooManyIssues


def _issue(code: str, diagnostics: str, where: str) -> Issue:
    return Issue(code, diagnostics, expression=(where,))


def null_value(path: str, key: str) -> Issue:
    return _issue(
        "structure",
        f"Null value for '{key}' at {path}: FHIR JSON does not allow null (omit the element instead)",
        f"{path}.{key}",
    )


def null_in_array(path: str, key: str, i: int) -> Issue:
    return _issue(
        "structure",
        f"Null at {path}.{key}[{i}] without a value or an extension in {path}._{key}[{i}]",
        f"{path}.{key}[{i}]",
    )


def not_array(path: str, key: str, minimum: int, value: Any) -> Issue:
    return _issue(
        "structure",
        f"{path}.{key} must be a JSON array (cardinality {minimum}..*), got {json_kind(value)}",
        f"{path}.{key}",
    )


def not_single(path: str, key: str, minimum: int) -> Issue:
    return _issue(
        "structure",
        f"{path}.{key} must be a single value (cardinality {minimum}..1), not an array",
        f"{path}.{key}",
    )


def empty_array(path: str) -> Issue:
    return _issue(
        "structure",
        f"Empty array at {path}: FHIR JSON does not allow empty arrays (omit the element instead)",
        path,
    )


def empty_object(path: str) -> Issue:
    return _issue(
        "structure",
        f"Empty object at {path}: FHIR JSON does not allow empty objects (omit the element instead)",
        path,
    )


def not_object(path: str, what: str, value: Any) -> Issue:
    return _issue("structure", f"{path} must be a JSON object ({what}), got {json_kind(value)}", path)


def missing(path: str, label: str, minimum: int) -> Issue:
    return _issue(
        "required",
        f"Missing required element '{label}' in {path} (minimum cardinality {minimum})",
        f"{path}.{label}",
    )


def unknown(ts: TypeSchema, path: str, key: str) -> Issue:
    message = f"Unknown element '{key}' in {path}"
    name = key.lstrip("_")
    for base, keys in ts.choices.items():
        if name.startswith(base) and name[len(base) :][:1].isupper():
            shown = ", ".join(keys[:8]) + (", ..." if len(keys) > 8 else "")
            message += f": {base}[x] allows {shown}"
            break
    if key == "resourceType":
        message += ": only resources have a resourceType"
    return _issue("structure", message, f"{path}.{name}")


def bad_resource_type(path: str, rt: Any) -> Issue:
    if rt is None:
        return _issue("required", f"Missing resourceType at {path}", path)
    if type(rt) is not str:
        return _issue("structure", f"resourceType at {path} must be a string, got {json_kind(rt)}", path)
    return _issue("structure", f"Unknown resourceType {show(rt)} at {path}: not an R4 resource type", path)


def two_choices(path: str, base: str, first: str, second: str) -> Issue:
    return _issue(
        "structure",
        f"Only one of '{first}' and '{second}' is allowed at {path}: {base}[x] takes a single value",
        f"{path}.{second}",
    )


def extension_both(path: str) -> Issue:
    return _issue(
        "invalid",
        f"Extension at {path} has both a value[x] and nested extensions: it must have one or the other",
        path,
    )


def extension_empty(path: str) -> Issue:
    return _issue("required", f"Extension at {path} has neither a value[x] nor nested extensions", path)


def primitive_extension_shape(path: str, key: str, value: Any, many: bool) -> Issue:
    """A malformed `_key` (or one of its array entries) for primitive `key` at `path`."""
    if many and type(value) is list:
        return _issue(
            "structure",
            f"Empty array at {path}._{key}: FHIR JSON does not allow empty arrays",
            f"{path}.{key}",
        )
    if many:
        return _issue(
            "structure",
            f"{path}._{key} must be a JSON array aligned with {path}.{key}, got {json_kind(value)}",
            f"{path}.{key}",
        )
    if type(value) is dict:
        return _issue(
            "structure",
            f"Empty object at {path}._{key}: FHIR JSON does not allow empty objects",
            f"{path}.{key}",
        )
    return _issue(
        "structure",
        f"{path}._{key} must be a JSON object (id and extension of a primitive), got {json_kind(value)}",
        f"{path}.{key}",
    )


def misaligned(path: str, key: str, extensions: int, values: int) -> Issue:
    return _issue(
        "structure",
        f"{path}._{key} has {extensions} entries but {path}.{key} has {values}: the arrays must be aligned",
        f"{path}.{key}",
    )
