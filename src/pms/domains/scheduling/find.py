"""`Appointment/$find`: bookable times for a visit type, modelled on R5's Appointment $find.

Reads the materialised free Slots day by day (earliest first, stopping once enough options are found),
joins consecutive free Slots of one Schedule until they cover the visit's duration, and drops times the
patient is already booked or that fall outside the asked time of day.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from pms.core.errors import AppError, Issue, bad_request
from pms.domains.scheduling import occupancy
from pms.domains.scheduling.appointments import callers_patient, is_patient_caller
from pms.domains.scheduling.codes import relative_reference
from pms.domains.scheduling.config import SchedulingConfig
from pms.domains.scheduling.periods import Interval, fhir_instant, parse_moment, rule_broken
from pms.domains.scheduling.slots import schedule_actors, slot_interval
from pms.domains.scheduling.store import SchedulingStore
from pms.domains.scheduling.visit_types import VisitType, find_visit_type, visit_type_by_service
from pms.fhir.parameters import OperationInput

TIMES_OF_DAY = {"morning": (0, 12), "afternoon": (12, 17), "evening": (17, 24)}
MAX_WINDOW_DAYS = 92
NAMED_SCHEDULES = 8  # up to this many Schedules, the Slot search names them (see _free_slots)


@dataclass(frozen=True, slots=True)
class FindRequest:
    visit_type: str  # a code, or HealthcareService/id
    window: Interval
    practitioners: tuple[str, ...] = ()
    time_of_day: str | None = None
    patient: str | None = None
    count: int = 10


@dataclass(frozen=True, slots=True)
class Option:
    interval: Interval
    schedule_id: str
    actors: tuple[str, ...]
    slot_ids: tuple[str, ...]


def parse_find(body: Any, config: SchedulingConfig, *, now: datetime | None = None) -> FindRequest:
    params = OperationInput(body, operation="$find")
    visit_value = params.one("visit-type") or params.one("service-type")
    visit = params.reference(visit_value) if isinstance(visit_value, dict) else visit_value
    if not isinstance(visit, str) or not visit:
        raise bad_request("$find needs a 'visit-type' (a code or a HealthcareService reference)")
    now = now or datetime.now(UTC)
    start_text, end_text = params.text("start"), params.text("end")
    start = max(parse_moment(start_text, config.zone), now) if start_text else now
    end = parse_moment(end_text, config.zone, end=True) if end_text else start + timedelta(days=14)
    if end <= start:
        raise bad_request("$find: 'end' must be after 'start' (and in the future)")
    if end - start > timedelta(days=MAX_WINDOW_DAYS):
        raise bad_request(f"$find: search at most {MAX_WINDOW_DAYS} days at a time")
    time_of_day = params.text("time-of-day")
    if time_of_day is not None and time_of_day not in TIMES_OF_DAY:
        raise bad_request("$find: 'time-of-day' is one of morning, afternoon, evening")
    patient = params.reference(params.one("patient"))
    return FindRequest(
        visit_type=visit,
        window=Interval(start, end),
        practitioners=tuple(params.references("practitioner")),
        time_of_day=time_of_day,
        patient=relative_reference(patient) if patient else None,
        count=params.integer("_count", default=10, low=1, high=100),
    )


class SlotFinder:
    def __init__(self, store: SchedulingStore, config: SchedulingConfig) -> None:
        self.store = store
        self.config = config

    async def visit_type(self, value: str) -> VisitType:
        ref = relative_reference(value)
        if ref and ref.startswith("HealthcareService/"):
            visit = await visit_type_by_service(self.store, ref.split("/", 1)[1])
        else:
            system, _, code = value.rpartition("|")
            visit = await find_visit_type(self.store, code=code, system=system or None)
        if visit is None:
            raise rule_broken(f"No active visit type '{value}' is known here")
        return visit

    async def _schedules(
        self, visit: VisitType, practitioners: tuple[str, ...]
    ) -> dict[str, tuple[str, ...]]:
        """Schedule id -> its actors, for the Schedules of roles that offer this visit type."""
        query = [("service", f"HealthcareService/{visit.service_id}"), ("active:not", "false")]
        people = [p for p in practitioners if p.startswith("Practitioner/")]
        roles_asked = [p for p in practitioners if p.startswith("PractitionerRole/")]
        if people:
            query.append(("practitioner", ",".join(people)))
        if roles_asked:
            query.append(("_id", ",".join(r.split("/", 1)[1] for r in roles_asked)))
        roles = await self.store.search("PractitionerRole", query)
        if not roles:
            return {}
        actors = [f"PractitionerRole/{r['id']}" for r in roles]
        schedules = await self.store.search_any("Schedule", "actor", actors, [("active:not", "false")])
        found: dict[str, tuple[str, ...]] = {}
        role_practitioner = {
            f"PractitionerRole/{r['id']}": relative_reference((r.get("practitioner") or {}).get("reference"))
            for r in roles
        }
        for schedule in schedules:
            named = schedule_actors(schedule)
            people_of = [role_practitioner.get(a) for a in named if a in role_practitioner]
            found[schedule["id"]] = tuple(dict.fromkeys([*named, *(p for p in people_of if p)]))
        return found

    async def find(self, request: FindRequest) -> tuple[VisitType, list[Option]]:
        request = self.for_caller(request)
        visit = await self.visit_type(request.visit_type)
        minutes = visit.minutes or self.config.slot_minutes
        schedules = await self._schedules(visit, request.practitioners)
        options: list[Option] = []
        if not schedules:
            return visit, options
        patient_busy = (
            await occupancy.busy_intervals(self.store.conn, [request.patient], request.window)
            if request.patient
            else []
        )
        day_start = request.window.start
        while day_start < request.window.end and len(options) < request.count:
            day_end = min(day_start + timedelta(days=1), request.window.end)
            # A visit starting late may run into the next slots: read a visit's length further.
            slots = await self._free_slots(schedules, day_start, day_end + timedelta(minutes=minutes))
            for option in self._options(slots, schedules, minutes, request.window):
                if option.interval.start >= day_end:
                    continue
                if any(option.interval.overlaps(b) for b in patient_busy):
                    continue
                if not self._time_of_day_ok(option.interval, request.time_of_day):
                    continue
                options.append(option)
            day_start = day_end
        options.sort(key=lambda o: (o.interval.start, o.schedule_id))
        return visit, options[: request.count]

    def for_caller(self, request: FindRequest) -> FindRequest:
        """A patient finds times for themselves only: skipping the times another patient is booked would
        tell them that patient's appointments."""
        if not is_patient_caller(self.store.caller):
            return request
        own = callers_patient(self.store.caller)
        if request.patient is not None and request.patient != own:
            raise AppError(403, [Issue("forbidden", "You can look for times for yourself only")])
        return dataclasses.replace(request, patient=own)

    async def _free_slots(
        self, schedules: Mapping[str, Any], start: datetime, end: datetime
    ) -> list[dict[str, Any]]:
        """Free Slots of these Schedules starting in [start, end). For a few Schedules the search names
        them; for many it reads the day's free Slots and keeps theirs: naming dozens of Schedules makes
        PostgreSQL read each one's whole horizon (their reference rows), the day's Slots are far fewer."""
        window = [
            ("status", "free"),
            ("start", f"ge{fhir_instant(start)}"),
            ("start", f"lt{fhir_instant(end)}"),
        ]
        if len(schedules) <= NAMED_SCHEDULES:
            return await self.store.search_any(
                "Slot", "schedule", [f"Schedule/{s}" for s in schedules], window
            )
        wanted = {f"Schedule/{s}" for s in schedules}
        return [
            slot
            for slot in await self.store.search("Slot", window, limit=100_000)
            if relative_reference((slot.get("schedule") or {}).get("reference")) in wanted
        ]

    def _options(
        self,
        slots: list[dict[str, Any]],
        schedules: Mapping[str, tuple[str, ...]],
        minutes: int,
        window: Interval,
    ) -> list[Option]:
        by_schedule: dict[str, list[tuple[Interval, str]]] = {}
        for slot in slots:
            ref = relative_reference((slot.get("schedule") or {}).get("reference")) or ""
            by_schedule.setdefault(ref.partition("/")[2], []).append(
                (slot_interval(slot, self.config), slot["id"])
            )
        duration = timedelta(minutes=minutes)
        options = []
        for schedule_id, run in by_schedule.items():
            run.sort()
            for i, (first, _) in enumerate(run):
                start, end = first.start, first.start + duration
                if start < window.start or end > window.end:
                    continue
                covered, cursor, j = [], start, i
                while j < len(run) and cursor < end and run[j][0].start == cursor:
                    covered.append(run[j][1])
                    cursor = run[j][0].end
                    j += 1
                if cursor >= end:
                    options.append(
                        Option(
                            Interval(start, end), schedule_id, schedules.get(schedule_id, ()), tuple(covered)
                        )
                    )
        return options

    def _time_of_day_ok(self, interval: Interval, time_of_day: str | None) -> bool:
        if time_of_day is None:
            return True
        low, high = TIMES_OF_DAY[time_of_day]
        hour = interval.start.astimezone(self.config.zone).hour
        return low <= hour < high


def proposed_appointment(option: Option, visit: VisitType, patient: str | None) -> dict[str, Any]:
    """An R4 Appointment (status proposed) that `$book` accepts as is."""
    participants = [
        {"actor": {"reference": actor}, "required": "required", "status": "needs-action"}
        for actor in option.actors
        if actor.split("/")[0] in ("Practitioner", "PractitionerRole", "Location", "Device")
    ]
    if patient:
        participants.append(
            {"actor": {"reference": patient}, "required": "required", "status": "needs-action"}
        )
    return {
        "resourceType": "Appointment",
        "status": "proposed",
        "serviceType": [{"coding": [visit.coding()], "text": visit.display}],
        "start": fhir_instant(option.interval.start),
        "end": fhir_instant(option.interval.end),
        "minutesDuration": option.interval.minutes,
        "slot": [{"reference": f"Slot/{slot_id}"} for slot_id in option.slot_ids],
        "participant": participants,
    }


def find_bundle(options: list[Option], visit: VisitType, patient: str | None) -> dict[str, Any]:
    return {
        "resourceType": "Bundle",
        "type": "searchset",
        "total": len(options),
        "entry": [
            {"resource": proposed_appointment(option, visit, patient), "search": {"mode": "match"}}
            for option in options
        ],
    }
