"""The FHIR Communication that records one reminder message (sent or failed). Pure."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from pms.domains.reminders.channels import ChannelName
from pms.domains.reminders.messages import Message

DELIVERY_SYSTEM = "https://pms.example.org/fhir/reminder-delivery"
OFFSET_URL = "https://pms.example.org/fhir/StructureDefinition/reminder-offset"
CATEGORY = "http://terminology.hl7.org/CodeSystem/communication-category"
PARTICIPATION_MODE = "http://terminology.hl7.org/CodeSystem/v3-ParticipationMode"
_MEDIUM = {"email": ("EMAILWRIT", "email"), "sms": ("SMSWRIT", "SMS message")}


def delivery_identifier(appointment_id: str, offset_minutes: int, channel: str) -> str:
    return f"{appointment_id}|{offset_minutes}|{channel}"


def communication(
    *,
    appointment_id: str,
    patient_id: str,
    offset_minutes: int,
    channel: ChannelName,
    message: Message,
    sent: datetime | None,
    provider_id: str | None,
    failure: str | None,
) -> dict[str, Any]:
    """`completed` with `sent` when the provider accepted the message, else `not-done` with the reason."""
    code, display = _MEDIUM[channel]
    identifiers = [
        {"system": DELIVERY_SYSTEM, "value": delivery_identifier(appointment_id, offset_minutes, channel)}
    ]
    if provider_id:
        identifiers.append({"system": f"{DELIVERY_SYSTEM}/{channel}-provider-id", "value": provider_id})
    body: dict[str, Any] = {
        "resourceType": "Communication",
        "language": message.language,
        "extension": [
            {
                "url": OFFSET_URL,
                "valueDuration": {
                    "value": offset_minutes,
                    "unit": "min",
                    "system": "http://unitsofmeasure.org",
                    "code": "min",
                },
            }
        ],
        "identifier": identifiers,
        "status": "completed" if sent is not None else "not-done",
        "category": [{"coding": [{"system": CATEGORY, "code": "reminder", "display": "Reminder"}]}],
        "medium": [{"coding": [{"system": PARTICIPATION_MODE, "code": code, "display": display}]}],
        "subject": {"reference": f"Patient/{patient_id}"},
        "about": [{"reference": f"Appointment/{appointment_id}"}],
        "recipient": [{"reference": f"Patient/{patient_id}"}],
        "payload": [{"contentString": message.sms if channel == "sms" else message.text}],
    }
    if sent is not None:
        body["sent"] = sent.astimezone(UTC).isoformat(timespec="seconds").replace("+00:00", "Z")
    if failure is not None:
        body["statusReason"] = {"text": failure[:500]}
    return body
