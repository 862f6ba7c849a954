"""The vocabulary scheduling reads and writes: extension URLs, code systems, and the R4 Appointment
status life cycle (http://hl7.org/fhir/R4/valueset-appointmentstatus.html)."""

from __future__ import annotations

from typing import Any

BASE = "https://pms.example.org/fhir"
VISIT_TYPE_SYSTEM = f"{BASE}/CodeSystem/visit-type"
VISIT_DURATION_URL = f"{BASE}/StructureDefinition/visit-duration"
ONLINE_BOOKING_URL = f"{BASE}/StructureDefinition/online-booking"
TELEHEALTH_URL = f"{BASE}/StructureDefinition/telehealth"  # on a visit type: it is a video visit
TELEHEALTH_LINK_URL = f"{BASE}/StructureDefinition/telehealth-url"  # on an Appointment: the link
SLOT_MINUTES_URL = f"{BASE}/StructureDefinition/slot-minutes"
SERIES_SYSTEM = f"{BASE}/appointment-series"  # Appointment.identifier linking a recurring series
RESCHEDULE_REASON_URL = f"{BASE}/StructureDefinition/reschedule-reason"
OFFER_PURPOSE = "waitlist-offer"  # the purpose named in a waitlist offer's signed links

# Statuses in which an Appointment holds its participants' time. `proposed` and `waitlist` are wishes,
# `cancelled`, `noshow` and `entered-in-error` gave the time back.
HOLDING_STATUSES = frozenset({"pending", "booked", "arrived", "checked-in", "fulfilled"})

# Which status may follow which (staying in the same status is always allowed: edits, reschedules).
# `noshow -> arrived` covers the patient who turns up late; `entered-in-error` is the way out of any
# state and the end of all of them.
TRANSITIONS: dict[str, frozenset[str]] = {
    "proposed": frozenset({"pending", "booked", "waitlist", "cancelled", "entered-in-error"}),
    "pending": frozenset({"booked", "cancelled", "entered-in-error"}),
    "booked": frozenset({"arrived", "checked-in", "fulfilled", "cancelled", "noshow", "entered-in-error"}),
    "arrived": frozenset({"checked-in", "fulfilled", "entered-in-error"}),
    "checked-in": frozenset({"arrived", "fulfilled", "entered-in-error"}),
    "waitlist": frozenset({"pending", "booked", "cancelled", "entered-in-error"}),
    "noshow": frozenset({"arrived", "entered-in-error"}),
    "fulfilled": frozenset({"entered-in-error"}),
    "cancelled": frozenset({"entered-in-error"}),
    "entered-in-error": frozenset(),
}

# Participant actor types whose time an appointment holds (HealthcareService is a kind of visit, not a
# resource that can be double-booked).
EXCLUSIVE_ACTOR_TYPES = frozenset(
    {"Patient", "Practitioner", "PractitionerRole", "Location", "Device", "RelatedPerson"}
)


def extension_value(resource: Any, url: str, value_key: str) -> Any:
    """The value of the first extension with this URL, or None."""
    if not isinstance(resource, dict):
        return None
    for extension in resource.get("extension") or ():
        if isinstance(extension, dict) and extension.get("url") == url:
            return extension.get(value_key)
    return None


def set_extension(resource: dict[str, Any], url: str, value_key: str, value: Any) -> None:
    extensions = [e for e in resource.get("extension") or () if e.get("url") != url]
    extensions.append({"url": url, value_key: value})
    resource["extension"] = extensions


def relative_reference(reference: Any) -> str | None:
    """`Type/id` of a literal reference (relative or absolute URL; versions dropped), else None."""
    if not isinstance(reference, str) or reference.startswith(("#", "urn:")):
        return None
    path = reference.split("/_history/")[0].rstrip("/")
    parts = path.split("/")
    if len(parts) < 2 or not parts[-2][:1].isupper():
        return None
    return f"{parts[-2]}/{parts[-1]}"
