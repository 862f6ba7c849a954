"""Materialised Slots: availability minus absences, cut into a Schedule's slot length, for a horizon.

Slots are real resources so that every client finds free time with plain FHIR search
(`Slot?schedule.actor=Practitioner/X&status=free&start=ge...`). They are regenerated in the same
transaction as any change to a Schedule or to its actors' availability; booked Slots are never removed
(the appointment stays visible even if the hours change), free ones outside the new hours are.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, time, timedelta
from typing import Any

from pms.core.errors import bad_request
from pms.domains.scheduling import occupancy
from pms.domains.scheduling.availability import cut_slots, defines_hours, working_intervals
from pms.domains.scheduling.codes import SLOT_MINUTES_URL, extension_value, relative_reference
from pms.domains.scheduling.config import SchedulingConfig
from pms.domains.scheduling.periods import Interval, fhir_instant, local_moment, parse_moment, rule_broken
from pms.domains.scheduling.store import SchedulingStore
from pms.fhir.parameters import OperationInput
from pms.storage.hooks import ResourceChange
from pms.storage.repository import FhirRepository

AVAILABILITY_TYPES = frozenset({"PractitionerRole", "Location", "HealthcareService"})


@dataclass
class SlotChanges:
    created: int = 0
    removed: int = 0
    kept: int = 0


def schedule_actors(schedule: Mapping[str, Any]) -> list[str]:
    refs = (relative_reference(actor.get("reference")) for actor in schedule.get("actor") or ())
    return [ref for ref in refs if ref]


MAX_SLOT_MINUTES = 240  # longer slots are not offered: booking looks this far back for covering slots


def slot_minutes(schedule: Mapping[str, Any], config: SchedulingConfig) -> int:
    minutes = extension_value(schedule, SLOT_MINUTES_URL, "valuePositiveInt")
    if minutes is None:
        return min(config.slot_minutes, MAX_SLOT_MINUTES)
    if not isinstance(minutes, int) or not 0 < minutes <= MAX_SLOT_MINUTES:
        raise rule_broken(
            f"A Schedule's slot-minutes must be from 1 to {MAX_SLOT_MINUTES}", expression="Schedule.extension"
        )
    return minutes


def slot_interval(slot: Mapping[str, Any], config: SchedulingConfig) -> Interval:
    return Interval(parse_moment(slot["start"], config.zone), parse_moment(slot["end"], config.zone))


MAX_WINDOW_DAYS = 731


def parse_window(body: Any, config: SchedulingConfig, *, default: Interval) -> Interval:
    """The `start`/`end` of a `$generate-slots` call (dates in the clinic's zone), else `default`."""
    if body is None:
        return default
    params = OperationInput(body, operation="$generate-slots")
    start_text, end_text = params.text("start"), params.text("end")
    start = parse_moment(start_text, config.zone) if start_text else default.start
    end = parse_moment(end_text, config.zone, end=True) if end_text else default.end
    if end <= start or end - start > timedelta(days=MAX_WINDOW_DAYS):
        raise bad_request(f"$generate-slots: 'end' must be after 'start', at most {MAX_WINDOW_DAYS} days on")
    return Interval(start, end)


class SlotPlanner:
    def __init__(self, store: SchedulingStore, config: SchedulingConfig) -> None:
        self.store = store
        self.config = config

    def horizon(self, now: datetime | None = None) -> Interval:
        today = (now or datetime.now(UTC)).astimezone(self.config.zone).date()
        start = local_moment(today, time(0, 0), self.config.zone)
        end = local_moment(today + timedelta(days=self.config.horizon_days), time(0, 0), self.config.zone)
        return Interval(start, end)

    async def _sources(
        self, actors: list[str], overrides: Mapping[str, Mapping[str, Any] | None]
    ) -> list[Mapping[str, Any]]:
        """The resources whose hours apply. A Schedule naming only a Practitioner works the hours of
        that practitioner's active roles."""
        sources: list[Mapping[str, Any]] = []
        for ref in actors:
            type_, _, id_ = ref.partition("/")
            if type_ not in AVAILABILITY_TYPES:
                continue
            resource = overrides[ref] if ref in overrides else await self.store.read(type_, id_)
            if resource is not None and resource.get("active", True) and defines_hours(resource):
                sources.append(resource)
        if not sources:
            for ref in actors:
                if ref.startswith("Practitioner/"):
                    roles = await self.store.search(
                        "PractitionerRole", [("practitioner", ref), ("active", "true")]
                    )
                    sources.extend(
                        overrides.get(f"PractitionerRole/{r['id']}", r) or r
                        for r in roles
                        if defines_hours(r)
                    )
        return sources

    async def regenerate(
        self,
        schedule_id: str,
        schedule: Mapping[str, Any] | None,
        *,
        overrides: Mapping[str, Mapping[str, Any] | None] | None = None,
        window: Interval | None = None,
    ) -> SlotChanges:
        """Bring the Schedule's Slots inside `window` (default: the horizon) in line with availability.
        `schedule` None (deleted) or inactive removes its free Slots."""
        window = window or self.horizon()
        changes = SlotChanges()
        desired: list[Interval] = []
        actors: list[str] = []
        if schedule is not None and schedule.get("active", True):
            actors = schedule_actors(schedule)
            sources = await self._sources(actors, overrides or {})
            desired = cut_slots(
                working_intervals(sources, window, self.config.zone), slot_minutes(schedule, self.config)
            )
        existing = await self.store.search_stored(
            "Slot",
            [
                ("schedule", f"Schedule/{schedule_id}"),
                ("start", f"ge{fhir_instant(window.start)}"),
                ("start", f"lt{fhir_instant(window.end)}"),
            ],
            limit=100_000,
        )
        wanted = set(desired)
        have: set[Interval] = set()
        for stored, slot in existing:
            interval = slot_interval(slot, self.config)
            if interval in wanted and interval not in have:
                have.add(interval)
                changes.kept += 1
            elif slot.get("status") == "free":
                await self.store.repo.delete("Slot", stored.id)
                changes.removed += 1
            else:
                changes.kept += 1  # booked or blocked time stays visible
        missing = [interval for interval in desired if interval not in have]
        if not missing:
            return changes
        booked = await occupancy.busy_intervals(
            self.store.conn, actors, Interval(missing[0].start, missing[-1].end)
        )
        service_type = (schedule or {}).get("serviceType")
        for interval in missing:
            busy = any(interval.overlaps(b) for b in booked)
            new_slot: dict[str, Any] = {
                "resourceType": "Slot",
                "schedule": {"reference": f"Schedule/{schedule_id}"},
                "status": "busy" if busy else "free",
                "start": fhir_instant(interval.start),
                "end": fhir_instant(interval.end),
            }
            if service_type:
                new_slot["serviceType"] = service_type
            await self.store.repo.create(new_slot)
            changes.created += 1
        return changes


class AvailabilityHook:
    """Regenerates Slots when a Schedule, or the hours of one of its actors, change."""

    resource_types = frozenset({"Schedule", *AVAILABILITY_TYPES})

    def __init__(self, config: SchedulingConfig) -> None:
        self.config = config

    async def on_write(self, repo: FhirRepository, change: ResourceChange) -> None:
        store = SchedulingStore(repo)
        planner = SlotPlanner(store, self.config)
        if change.resource_type == "Schedule":
            if _same_plan(change.before, change.after):
                return
            await planner.regenerate(change.id, change.after)
            return
        if not (_hours_changed(change.before, change.after)):
            return
        ref = f"{change.resource_type}/{change.id}"
        overrides = {ref: change.after}
        schedules = await store.search("Schedule", [("actor", ref)])
        if change.resource_type == "PractitionerRole":
            practitioner = relative_reference(
                ((change.after or change.before or {}).get("practitioner") or {}).get("reference")
            )
            if practitioner:
                schedules += [
                    s
                    for s in await store.search("Schedule", [("actor", practitioner)])
                    if all(not a.startswith("PractitionerRole/") for a in schedule_actors(s))
                ]
        for schedule in {s["id"]: s for s in schedules}.values():
            await planner.regenerate(schedule["id"], schedule, overrides=overrides)


_PLAN_ELEMENTS = ("active", "actor", "extension", "serviceType")
_HOURS_ELEMENTS = ("active", "availableTime", "notAvailable", "hoursOfOperation", "practitioner")


def _same_plan(before: Mapping[str, Any] | None, after: Mapping[str, Any] | None) -> bool:
    if before is None or after is None:
        return False
    return all(before.get(k) == after.get(k) for k in _PLAN_ELEMENTS)


def _hours_changed(before: Mapping[str, Any] | None, after: Mapping[str, Any] | None) -> bool:
    if before is None and after is None:
        return False
    return any((before or {}).get(k) != (after or {}).get(k) for k in _HOURS_ELEMENTS)
