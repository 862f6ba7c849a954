"""The appointments a practitioner's calendar feed shows: a week back to the horizon ahead."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from pms.domains.scheduling.config import SchedulingConfig
from pms.domains.scheduling.icalendar import calendar
from pms.domains.scheduling.periods import fhir_instant
from pms.domains.scheduling.store import SchedulingStore
from pms.storage.records import StoredVersion

FEED_STATUSES = "pending,booked,arrived,checked-in,fulfilled,cancelled,noshow"


async def practitioner_feed(
    store: SchedulingStore, config: SchedulingConfig, practitioner_id: str, *, host: str
) -> tuple[str, list[StoredVersion]]:
    """The iCalendar text, and the resources it showed (for the audit)."""
    now = datetime.now(UTC)
    practitioner = await store.read("Practitioner", practitioner_id)
    found = await store.search_stored(
        "Appointment",
        [
            ("practitioner", f"Practitioner/{practitioner_id}"),
            ("status", FEED_STATUSES),
            ("date", f"ge{fhir_instant(now - timedelta(days=7))}"),
            ("date", f"lt{fhir_instant(now + timedelta(days=config.horizon_days))}"),
            ("_sort", "date"),
        ],
        limit=5000,
    )
    appointments = [resource for _, resource in found]
    refs = {
        str((p.get("actor") or {}).get("reference", ""))
        for a in appointments
        for p in a.get("participant") or ()
    }
    patients = await _by_reference(store, "Patient", refs)
    locations = {
        ref: str(r.get("name") or ref) for ref, r in (await _by_reference(store, "Location", refs)).items()
    }
    name = "Appointments"
    if practitioner and practitioner.get("name"):
        human = practitioner["name"][0]
        name = " ".join([*(human.get("given") or []), human.get("family") or ""]).strip() or name
    text = calendar(name, appointments, patients=patients, locations=locations, host=host, now=now)
    return text, [stored for stored, _ in found]


async def _by_reference(
    store: SchedulingStore, resource_type: str, refs: set[str]
) -> dict[str, dict[str, Any]]:
    ids = sorted(r.split("/", 1)[1] for r in refs if r.startswith(f"{resource_type}/"))
    if not ids:
        return {}
    found = await store.search(resource_type, [("_id", ",".join(ids))], limit=len(ids))
    return {f"{resource_type}/{r['id']}": r for r in found}
