"""What a reminder needs from a Patient resource: contact points, language, and whether they opted out.

Opt-out is FHIR-native: the Patient extension `OPT_OUT_URL` with `valueBoolean: true` stops every
reminder (set by staff, or by the patient through the portal, like any other Patient edit).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

OPT_OUT_URL = "https://pms.example.org/fhir/StructureDefinition/reminder-opt-out"


@dataclass(frozen=True)
class Contact:
    name: str
    language: str  # a BCP 47 tag, e.g. "zh-CN"; "" when the record has none
    email: str | None
    phone: str | None


def opted_out(patient: dict[str, Any]) -> bool:
    return any(
        ext.get("url") == OPT_OUT_URL and ext.get("valueBoolean") is True
        for ext in patient.get("extension", [])
    )


def reachable(patient: dict[str, Any]) -> bool:
    """Active, alive, and not opted out."""
    if patient.get("active") is False or patient.get("deceasedBoolean") is True:
        return False
    return "deceasedDateTime" not in patient and not opted_out(patient)


def contact(patient: dict[str, Any]) -> Contact:
    return Contact(
        name=_name(patient),
        language=_language(patient),
        email=_best(patient, ("email",)),
        phone=_best(patient, ("sms", "phone"), require_mobile=True),
    )


def _name(patient: dict[str, Any]) -> str:
    names = patient.get("name") or [{}]
    official = next((n for n in names if n.get("use") == "official"), names[0])
    if official.get("text"):
        return str(official["text"])
    given = " ".join(official.get("given", []))
    return " ".join(part for part in (given, official.get("family", "")) if part)


def _language(patient: dict[str, Any]) -> str:
    """The preferred `communication.language`, else the first one listed."""
    entries = patient.get("communication", [])
    ranked = sorted(entries, key=lambda c: not c.get("preferred", False))
    for entry in ranked:
        for coding in entry.get("language", {}).get("coding", []):
            if coding.get("code"):
                return str(coding["code"])
    return ""


def _best(patient: dict[str, Any], systems: tuple[str, ...], *, require_mobile: bool = False) -> str | None:
    """The lowest-`rank` current contact point of these systems (a landline cannot take an SMS)."""
    candidates = []
    for point in patient.get("telecom", []):
        if point.get("system") not in systems or not point.get("value"):
            continue
        if point.get("period", {}).get("end"):
            continue  # no longer in use
        if require_mobile and point["system"] == "phone" and point.get("use") != "mobile":
            continue
        candidates.append((point.get("rank", 1_000_000), str(point["value"])))
    return min(candidates)[1] if candidates else None
