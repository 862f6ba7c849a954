"""Double-booking refusals in words a front desk reads: who is busy, when (clinic time), and by which
Appointment (the references stay for integrators)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from pms.core.errors import Issue
from pms.domains.scheduling.config import SchedulingConfig
from pms.domains.scheduling.periods import Interval
from pms.domains.scheduling.store import SchedulingStore


def display_name(resource: Mapping[str, Any] | None) -> str | None:
    """A person's name, a room's name or a device's name, as people call them."""
    if not resource:
        return None
    names = resource.get("name")
    if isinstance(names, str):
        return names  # Location, HealthcareService
    for name in names or ():  # HumanName: Patient, Practitioner, RelatedPerson
        text = name.get("text") or " ".join([*(name.get("given") or []), name.get("family") or ""]).strip()
        if text:
            return str(text)
    for device_name in resource.get("deviceName") or ():
        if device_name.get("name"):
            return str(device_name["name"])
    return None


def when(interval: Interval, config: SchedulingConfig) -> str:
    start, end = interval.start.astimezone(config.zone), interval.end.astimezone(config.zone)
    return f"{start:%a %d %b %Y} {start:%H:%M}-{end:%H:%M}"


async def conflict_issue(
    store: SchedulingStore, config: SchedulingConfig, interval: Interval, taken: list[tuple[str, str]]
) -> Issue:
    """One issue naming everyone already booked in `interval` ((actor, appointment id) pairs)."""
    parts = []
    for actor, appointment in taken:
        type_, _, id_ = actor.partition("/")
        name = display_name(await store.read(type_, id_))
        who = f"{name} ({actor})" if name else actor
        parts.append(f"{who} is already booked by Appointment/{appointment}")
    return Issue(
        "conflict",
        f"{when(interval, config)}: " + "; ".join(parts or ["that time is already booked"]),
        expression=("Appointment.participant",),
    )
