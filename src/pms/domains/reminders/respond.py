"""A patient's answer from a reminder link: confirm (participant `accepted`) or cancel the Appointment.

Both are ordinary Appointment updates through the repository, so the scheduling rules that guard every
Appointment write (status transitions, freeing the time for the waitlist) apply to them as well.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

from pms.domains.reminders.links import Action
from pms.fhir import jsonio
from pms.storage.records import StoredVersion
from pms.storage.repository import FhirRepository

CANCELLATION_REASON = "http://terminology.hl7.org/CodeSystem/appointment-cancellation-reason"
OPEN_STATUSES = frozenset({"proposed", "pending", "booked"})  # before the visit: the patient may answer

Result = Literal["confirmed", "cancelled", "already-cancelled", "closed"]


@dataclass(frozen=True)
class Response:
    result: Result
    appointment: dict[str, Any]
    stored: StoredVersion | None  # the new version, when something was written
    patient_id: str | None


def patient_of(appointment: dict[str, Any]) -> str | None:
    for participant in appointment.get("participant", []):
        reference = participant.get("actor", {}).get("reference", "")
        if reference.startswith("Patient/"):
            return str(reference.removeprefix("Patient/"))
    return None


def _set_patient_status(appointment: dict[str, Any], status: str) -> bool:
    changed = False
    for participant in appointment.get("participant", []):
        if participant.get("actor", {}).get("reference", "").startswith("Patient/"):
            changed |= participant.get("status") != status
            participant["status"] = status
    return changed


async def respond(repo: FhirRepository, *, appointment_id: str, action: Action) -> Response:
    current = await repo.read("Appointment", appointment_id)
    appointment: dict[str, Any] = jsonio.loads(current.content or "{}")
    patient_id = patient_of(appointment)
    status = appointment.get("status")
    if status == "cancelled":
        return Response("already-cancelled", appointment, None, patient_id)
    if status not in OPEN_STATUSES:
        return Response("closed", appointment, None, patient_id)
    if action == "confirm":
        if not _set_patient_status(appointment, "accepted"):
            return Response("confirmed", appointment, None, patient_id)  # a second click changes nothing
        result: Result = "confirmed"
    else:
        appointment["status"] = "cancelled"
        appointment["cancelationReason"] = {
            "coding": [{"system": CANCELLATION_REASON, "code": "pat", "display": "Patient"}],
            "text": "Cancelled by the patient from a reminder link",
        }
        _set_patient_status(appointment, "declined")
        result = "cancelled"
    stored, _ = await repo.update(appointment, id_=appointment_id, if_match=current.version_id)
    return Response(result, appointment, stored, patient_id)
