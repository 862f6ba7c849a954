"""Visit types are HealthcareServices: a coded `type`, a duration, whether patients may book it online,
and whether it is a video visit (see docs/scheduling.md)."""

from __future__ import annotations

import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from pms.domains.scheduling.codes import (
    ONLINE_BOOKING_URL,
    TELEHEALTH_URL,
    VISIT_DURATION_URL,
    VISIT_TYPE_SYSTEM,
    extension_value,
)
from pms.domains.scheduling.store import SchedulingStore

_MINUTES = {"min": 1, "h": 60, "d": 24 * 60}


@dataclass(frozen=True, slots=True)
class VisitType:
    service_id: str
    system: str
    code: str
    display: str
    minutes: int | None
    online: bool
    telehealth: bool

    def coding(self) -> dict[str, str]:
        return {"system": self.system, "code": self.code, "display": self.display}


def _duration_minutes(value: Any) -> int | None:
    if not isinstance(value, dict) or not isinstance(value.get("value"), (int, float)):
        return None
    factor = _MINUTES.get(value.get("code") or value.get("unit") or "min")
    return None if factor is None else int(value["value"] * factor)


def visit_type_of(service: Mapping[str, Any]) -> VisitType | None:
    for concept in service.get("type") or ():
        for coding in concept.get("coding") or ():
            if coding.get("code"):
                return VisitType(
                    service_id=str(service.get("id")),
                    system=coding.get("system") or VISIT_TYPE_SYSTEM,
                    code=coding["code"],
                    display=coding.get("display") or service.get("name") or coding["code"],
                    minutes=_duration_minutes(extension_value(service, VISIT_DURATION_URL, "valueDuration")),
                    online=extension_value(service, ONLINE_BOOKING_URL, "valueBoolean") is True,
                    telehealth=extension_value(service, TELEHEALTH_URL, "valueBoolean") is True,
                )
    return None


def requested_codings(appointment: Mapping[str, Any]) -> list[dict[str, Any]]:
    return [
        c
        for concept in appointment.get("serviceType") or ()
        for c in concept.get("coding") or ()
        if c.get("code")
    ]


async def find_visit_type(
    store: SchedulingStore, *, code: str, system: str | None = None
) -> VisitType | None:
    token = f"{system}|{code}" if system else code
    for service in await store.search(
        "HealthcareService", [("service-type", token), ("active:not", "false")], limit=5
    ):
        visit = visit_type_of(service)
        if visit is not None:
            return visit
    return None


async def visit_type_by_service(store: SchedulingStore, service_id: str) -> VisitType | None:
    service = await store.read("HealthcareService", service_id)
    return None if service is None else visit_type_of(service)


async def appointment_visit_type(store: SchedulingStore, appointment: Mapping[str, Any]) -> VisitType | None:
    """The visit type an Appointment asks for: a HealthcareService participant, else its serviceType."""
    for participant in appointment.get("participant") or ():
        reference = (participant.get("actor") or {}).get("reference") or ""
        if reference.startswith("HealthcareService/"):
            visit = await visit_type_by_service(store, reference.split("/", 1)[1])
            if visit is not None:
                return visit
    for coding in requested_codings(appointment):
        visit = await find_visit_type(store, code=coding["code"], system=coding.get("system"))
        if visit is not None:
            return visit
    return None


class VisitTypeCache:
    """Visit types by what an Appointment names (service reference or codings), for `ttl` seconds.

    Every booking asks whether its visit type is a video visit; visit types change a few times a year,
    so a change may take up to `ttl` seconds to apply to new bookings (docs/scheduling.md).
    """

    def __init__(self, *, ttl: float = 30.0, max_entries: int = 1000) -> None:
        self.ttl = ttl
        self.max_entries = max_entries
        self._entries: dict[str, tuple[float, VisitType | None]] = {}

    async def of(self, store: SchedulingStore, appointment: Mapping[str, Any]) -> VisitType | None:
        # Only what names the visit type: the same follow-up for any patient is one entry.
        services = [
            ref
            for p in appointment.get("participant") or ()
            if str(ref := (p.get("actor") or {}).get("reference") or "").startswith("HealthcareService/")
        ]
        key = repr((services, [(c.get("system"), c.get("code")) for c in requested_codings(appointment)]))
        now = time.monotonic()
        cached = self._entries.get(key)
        if cached is not None and now - cached[0] < self.ttl:
            return cached[1]
        visit = await appointment_visit_type(store, appointment)
        if len(self._entries) >= self.max_entries:
            self._entries.clear()
        self._entries[key] = (now, visit)
        return visit
