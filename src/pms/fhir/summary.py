"""`_summary` and `_elements` (http://hl7.org/fhir/R4/search.html#summary, #elements).

Applied to top-level elements, using the summary and mandatory flags of the R4 StructureDefinitions.
Subsetted resources are tagged SUBSETTED, as the spec requires.
"""

from __future__ import annotations

import json
from functools import cache
from typing import Any

from pms.core.errors import bad_request
from pms.fhir.definitions import data_text

SUMMARY_MODES = ("true", "text", "data", "count", "false")
SUBSETTED = {"system": "http://terminology.hl7.org/CodeSystem/v3-ObservationValue", "code": "SUBSETTED"}
_ALWAYS = ("resourceType", "id", "meta")


@cache
def _flags() -> dict[str, dict[str, tuple[str, ...]]]:
    raw = json.loads(data_text("summary-elements.json"))
    return {t: {k: tuple(v) for k, v in flags.items()} for t, flags in raw.items()}


def _matches(key: str, names: tuple[str, ...] | set[str]) -> bool:
    if key.startswith("_"):
        key = key[1:]
    for name in names:
        if name == key or (
            name.endswith("[x]") and key.startswith(name[:-3]) and key[len(name) - 3 :][:1].isupper()
        ):
            return True
    return False


def _tag_subsetted(resource: dict[str, Any]) -> dict[str, Any]:
    meta = dict(resource.get("meta") or {})
    meta["tag"] = [*meta.get("tag", []), SUBSETTED]
    resource["meta"] = meta
    return resource


def check_summary(mode: str | None) -> str | None:
    if mode is not None and mode not in SUMMARY_MODES:
        raise bad_request(
            f"_summary must be one of {', '.join(SUMMARY_MODES)}, not '{mode[:20]}'", code="value"
        )
    return mode


def summarize(resource: dict[str, Any], mode: str) -> dict[str, Any]:
    """The resource reduced per `_summary=true|text|data` (false returns it whole)."""
    if mode == "false":
        return resource
    flags = _flags().get(resource.get("resourceType", ""), {"summary": (), "mandatory": ()})
    if mode == "true":
        keep = set(flags["summary"]) | set(flags["mandatory"])
        out = {k: v for k, v in resource.items() if k in _ALWAYS or _matches(k, keep)}
    elif mode == "text":
        keep = set(flags["mandatory"]) | {"text"}
        out = {k: v for k, v in resource.items() if k in _ALWAYS or _matches(k, keep)}
    elif mode == "data":
        out = {k: v for k, v in resource.items() if k != "text"}
    else:
        return resource
    return _tag_subsetted(out)


def select_elements(resource: dict[str, Any], elements: list[str]) -> dict[str, Any]:
    """Only the named top-level elements, plus mandatory ones (`_elements=name,birthDate`)."""
    flags = _flags().get(resource.get("resourceType", ""), {"summary": (), "mandatory": ()})
    keep = {e.split(".", 1)[-1] if "." in e else e for e in elements} | set(flags["mandatory"])
    out = {k: v for k, v in resource.items() if k in _ALWAYS or _matches(k, keep)}
    return _tag_subsetted(out)
